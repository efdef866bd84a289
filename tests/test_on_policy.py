"""The tokens a run learns from come from the distribution its loss assumes (the rule: on-policy
in every configuration): temperature, refused combinations, skips every process agrees on, the
gate's visible activity, and the verdict of truncated rollouts. The sampler itself is tested in
test_rollout.py, the two-process skip in test_distributed.py."""

import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite.config import ConfigError, TrainConfig
from sgopd_lite.gate import GateConfig, TokenClass, sign_gate
from sgopd_lite.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path, **kw):
    base = dict(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=10, eval_every=0,
                eval_problems=2, eval_n=2, save_every=0, log_rollouts=0, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **kw})


# -- temperature -----------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.7, 1.3])
def test_a_training_temperature_other_than_one_is_refused(t):
    with pytest.raises(ConfigError, match="^temperature: .*off-policy"):
        TrainConfig(temperature=t)


def test_evaluation_samples_at_eval_temperature(tmp_path, char_tokenizer, monkeypatch):
    seen = []

    def fake_evaluate(model, tok, problems, **kw):
        seen.append(kw["temperature"])
        return SimpleNamespace(n=2, k=2, avg_at_n=0.0, pass_at_k=0.0, seconds=0.0, per_skill={}, steps={})

    monkeypatch.setattr("sgopd_lite.evaluate.evaluate", fake_evaluate)
    trainer = Trainer(_cfg(tmp_path, method="opd", eval_temperature=0.6), world=make_tiny_world(char_tokenizer),
                      verbose=False)
    trainer.evaluate()
    assert seen == [0.6]
    assert TrainConfig().eval_temperature == 1.0          # docs/method.md §9: avg@n at temperature 1


# -- impossible combinations, refused before any model loads -------------------------------------

def test_grpo_with_the_dense_loss_is_refused():
    with pytest.raises(ConfigError, match="^loss_type: method=grpo"):
        TrainConfig(method="grpo", loss_type="dense")


