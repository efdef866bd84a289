"""Where the verifier acts (advantage.py, data.check_steps): each method on hand-made inputs,
the step checker on both solution styles, and every new method through the trainer."""

import json

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite.advantage import Signals, first_error_verdict, grpo_advantage, method_advantage
from sgopd_lite.config import ConfigError, TrainConfig
from sgopd_lite.data import check_steps, slip_counts, solve
from sgopd_lite.gate import GateConfig, push_evidence
from sgopd_lite.train import Trainer
from sgopd_lite.worlds.base import token_verdicts
from sgopd_lite.worlds.tiny import correct_next_tokens


# --------------------------------------------------------------------------------------------
# The step checker
# --------------------------------------------------------------------------------------------

def _judged(question, response):
    return [(response[s.start:s.end], s.verdict, s.slip) for s in check_steps(question, response)]


@pytest.mark.parametrize("sep, box", [("=", "\\boxed"), (" is ", "so \\boxed")])
def test_each_line_is_judged_on_its_own_operands_after_an_earlier_wrong_line(sep, box):
    # 15-7 forgets its borrow (18); 18+16=34 is right on its own operands; 34-4=31 is wrong on its own
    response = f"15-7{sep}18\n18+16{sep}34\n34-4{sep}31\n{box}{{31}}"
    assert _judged("15-7+16-4", response) == [
        (f"15-7{sep}18\n", -1, "borrow"), (f"18+16{sep}34\n", 1, None),
        (f"34-4{sep}31\n", -1, None), (f"{box}{{31}}", 1, None)]


def test_the_boxed_line_must_follow_the_last_step_with_its_result():
    assert [v for _, v, _ in _judged("15-7+16", "15-7=8\n8+16=24\n\\boxed{25}")] == [1, 1, -1]
    assert [v for _, v, _ in _judged("15-7+16", "15-7=8\n\\boxed{8}")] == [1, -1]          # boxed too early
    assert [v for _, v, _ in _judged("15-7+16", "15-7=8\n8+16=24\n\\boxed{24}\n1+1=2")] == [1, 1, 1, -1]


@pytest.mark.parametrize("style", ["chain", "prose"])
def test_a_running_value_below_zero_is_read_too(style):
    gold = solve([3, 15, 5], ["-", "+"], style)[0]                    # 3-15=-12, -12+5=-7
    assert [v for _, v, _ in _judged("3-15+5", gold)] == [1, 1, 1]
    assert [v for _, v, _ in _judged("3-15+5", gold.replace("-7", "-8"))] == [1, -1, 1]   # the box carries the written -8 on correctly


def test_every_gold_solution_of_the_committed_splits_is_judged_correct():
    from sgopd_lite.data import arithmetic_split

    for split in ("train", "eval", "eval_skills"):
        for p in arithmetic_split(split):
            for style in ("chain", "prose"):
                from sgopd_lite.data import parse_expression
                gold = solve(*parse_expression(p.question), style)[0]
                assert {s.verdict for s in check_steps(p.question, gold)} == {1}, (p.question, style)


def test_a_copied_wrong_operand_is_a_wrong_step_and_a_cut_line_is_not_checkable():
    assert [v for _, v, _ in _judged("15-7+16", "15-7=8\n9+16=25\n")] == [1, -1]
    assert [v for _, v, _ in _judged("15-7+16", "15-7=8\n8+1")] == [1, 0]
    assert check_steps("What is 2+2?", "4") == []                       # not this project's arithmetic


def test_slip_counts_find_the_forgotten_carry_and_borrow():
    wrong = solve([15, 7, 16], ["-", "+"], slip=True, borrow_slip=True)[0]      # both forgotten
    assert slip_counts(check_steps("15-7+16", wrong)) == {"carry_steps": 1, "carry_slips": 1,
                                                          "borrow_steps": 1, "borrow_slips": 1}
    right = solve([15, 7, 16], ["-", "+"])[0]
    assert slip_counts(check_steps("15-7+16", right))["borrow_slips"] == 0


def test_token_verdicts_spread_each_step_over_its_tokens(char_tokenizer):
    response = "15-7=18\n18+16=34\n\\boxed{34}"
    ids = char_tokenizer(response, add_special_tokens=False)["input_ids"] + [char_tokenizer.eos_token_id]
    v = token_verdicts(char_tokenizer, check_steps, "15-7+16", ids)
    assert v == [-1] * 8 + [1] * 9 + [1] * 10 + [0]                     # EOS: no step



