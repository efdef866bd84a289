"""Config loading and validation, problem sets, rollout masks and pass@k."""

import itertools
import json
from pathlib import Path

import pytest
import torch

from sgopd_lite.config import ConfigError, TrainConfig, load_config
from sgopd_lite.data import (DataError, arithmetic_problems, arithmetic_split, format_prompt, has_carry,
                             load_jsonl, reasoning_gym_problems, solve)
from sgopd_lite.evaluate import pass_at_k
from sgopd_lite.rollout import response_mask_from_eos

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- config

def test_presets_set_gate_and_pts():
    assert TrainConfig(method="opd").gate.lambda_e == 1.0 and not TrainConfig(method="opd").pts.enabled
    sg = TrainConfig(method="sgopd")
    assert (sg.gate.lambda_e, sg.gate.lambda_i) == (1.8, 1.0) and sg.pts.enabled
    ex = TrainConfig(method="exopd", exopd_lambda=1.25)
    assert ex.gate.lambda_e == ex.gate.lambda_i == ex.gate.lambda_n == 1.25 and ex.gate.reference == "initial"
    assert TrainConfig(method="gate_only").gate.gating and not TrainConfig(method="gate_only").pts.enabled
    assert TrainConfig(method="pts_only").pts.enabled and not TrainConfig(method="pts_only").gate.gating


def test_yaml_and_overrides(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["gate.lambda_e=1.5", "steps=7", "world.style_gap=1"])
    assert cfg.gate.lambda_e == 1.5 and cfg.gate.lambda_i == 1.0       # override on top of the preset
    assert cfg.steps == 7 and cfg.world.style_gap == 1.0 and cfg.method == "sgopd"
    kw = load_config(None, ["method=opd"], steps=3, gate={"tau": 0.1})
    assert kw.steps == 3 and kw.gate.tau == 0.1 and kw.gate.lambda_e == 1.0


@pytest.mark.parametrize("overrides, field", [
    (["stepz=3"], "stepz"),
    (["gate.lambda_x=3"], "lambda_x"),
    (["gate.lambda_e=0.5"], "lambda_e"),
    (["gate.lambda_i=1.5"], "lambda_i"),
    (["group_size=1"], "group_size"),
    (["world.student=./no/such/model"], "world.student"),
    (["world.train_data=missing.jsonl"], "world.train_data"),
    (["method=ppo"], "method"),
    (["method=step_gate", "step_unit=token"], "step_unit"),
    (["method=oracle_gate", "oracle_reach=everywhere"], "oracle_reach"),
    (["loss_type=dense", "gate.reference=initial"], "loss_type"),
    (["steps"], "key=value"),
])
def test_bad_config_is_a_clear_error_before_any_model_loads(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, overrides)


def test_group_size_one_is_fine_with_sign_mode():
    assert TrainConfig(method="opd", group_size=1, gate={"a1_mode": "sign"}).group_size == 1


def test_every_committed_config_loads():
    for path in (REPO / "configs").glob("*.yaml"):
        load_config(path)


# ---------------------------------------------------------------- data

def test_arithmetic_solutions_are_correct_in_both_styles():
    for p in arithmetic_problems(50, seed=3):
        assert p.solution.endswith(f"\\boxed{{{p.answer}}}")
        assert str(eval(p.question)) == p.answer              # the task is plain integer arithmetic
    chain, value = solve([15, 4, 16], ["-", "+"], "chain")
    prose, _ = solve([15, 4, 16], ["-", "+"], "prose")
    assert chain == "15-4=11\n11+16=27\n\\boxed{27}" and value == 27
    assert prose == "15-4 is 11\n11+16 is 27\nso \\boxed{27}"


def test_slip_forgets_every_carry_and_propagates():
    text, value = solve([15, 7, 3], ["+", "+"], "chain", slip=True)
    assert text == "15+7=12\n12+3=15\n\\boxed{15}" and value == 15   # true answer 25
    assert has_carry(15, "+", 7) and not has_carry(15, "-", 7) and not has_carry(12, "+", 3)
    assert solve([12, 3], ["+"], slip=True) == solve([12, 3], ["+"])  # no carry, no slip