def test_cli_refuses_grpo_dense_in_one_line_with_exit_2():
    proc = subprocess.run([sys.executable, "-m", "sgopd_lite", "train", "--config", "configs/tiny.yaml",
                           "method=grpo", "loss_type=dense"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "loss_type" in lines[0] and "Traceback" not in proc.stderr


def test_lora_dropout_with_several_ppo_epochs_is_refused():
    with pytest.raises(ConfigError, match="^world.lora_dropout: must be 0 with ppo_epochs > 1"):
        TrainConfig(ppo_epochs=2, world={"lora_dropout": 0.1})
    TrainConfig(ppo_epochs=1, world={"lora_dropout": 0.1})        # one update: allowed
    TrainConfig(ppo_epochs=2, world={"lora_dropout": 0.0})


def test_a_world_passed_in_is_checked_for_dropout_when_the_trainer_is_built(tmp_path, char_tokenizer):
    from peft import LoraConfig, get_peft_model

    world = make_tiny_world(char_tokenizer)
    world.student = get_peft_model(world.student, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                                              target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ConfigError, match="^ppo_epochs: .*dropout"):
        Trainer(_cfg(tmp_path, method="opd", ppo_epochs=2), world=world, verbose=False)
    Trainer(_cfg(tmp_path, method="opd", ppo_epochs=1), world=world, verbose=False)   # fine with one update


def test_settings_the_method_ignores_get_a_warning_not_an_error():
    with pytest.warns(UserWarning, match="pts.* is ignored"):
        TrainConfig(method="grpo", pts={"enabled": True})
    with pytest.warns(UserWarning, match="gate.* is ignored"):
        TrainConfig(method="grpo", gate={"lambda_e": 1.8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(method="grpo")                                  # the preset itself warns about nothing
        TrainConfig(method="sgopd")


def test_conflict_masking_is_masking_only_against_the_old_policy():
    assert GateConfig.conflict_masking().reference == "old"
    with pytest.raises(ValueError, match="reference='initial'"):
        GateConfig.conflict_masking(reference="initial")
    # what lambda_i = 0 does against the initial student: A = log pi_ref - log pi_old, not 0
    cfg = GateConfig(lambda_e=1.0, lambda_i=0.0, reference="initial", a1_mode="sign")
    teacher, old, ref = torch.tensor([[-1.0]]), torch.tensor([[-2.0]]), torch.tensor([[-1.5]])
    out = sign_gate(teacher, old, torch.tensor([0.0]), torch.tensor([0]), torch.ones(1, 1), ref, cfg)
    assert out.token_class[0, 0] == TokenClass.CONFLICT_II
    assert out.advantage[0, 0].item() == pytest.approx((-1.5) - (-2.0))


# -- skips -----------------------------------------------------------------------------------

def _weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters()}


def test_a_non_finite_reference_logprob_skips_the_step(tmp_path, char_tokenizer):
    trainer = Trainer(_cfg(tmp_path, method="exopd"), world=make_tiny_world(char_tokenizer), verbose=False)
    with torch.no_grad():
        trainer.ref_model.model.norm.weight.fill_(float("nan"))
    before = _weights(trainer)
    history = trainer.run()
    assert history[0]["skipped"] == "non-finite reference log-prob"
    assert all(torch.equal(p, before[n]) for n, p in trainer.policy.named_parameters())


def test_a_non_finite_loss_skips_the_step(tmp_path, char_tokenizer):
    trainer = Trainer(_cfg(tmp_path, method="opd"), world=make_tiny_world(char_tokenizer), verbose=False)
    backward = trainer.backward

    def nan_loss(*args, **kw):
        info = backward(*args, **kw)
        return {**info, "loss_pg": float("nan")}

    trainer.backward = nan_loss
    before = _weights(trainer)
    history = trainer.run()
    assert history[0]["skipped"] == "non-finite loss or gradient"
    assert all(torch.equal(p, before[n]) for n, p in trainer.policy.named_parameters())
    # nothing was learned from this batch, so its gate numbers are not logged as if it had been
    assert not [k for k in history[0] if k.startswith(("frac_", "evidence_", "kl_", "a2_", "lambda_", "loss_"))]


def test_a_skipped_step_keeps_the_schedule_on_the_step_count(tmp_path, char_tokenizer):
    # warm-up over 4 steps: step k runs at lr (k + 1) / 4 whether or not an earlier step was
    # skipped, for a skip at the loss and for one at the log-probs
    def lrs(run, skip):
        cfg = _cfg(tmp_path / run, method="opd", steps=3, warmup_steps=4)
        trainer = Trainer(cfg, world=make_tiny_world(char_tokenizer), verbose=False)
        if skip == "loss":
            backward = trainer.backward
            trainer.backward = lambda *a, **kw: {**backward(*a, **kw), "loss_pg": float("nan")} \
                if trainer.scheduler.last_epoch == 0 else backward(*a, **kw)
        elif skip == "teacher":
            score = trainer._score
            trainer._score = lambda model, ro, **kw: _nan_first(score(model, ro, **kw), model is trainer.teacher
                                                               and trainer.scheduler.last_epoch == 0)
        history = trainer.run()
        assert ("skipped" in history[0]) == (skip is not None) and "skipped" not in history[1]
        return [m["lr"] for m in history]

    plain = lrs("plain", None)
    assert plain == pytest.approx([3e-4 * k / 4 for k in (1, 2, 3)])
    assert lrs("loss", "loss") == pytest.approx(plain)
    assert lrs("teacher", "teacher") == pytest.approx(plain)


def _nan_first(scored, poison: bool):
    """The teacher's scores with a NaN log-prob at the first position when `poison`."""
    if not poison:
        return scored
    logp, top = scored if isinstance(scored, tuple) else (scored, None)
    logp = logp.clone()
    logp[:, 0] = float("nan")
    return (logp, top) if top is not None else logp


# -- the gate's activity ---------------------------------------------------------------------

def test_frac_gated_counts_tokens_whose_coefficient_is_not_one():
    teacher = torch.tensor([[-1.0, -3.0, -2.0], [-3.0, -1.0, -2.0]])
    old = torch.full((2, 3), -2.0)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    r, g = torch.tensor([1.0, 0.0]), torch.tensor([0, 0])
    out = sign_gate(teacher, old, r, g, mask, cfg=GateConfig(lambda_e=1.8, lambda_i=1.0))
    # rollout 0 (correct): +1 consensus, -1 conflict I, 0 neutral; rollout 1 (wrong): -1 consensus, +1 conflict II
    assert out.metrics["frac_gated"] == pytest.approx(2 / 5)         # the two consensus tokens
    assert sign_gate(teacher, old, r, g, mask, cfg=GateConfig.opd()).metrics["frac_gated"] == 0.0


def test_a_silent_gate_is_warned_about_once(recwarn):
    holder = SimpleNamespace(cfg=TrainConfig(method="gate_only"), _gate_silent_steps=0, _gate_warned=False)
    for k in range(19):
        Trainer._watch_gate(holder, {"step": k, "frac_gated": 0.001, "frac_rollouts_no_evidence": 1.0})
    assert not recwarn.list
    Trainer._watch_gate(holder, {"step": 19, "frac_gated": 0.0, "frac_rollouts_no_evidence": 1.0})
    assert len(recwarn.list) == 1 and "a1_mode='sign'" in str(recwarn.list[0].message)
    for k in range(20, 60):
        Trainer._watch_gate(holder, {"step": k, "frac_gated": 0.0, "frac_rollouts_no_evidence": 1.0})
    assert len(recwarn.list) == 1                                    # once
    # plain OPD never gates: no warning however long it runs
    opd = SimpleNamespace(cfg=TrainConfig(method="opd"), _gate_silent_steps=0, _gate_warned=False)
    for k in range(40):
        Trainer._watch_gate(opd, {"step": k, "frac_gated": 0.0})
    assert len(recwarn.list) == 1


def test_an_active_step_resets_the_silence_count(recwarn):
    holder = SimpleNamespace(cfg=TrainConfig(method="gate_only"), _gate_silent_steps=0, _gate_warned=False)
    for k in range(40):
        Trainer._watch_gate(holder, {"step": k, "frac_gated": 0.5 if k % 10 == 0 else 0.0})
    assert not recwarn.list


# -- truncated rollouts ----------------------------------------------------------------------

def _truncation_case():
    # one group: rollout 0 correct, rollout 1 truncated (graded wrong), rollout 2 wrong.
    # The teacher pushes every token up (a2 > 0).
    teacher, old = torch.full((3, 2), -1.0), torch.full((3, 2), -2.0)
    return teacher, old, torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3, dtype=torch.long), torch.ones(3, 2), \
        torch.tensor([False, True, False])


def test_truncated_graded_counts_its_verdict_and_logs_the_conflict_share():
    teacher, old, r, g, mask, cut = _truncation_case()
    out = sign_gate(teacher, old, r, g, mask, cfg=GateConfig(), truncated=cut)
    assert out.token_class[1].tolist() == [TokenClass.CONFLICT_II] * 2
    # conflicts: rollouts 1 and 2 (2 tokens each); half of them sit in the truncated one
    assert out.metrics["frac_conflict_truncated"] == pytest.approx(0.5)


def test_truncated_wrong_forces_r_zero_and_neutral_drops_its_evidence():
    teacher, old, _, g, mask, cut = _truncation_case()
    r = torch.tensor([1.0, 1.0, 0.0])              # the truncated text happens to grade correct
    wrong = sign_gate(teacher, old, r, g, mask, cfg=GateConfig(truncated="wrong"), truncated=cut)
    assert wrong.a1[1] < 0 and wrong.token_class[1].tolist() == [TokenClass.CONFLICT_II] * 2
    neutral = sign_gate(teacher, old, r, g, mask, cfg=GateConfig(truncated="neutral"), truncated=cut)
    assert neutral.a1[1] == 0 and neutral.token_class[1].tolist() == [TokenClass.NEUTRAL] * 2
    assert neutral.lambda_t[1].tolist() == [1.0, 1.0]
    assert neutral.metrics["frac_conflict_truncated"] == 0.0
    graded = sign_gate(teacher, old, r, g, mask, cfg=GateConfig(), truncated=cut)
    assert graded.token_class[1].tolist() == [TokenClass.CONSENSUS] * 2
    with pytest.raises(ValueError, match="truncated must be one of"):
        GateConfig(truncated="skip")


def test_sign_gate_keeps_its_positional_arguments():
    teacher, old, r, g, mask, _ = _truncation_case()
    a = sign_gate(teacher, old, r, g, mask)
    b = sign_gate(teacher, old, r, g, mask, None, GateConfig())
    assert torch.equal(a.advantage, b.advantage)


def test_the_trainer_passes_truncation_to_the_gate(tmp_path, char_tokenizer, monkeypatch):
    seen = []
    import sgopd_lite.advantage as advantage_mod      # the trainer's advantages are formed there

    real = advantage_mod.sign_gate

    def spy(*args, **kw):
        seen.append(kw.get("truncated"))
        return real(*args, **kw)

    monkeypatch.setattr(advantage_mod, "sign_gate", spy)
    Trainer(_cfg(tmp_path, method="gate_only", max_new_tokens=3), world=make_tiny_world(char_tokenizer),
            verbose=False).run()
    assert seen and seen[0] is not None and seen[0].dtype == torch.bool and bool(seen[0].any())


def test_a_non_finite_loss_in_a_later_ppo_epoch_keeps_the_earlier_update_and_says_so(tmp_path, char_tokenizer):
    trainer = Trainer(_cfg(tmp_path, method="opd", ppo_epochs=2), world=make_tiny_world(char_tokenizer), verbose=False)
    backward, calls = trainer.backward, []

    def nan_in_epoch_2(*args, **kw):
        info = backward(*args, **kw)
        calls.append(1)
        return {**info, "loss_pg": float("nan")} if len(calls) == 2 else info

    trainer.backward = nan_in_epoch_2
    before = _weights(trainer)
    m = trainer.run()[0]
    assert "skipped" not in m and m["partial_update"].startswith("non-finite loss or gradient at epoch 2 of 2")
    assert any(not torch.equal(p, before[n]) for n, p in trainer.policy.named_parameters())   # epoch 1 stepped
    assert trainer.scheduler.last_epoch == 1


def test_a_zero_coefficient_against_the_initial_student_is_refused():
    with pytest.raises(ConfigError, match="^gate.reference: a gate with a coefficient 0"):
        TrainConfig(method="gate_only", gate={"lambda_e": 1.0, "lambda_i": 0.0, "reference": "initial"})
    with pytest.raises(ValueError, match="reference='old'"):
        GateConfig.opdvr(reference="initial")
    TrainConfig(method="exopd")                                      # no zero: ExOPD stays allowed


def test_reversed_gate_builds_its_cells_from_the_users_coefficients():
    g = TrainConfig(method="reversed_gate", gate={"lambda_e": 2.5, "lambda_i": 0.5}).gate
    assert g.cells() == {"correct_up": 0.5, "correct_down": 2.5, "wrong_up": 2.5, "wrong_down": 0.5}
    with pytest.warns(UserWarning, match="soft_gate: gate.lambda_e"):
        TrainConfig(method="soft_gate", gate={"lambda_e": 2.0})


def test_a_gate_defined_by_its_cells_is_watched_too(recwarn):
    holder = SimpleNamespace(cfg=TrainConfig(method="opd", gate={"wrong_up": 0.0, "wrong_down": 0.0}),
                             _gate_silent_steps=0, _gate_warned=False)
    recwarn.clear()                     # the config's own warning: cells under opd redefine the preset
    for k in range(20):
        Trainer._watch_gate(holder, {"step": k, "frac_gated": 0.0})
    assert len(recwarn.list) == 1


def test_only_held_out_splits_may_be_named_for_evaluation(tmp_path):
    from sgopd_lite.worlds.base import problem_sets
    from sgopd_lite.data import DataError

    with pytest.raises(DataError):
        problem_sets(TrainConfig(world={"eval_data": "train"}).world)     # not a held-out split