def test_first_wrong_points_at_the_character_where_a_wrong_line_departs():
    cases = {"23-7=26\n26+5=31\n\\boxed{31}": ["26"],          # forgotten borrow: the tens digit
             "23-7=15\n15+5=20\n\\boxed{21}": ["5", "1}"],       # right borrow digit, wrong units; wrong box
             "23-8=15\n15+5=20\n\\boxed{20}": ["8=15"],          # a miscopied operand
             "23-7=1\n1+5=6\n\\boxed{6}": ["\n"],               # stops short: departs at the newline
             "23-7=16\n16+5=21\n\\boxed{21}\nx": ["x"],         # a line after the box: all of it
             "23-7 is 16\n16+5 is 21\nso \\boxed{22}": ["2}"]}  # the other style, a wrong box
    for response, departs in cases.items():
        wrong = [s for s in check_steps("23-7+5", response) if s.verdict == -1]
        assert [response[s.first_wrong:s.end].rstrip("\n") or "\n" for s in wrong] == departs, response
        assert all(s.first_wrong is None for s in check_steps("23-7+5", response) if s.verdict != -1)


def test_token_verdicts_by_prefix_trust_a_wrong_line_up_to_its_first_wrong_character(char_tokenizer):
    response = "23-7=15\n15+5=20\n\\boxed{20}"                        # the borrow right, the units wrong
    ids = char_tokenizer(response, add_special_tokens=False)["input_ids"]
    assert token_verdicts(char_tokenizer, check_steps, "23-7+5", ids) == [-1] * 8 + [1] * 18
    by_prefix = token_verdicts(char_tokenizer, check_steps, "23-7+5", ids, unit="prefix")
    assert by_prefix == [1] * 6 + [-1] * 2 + [1] * 18                   # "23-7=1" trusted, "5\n" not
    with pytest.raises(ValueError, match="step unit"):
        token_verdicts(char_tokenizer, check_steps, "23-7+5", ids, unit="token")


# --------------------------------------------------------------------------------------------
# The advantages, on hand-made inputs
# --------------------------------------------------------------------------------------------

def _signals(a2, rewards, groups, **kw):
    a2 = torch.tensor(a2, dtype=torch.float32)
    return Signals(old_logp=torch.zeros_like(a2), rewards=torch.tensor(rewards, dtype=torch.float32),
                   group_ids=torch.tensor(groups), mask=torch.ones_like(a2), teacher_logp=a2, **kw)


def test_teacher_probe_gives_a_failed_prompt_grpo_and_a_passed_prompt_the_teachers_advantage():
    a2 = [[0.5, -0.3], [0.2, 0.4], [-1.0, 0.7], [0.3, 0.1]]
    s = _signals(a2, [1, 0, 1, 0], [0, 0, 1, 1], prompt_trusted=torch.tensor([True, True, False, False]))
    out = method_advantage("teacher_probe", GateConfig.opd(), s)
    assert torch.allclose(out.advantage[:2], torch.tensor(a2[:2]))          # trusted: OPD, A = a2
    g = grpo_advantage(s.rewards, s.group_ids)
    assert torch.allclose(out.advantage[2:], g[2:, None].expand(2, 2))      # failed: the reward's
    drop = method_advantage("teacher_probe", GateConfig.opd(), s, fallback="drop")
    assert (drop.advantage[2:] == 0).all() and torch.allclose(drop.advantage[:2], torch.tensor(a2[:2]))
    assert out.metrics["probe_frac_fallback"] == 0.5


def test_step_gate_zeroes_by_the_tokens_own_step():
    # one correct rollout (r = 1), tokens of a wrong step and of a correct step, pushed up and down
    a2 = [[0.5, -0.5, 0.5, -0.5, 0.5]]
    verdict = torch.tensor([[1, 1, -1, -1, 0]])                            # last: no step -> rollout's
    s = _signals(a2, [1], [0], step_verdict=verdict)
    out = method_advantage("step_gate", GateConfig.opdvr(), s)
    # correct & down: 0; wrong & up: 0; wrong & down and correct & up: kept; no step: rollout correct & up
    assert out.advantage.tolist() == [[0.5, 0.0, 0.0, -0.5, 0.5]]
    rollout_only = method_advantage("opdvr", GateConfig.opdvr(), _signals(a2, [1], [0]))
    assert rollout_only.advantage.tolist() == [[0.5, 0.0, 0.5, 0.0, 0.5]]  # the rollout's verdict alone