def test_committed_splits_are_disjoint_and_sized():
    held_out, train = arithmetic_split("eval"), arithmetic_split("train")
    assert len(held_out) >= 200 and len(train) >= 1000
    assert not {p.question for p in held_out} & {p.question for p in train}
    again = arithmetic_problems(len(held_out), seed=1234)   # the regeneration command is exact
    assert [p.question for p in again] == [p.question for p in held_out]


def test_jsonl_errors_name_file_and_row(tmp_path):
    good = tmp_path / "ok.jsonl"
    good.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n" +
                    json.dumps({"question": "q", "answer": "Janet ... #### 1,234"}) + "\n")
    problems = load_jsonl(good)
    assert [p.answer for p in problems] == ["2", "1234"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n" + json.dumps({"problem": "x", "answer": ""}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl row 1: no usable gold answer"):
        load_jsonl(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(DataError, match=r"broken\.jsonl line 1"):
        load_jsonl(broken)
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_reasoning_gym_offline():
    problems = reasoning_gym_problems("basic_arithmetic", 5, seed=1)
    assert len(problems) == 5 and all(p.answer for p in problems)


def test_prompt_goes_through_the_chat_template(char_tokenizer):
    text = format_prompt(char_tokenizer, "15-4+16")
    assert text == "<|user|>15-4+16\nPut the final answer in \\boxed{}.<|end|><|assistant|>"


# ---------------------------------------------------------------- rollout mask

def test_response_mask_comes_from_positions_not_token_values():
    EOS = 7
    ids = torch.tensor([[3, EOS, 4, EOS],     # ends at position 1
                        [EOS, 5, 5, 5],       # EOS sampled first: only it counts
                        [3, 3, 3, 3]])        # truncated: everything counts
    mask, truncated = response_mask_from_eos(ids, EOS)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True]


def test_sampled_pad_id_inside_a_response_stays_in_the_loss(char_tokenizer):
    # The pad token is a different id from EOS here; a student that samples it mid-response
    # must still be penalised for it: the mask keeps it.
    pad, eos = char_tokenizer.pad_token_id, char_tokenizer.eos_token_id
    ids = torch.tensor([[10, pad, 11, eos, pad]])
    mask, _ = response_mask_from_eos(ids, eos)
    assert mask.tolist() == [[1, 1, 1, 1, 0]]


# ---------------------------------------------------------------- pass@k

def test_pass_at_k_matches_brute_force():
    for n, c, k in [(8, 0, 8), (8, 3, 1), (8, 3, 4), (10, 2, 5), (5, 5, 2), (16, 1, 8)]:
        combos = list(itertools.combinations(range(n), k))
        brute = sum(any(i < c for i in combo) for combo in combos) / len(combos)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)      # pass@1 is the per-sample accuracy


def test_pass_at_k_needs_n_at_least_k():
    with pytest.raises(ValueError, match="at least 8 samples"):
        pass_at_k(4, 1, 8)


def test_cli_reports_bad_config_in_one_line(capsys):
    from sgopd_lite.__main__ import main

    assert main(["train", "gate.lambda_e=0.5"]) == 2
    err = capsys.readouterr().err
    assert "lambda_e" in err and "Traceback" not in err


def test_the_real_data_folder_is_one_setting(monkeypatch, tmp_path):
    """Tests, benchmarks and notebook 02 find the optional MATH-500 / GSM8K files in one place:
    SGOPD_DATA_DIR when set, else shared/data in the folder that holds the repository."""
    from sgopd_lite.data import REAL_DATA_ENV, real_data_dir

    monkeypatch.delenv(REAL_DATA_ENV, raising=False)
    repo = Path(__file__).resolve().parents[1]
    assert real_data_dir() == repo.parent / "shared" / "data"
    monkeypatch.setenv(REAL_DATA_ENV, str(tmp_path))
    assert real_data_dir() == tmp_path
