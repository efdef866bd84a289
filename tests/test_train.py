"""The training loop's plumbing on random-init tiny models (seconds, CPU)."""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite.config import TrainConfig
from sgopd_lite.train import Trainer, grpo_advantage, micro_batches, step_prompt_indices


def _cfg(tmp_path, **kw):
    base = dict(steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, eval_every=0,
                eval_problems=2, eval_n=2, save_every=0, log_rollouts=1, out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", ["opd", "exopd", "gate_only", "pts_only", "sgopd", "grpo"])
def test_every_preset_runs_and_logs_the_metrics(tmp_path, char_tokenizer, method):
    cfg = _cfg(tmp_path, method=method, pts={"k1": 1, "k2": 2, "m": 2})
    history = Trainer(cfg, world=make_tiny_world(char_tokenizer), verbose=False).run()
    assert [m["step"] for m in history] == [0, 1]
    last = history[-1]
    for key in ("reward_mean", "loss_pg", "grad_norm", "entropy", "response_len", "truncation_rate",
                "time_rollout", "time_verify", "time_teacher", "time_update", "eval_avg@2"):
        assert key in last, key
    if method != "grpo":
        for key in ("frac_consensus", "frac_conflict_i", "frac_conflict_ii", "frac_neutral", "frac_gated",
                    "frac_conflict_truncated", "a2_mean", "kl_k3", "adv_abs_mean", "pts_w"):
            assert key in last, key
        assert math.isfinite(last["grad_norm"]) and last["grad_norm"] > 0
        assert history[0]["pts_w"] == (1.0 if method in ("sgopd", "pts_only") else 0.0)
    else:
        assert "pts_w" not in last                      # grpo has no teacher: no PTS weight to log
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["step"] == 1
    rollout = json.loads((tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()[0])
    assert "tokens" in rollout
    if method != "grpo":
        assert len(rollout["token_class"]) == len(rollout["tokens"]) == len(rollout["a2"])
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_prompt_choice_is_a_pure_function_of_seed_step_and_rank():
    a = step_prompt_indices(0, 5, 0, 100, 8)
    assert a == step_prompt_indices(0, 5, 0, 100, 8)
    assert a != step_prompt_indices(0, 5, 1, 100, 8) and a != step_prompt_indices(0, 6, 0, 100, 8)
    assert len(set(a)) == 8


def test_grpo_advantage_is_group_normalised():
    r = torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    a = grpo_advantage(r, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert a[:3].mean().abs() < 1e-6 and a[0] > 0 > a[1]
    assert (a[3:] == 0).all()                          # all-correct group: no signal


def _one_batch(trainer, k=0):
    """Rollouts + advantages of one step, computed the way train_step does."""
    from sgopd_lite.gate import sign_gate
    from sgopd_lite.rollout import sample, sequence_logprobs

    torch.manual_seed(123)
    prompts = trainer.prompts[:3]
    ro = sample(trainer.policy, trainer.tok, prompts, 4, 12, 1.0)
    r = torch.tensor([float(i % 2) for i in range(len(ro))])
    with torch.no_grad():
        old = sequence_logprobs(trainer.policy, ro)
        teacher = sequence_logprobs(trainer.teacher, ro)
    gate = sign_gate(teacher, old, r, ro.group_ids, ro.response_mask, cfg=trainer.cfg.gate)
    return ro, old, gate


@pytest.mark.parametrize("loss_type", ["sampled", "dense"])
def test_update_gradient_does_not_depend_on_micro_batching(tmp_path, char_tokenizer, loss_type):
    grads = {}
    for mbs in (None, 5, 1):
        world = make_tiny_world(char_tokenizer)
        method = "gate_only" if loss_type == "sampled" else "opd"      # a gate needs the sampled loss
        trainer = Trainer(_cfg(tmp_path, method=method, loss_type=loss_type, micro_batch_size=mbs),
                          world=world, verbose=False)
        ro, old, gate = _one_batch(trainer)
        trainer.optimizer.zero_grad()
        trainer.backward(ro, old, gate.advantage, gate.lambda_t)
        grads[mbs] = torch.cat([p.grad.flatten() for p in trainer.policy.parameters()])
    torch.testing.assert_close(grads[5], grads[None], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[None], atol=1e-6, rtol=1e-5)
    assert grads[None].abs().sum() > 0


def test_non_finite_teacher_logprob_skips_the_step(tmp_path, char_tokenizer):
    world = make_tiny_world(char_tokenizer)
    with torch.no_grad():                               # a corrupted teacher: NaN everywhere
        world.teacher.model.norm.weight.fill_(float("nan"))
    trainer = Trainer(_cfg(tmp_path, method="opd", steps=1), world=world, verbose=False)
    before = {n: p.clone() for n, p in trainer.policy.named_parameters()}
    history = trainer.run()
    assert history[0]["skipped"] == "non-finite teacher log-prob"
    for n, p in trainer.policy.named_parameters():
        assert torch.equal(p, before[n]), n


def test_resume_continues_exactly(tmp_path, char_tokenizer):
    kw = dict(method="sgopd", steps=4, save_every=2, pts={"k1": 1, "k2": 3, "m": 2})
    straight = Trainer(_cfg(tmp_path / "a", **kw), world=make_tiny_world(char_tokenizer), verbose=False)
    full = straight.run()

    first = Trainer(_cfg(tmp_path / "b", **kw), world=make_tiny_world(char_tokenizer), verbose=False)
    first.run(stop_after=2)                             # "killed" after the checkpoint at step 2
    metrics = tmp_path / "b" / "run" / "metrics.jsonl"
    with metrics.open("a") as f:                        # a step logged after the checkpoint
        f.write(json.dumps({"step": 2, "stale": True}) + "\n")
    resumed = Trainer(_cfg(tmp_path / "b", **kw), world=make_tiny_world(char_tokenizer), verbose=False)
    assert resumed.step == 0
    rest = resumed.run()
    assert resumed.step == 4 and [m["step"] for m in rest] == [2, 3]

    def strip(m):
        return {k: v for k, v in m.items() if not k.startswith(("time_", "eval_seconds", "eval_unseen_seconds"))}

    logged = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [m["step"] for m in logged] == [0, 1, 2, 3]  # the stale line is gone
    for a, b in zip(full, logged):
        assert strip(a) == strip(b)
    for (n, p), (_, q) in zip(straight.policy.named_parameters(), resumed.policy.named_parameters()):
        assert torch.equal(p, q), n


def test_micro_batches_cover_the_batch():
    assert micro_batches(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert micro_batches(5, None) == [slice(0, 5)]


def test_demo_writes_report_and_figures(tmp_path):
    from sgopd_lite import demo

    summary = demo.run_demo(out_dir=str(tmp_path / "demo"), steps=2, eval_problems=8, eval_n=2)
    out = tmp_path / "demo"
    report = (out / "report.md").read_text()
    assert report.splitlines()[0] == demo.FINDING                   # what the study found comes first
    for name in demo.DEMO_ARMS:                                      # every run keeps its config
        cfg = json.loads((Path(summary[name]["out_dir"]) / "config.json").read_text())
        assert cfg["loss_type"] == "sampled" and cfg["world"]["teacher_slip_kind"] == "borrow"
    table = report.split("## Accuracy per skill")[1].split("##")[0]
    assert "| skill | teacher | starting student | OPD | OPDVR's gate | teacher probe | GRPO |" in table
    for skill in ("carry", "borrow", "both", "none"):                # one row per skill
        assert f"| {skill} (avg@2) |" in table
    # where each verifier acted and what it kept: a row per model, with the forgotten-borrow share
    roles = report.split("## Where each verifier acted and what it kept")[1].split("\n## ")[0]
    assert "| model | where the verifier acts | avg@2 | carry | borrow | forgot borrow | forgot carry |" in roles
    for name, where in demo.WHERE_ACTS.items():
        row = next(line for line in roles.splitlines() if line.startswith(f"| {name} | {where} |"))
        borrow = summary[name]["slip"]["borrow"]
        assert row.split(" | ")[5] == (f"{100 * borrow:.1f}" if borrow == borrow else "-"), row
    assert roles.count("| teacher |") == roles.count("| starting student |") == 1
    assert re.search(r"The teacher probe sent \d+% of its trained prompts to GRPO \(borrow prompts \d+%", roles)
    assert summary["teacher probe"]["routed"]["all"] is not None and "routed" not in summary["OPD"]
    # the mechanism: the same wrong-teacher push on a right digit, dropped in a correct rollout, kept in a wrong one
    right, wrong = summary["example"]
    spots = [t for t, w in enumerate(right["teacher_wrong"]) if w]
    assert right["reward"] == 1 and wrong["reward"] == 0 and spots
    assert all(right["a2"][t] < 0 and right["gate"][t] == 0 for t in spots)
    assert any(wrong["gate"][t] == wrong["a2"][t] < 0 for t, w in enumerate(wrong["teacher_wrong"]) if w)
    assert "the gate's A = +0.00" in report
    for name in ("learning_curves.png", "kl_curves.png", "gate_tokens.png"):
        assert (out / name).stat().st_size > 1000, name


def test_world_gradient_checkpointing_reaches_the_student():
    """world.gradient_checkpointing turns on activation checkpointing of the student only."""
    from sgopd_lite.train import load_world

    def checkpointing(model):
        flag = getattr(model, "is_activation_checkpointing", None)
        return bool(flag if flag is not None else model.is_gradient_checkpointing)

    on = load_world(TrainConfig(world={"gradient_checkpointing": True}), verbose=False)
    off = load_world(TrainConfig(), verbose=False)
    assert checkpointing(on.student) and not checkpointing(on.teacher) and not checkpointing(off.student)