def test_first_error_gate_trusts_the_prefix_and_distrusts_the_rest():
    verdict = torch.tensor([[1, 1, -1, 1, 0], [1, 1, 1, 0, 0]])
    assert first_error_verdict(verdict).tolist() == [[1, 1, -1, -1, -1], [1, 1, 1, 0, 0]]
    a2 = [[-0.5, 0.5, 0.5, 0.5, -0.5], [0.5, -0.5, 0.5, 0.5, -0.5]]
    s = _signals(a2, [0, 0], [0, 0], step_verdict=verdict)
    out = method_advantage("first_error_gate", GateConfig.opdvr(), s)
    # row 0: before the first error correct (down zeroed); from it on wrong (up zeroed)
    assert out.advantage[0].tolist() == [0.0, 0.5, 0.0, 0.0, -0.5]
    # row 1: no wrong step; the step verdicts, then the rollout's (wrong: up zeroed, down kept)
    assert out.advantage[1].tolist() == [0.5, 0.0, 0.5, 0.0, -0.5]


def test_oracle_gate_zeroes_exactly_where_the_teachers_top_token_is_wrong():
    a2 = [[0.4, -2.0, 0.3, -0.2], [0.1, 0.1, 0.1, 0.1]]
    top = torch.tensor([[5, 6, 7, 8], [1, 1, 1, 1]])
    correct = torch.tensor([[5, 9, 7, -1], [1, 1, 1, 1]])                  # -1: after the first mistake
    s = _signals(a2, [1, 0], [0, 0], teacher_top=top, correct_next=correct)
    out = method_advantage("oracle_gate", GateConfig.opd(), s)
    assert torch.equal(out.advantage, torch.tensor([[0.4, 0.0, 0.3, -0.2], [0.1, 0.1, 0.1, 0.1]]))
    assert out.metrics["frac_oracle_dropped"] == 1 / 8


def test_hybrid_adds_c_times_the_grpo_advantage_to_the_teachers():
    a2 = [[0.5, -0.5], [0.1, 0.2]]
    s = _signals(a2, [1, 0], [0, 0])
    g = grpo_advantage(s.rewards, s.group_ids)
    out = method_advantage("hybrid", GateConfig.opd(), s, hybrid_c=4.0)
    assert torch.allclose(out.advantage, torch.tensor(a2) + 4.0 * g[:, None])


def test_grpo_through_the_one_place_equals_the_group_normalised_reward():
    s = _signals([[0.5, 0.5], [0.1, 0.1], [0.3, 0.3]], [1, 0, 0], [0, 0, 0])
    s.mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    out = method_advantage("grpo", GateConfig.opd(), s)
    g = grpo_advantage(s.rewards, s.group_ids)
    assert torch.allclose(out.advantage, g[:, None] * s.mask)


def test_push_evidence_sorts_pushes_by_direction_not_by_the_teachers_top_token():
    # position 0: correct token, teacher's top token is right, yet a2 < 0: a harmful push;
    # position 1: correct token pushed up (helpful); 2: wrong token pushed up (harmful); 3: unknown
    a2 = torch.tensor([[-0.3, 0.8, 0.6, 0.2]])
    ok = torch.tensor([[1, 1, -1, 0]])
    adv = torch.tensor([[0.0, 0.8, 0.3, 0.2]])                             # zeroed, kept, shrunk
    out = push_evidence(a2, adv, ok, torch.ones_like(a2), "p")
    assert out["p_positions"] == 3 and out["p_harm_n"] == 2 and out["p_help_n"] == 1
    assert out["p_harm_zeroed"] == 0.5 and out["p_harm_shrunk"] == 0.5 and out["p_help_unchanged"] == 1.0
    assert out["p_harm_a2_abs_mean"] == pytest.approx(0.45)      # sizes: -0.3 and +0.6 do not cancel


def test_the_evidence_reads_the_teacher_term_not_the_grpo_term():
    a2 = [[0.5, -0.5], [0.1, 0.2]]
    s = _signals(a2, [1, 0], [0, 0])
    hyb = method_advantage("hybrid", GateConfig.opd(), s, hybrid_c=4.0)
    assert torch.equal(hyb.teacher_term, torch.tensor(a2))          # the teacher's push, untouched
    s.prompt_trusted = torch.tensor([False, False])
    probe = method_advantage("teacher_probe", GateConfig.opd(), s)
    assert (probe.teacher_term == 0).all() and (probe.advantage != 0).any()


# --------------------------------------------------------------------------------------------
# Through the trainer and the command line
# --------------------------------------------------------------------------------------------

def _world(char_tokenizer):
    w = make_tiny_world(char_tokenizer)
    w.train_problems = w.train_problems[:24]
    w.token_oracle = lambda q, ids: correct_next_tokens(char_tokenizer, q, ids)
    w.step_checker = check_steps
    return w


@pytest.mark.parametrize("method", ["teacher_probe", "step_gate", "first_error_gate", "hybrid", "oracle_gate"])
def test_every_verifier_role_method_trains_and_logs_its_evidence(tmp_path, char_tokenizer, method):
    cfg = TrainConfig(method=method, steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12,
                      eval_every=0, eval_problems=2, eval_n=2, save_every=0, log_rollouts=0,
                      probe={"m": 2, "batch_prompts": 8}, out_dir=str(tmp_path / "run"))
    history = Trainer(cfg, world=_world(char_tokenizer), verbose=False).run()
    last = history[-1]
    for key in ("loss_pg", "adv_abs_mean", "frac_zero_push", "push_step_positions", "push_oracle_positions"):
        assert key in last, key
    if method == "teacher_probe":
        assert "probe_fallback" in last
        saved = json.loads((tmp_path / "run" / "probe.json").read_text())
        assert len(saved["passes"]) == 24


def _probe_cfg(out_dir: str, steps: int, prompts_per_step: int = 3, group_size: int = 4, seed: int = 0, m: int = 2,
               scope: str = "all") -> TrainConfig:
    """A short teacher_probe run on `_world`'s 24 prompts."""
    return TrainConfig(method="teacher_probe", steps=steps, prompts_per_step=prompts_per_step, group_size=group_size,
                       max_new_tokens=12, eval_every=0, eval_problems=2, eval_n=2, save_every=0, log_rollouts=0,
                       seed=seed, probe={"m": m, "batch_prompts": 8, "scope": scope}, out_dir=out_dir)


def test_the_probe_table_does_not_shift_the_students_sampling(tmp_path, char_tokenizer):
    """Probing draws from its own seeded stream: a run whose table is read back from probe.json
    samples the same rollouts as the run that computed it."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        if name == "b":
            out.mkdir()
            (out / "probe.json").write_text((tmp_path / "a" / "probe.json").read_text())
        cfg = _probe_cfg(str(out), steps=2)
        runs.append(Trainer(cfg, world=_world(char_tokenizer), verbose=False).run())
    assert [m["reward_mean"] for m in runs[0]] == [m["reward_mean"] for m in runs[1]]
    assert [m["loss_pg"] for m in runs[0]] == [m["loss_pg"] for m in runs[1]]


def test_the_seen_probe_pays_only_for_the_prompts_a_run_draws(tmp_path, char_tokenizer):
    """probe.scope="seen" probes a prompt when a batch first draws it: after 2 steps of 3 prompts
    the table holds at most those 6 prompts (not all 24); a second run that reads the table back
    probes nothing and samples the same rollouts; a table of another run's key is not reused."""
    runs, tables = [], []
    for name in ("a", "b"):
        out = tmp_path / name
        if name == "b":
            out.mkdir()
            (out / "probe-seen.json").write_text((tmp_path / "a" / "probe-seen.json").read_text())
        cfg = _probe_cfg(str(out), steps=2, scope="seen")
        runs.append(Trainer(cfg, world=_world(char_tokenizer), verbose=False).run())
        tables.append(json.loads((out / "probe-seen.json").read_text()))
        assert not (out / "probe.json").exists()
    assert 3 <= len(tables[0]["passes"]) <= 6 and tables[0]["key"]["scope"] == "seen"
    assert all(0 <= p <= 2 for p in tables[0]["passes"].values())
    assert tables[1]["passes"] == tables[0]["passes"]
    assert tables[1]["seconds"] == tables[0]["seconds"]            # nothing probed again
    assert [m["reward_mean"] for m in runs[0]] == [m["reward_mean"] for m in runs[1]]
    assert [m["loss_pg"] for m in runs[0]] == [m["loss_pg"] for m in runs[1]]
    assert [m["probe_fallback"] for m in runs[0]] == [m["probe_fallback"] for m in runs[1]]

    out = tmp_path / "c"                                           # another seed: the table is redone
    out.mkdir()
    (out / "probe-seen.json").write_text((tmp_path / "a" / "probe-seen.json").read_text())
    cfg = _probe_cfg(str(out), steps=1, seed=1, scope="seen")
    Trainer(cfg, world=_world(char_tokenizer), verbose=False).run()
    redone = json.loads((out / "probe-seen.json").read_text())
    assert redone["key"]["seed"] == 1 and len(redone["passes"]) <= 3


def test_a_seen_prompts_pass_count_does_not_depend_on_its_batch(tmp_path, char_tokenizer):
    """Each prompt is probed from its own stream (the run's seed and its index): runs with other
    batch sizes give every prompt they share the same count, and so would two processes."""
    tables = []
    for per_step in (3, 5):
        cfg = _probe_cfg(str(tmp_path / str(per_step)), steps=2, prompts_per_step=per_step, group_size=2, m=4,
                         scope="seen")
        Trainer(cfg, world=_world(char_tokenizer), verbose=False).run()
        tables.append(json.loads((tmp_path / str(per_step) / "probe-seen.json").read_text())["passes"])
    shared = set(tables[0]) & set(tables[1])
    assert shared and all(tables[0][i] == tables[1][i] for i in shared)


def test_an_unknown_probe_scope_is_refused():
    with pytest.raises((ConfigError, ValueError), match="scope"):
        TrainConfig(method="teacher_probe", probe={"scope": "some"})


@pytest.mark.parametrize("method", ["step_gate", "first_error_gate", "oracle_gate"])
def test_a_world_without_the_checker_refuses_the_method_in_one_line(capsys, method):
    from sgopd_lite.__main__ import main

    assert main(["train", f"method={method}", "world.size=qwen"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and method in err[0] and "world.size=qwen" in err[0]
    with pytest.raises(ConfigError, match=method):
        TrainConfig(method=method, world={"size": "qwen"})


def test_the_smol_world_has_the_step_checker_and_no_oracle():
    """SmolLM2 writes the tiny world's chain lines: the step methods run there, the oracle gate
    (which needs the correct next token) does not."""
    TrainConfig(method="step_gate", world={"size": "smol"})
    TrainConfig(method="first_error_gate", world={"size": "smol"})
    with pytest.raises(ConfigError, match="oracle_gate"):
        TrainConfig(method="oracle_gate", world={"size": "smol"})


def test_a_world_passed_in_without_a_step_checker_is_refused(tmp_path, char_tokenizer):
    cfg = TrainConfig(method="step_gate", steps=1, out_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="step checker"):
        Trainer(cfg, world=make_tiny_world(char_tokenizer), verbose=False)


def test_world_provides_matches_the_tiny_world():
    from sgopd_lite.worlds import WORLD_PROVIDES
    from sgopd_lite.worlds.tiny import load

    world = load(TrainConfig(method="opd"), verbose=False)
    assert {f for f in ("token_oracle", "step_checker") if getattr(world, f) is not None} == set(WORLD_PROVIDES["tiny"])


def test_a_probe_table_of_another_teacher_or_sampling_is_not_reused(tmp_path, char_tokenizer):
    out = tmp_path / "run"
    out.mkdir()
    stale = {"key": {"seed": 0, "m": 2, "n_prompts": 24}, "passes": [0] * 24}    # an older, thinner key
    (out / "probe.json").write_text(json.dumps(stale))
    cfg = _probe_cfg(str(out), steps=1)
    Trainer(cfg, world=_world(char_tokenizer), verbose=False).run()
    saved = json.loads((out / "probe.json").read_text())
    assert saved["key"] != stale["key"] and saved["key"]["max_new_tokens"] == 12 and "world" in saved["key"]
    assert not (out / "probe.json.tmp").exists()
