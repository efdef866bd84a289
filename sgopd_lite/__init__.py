"""sgopd_lite: an educational reproduction of Sign-Gated On-Policy Distillation (SG-OPD).

Where things live (METHOD.md is the specification; each module names its sections):

    losses.py      log-probs of sampled tokens, KL estimators, policy-gradient / PPO / CE losses,
                   full-vocabulary divergences                                     (METHOD §3, §5)
    gate.py        the sign-consistency gate: a1, a2, token classes, lambda_t, advantage (§3-5)
    scheduler.py   phased teacher sampling: the weight w(k) and teacher-prompt counts     (§6)
    verifier.py    answer extraction, math-verify grading with a hard time bound, rewards  (§2)

    data.py        problem sets (the arithmetic task, reasoning-gym, JSONL, hub) and the prompt
    tiny_world.py  the CPU teacher/student pair and its two assumption-breaking knobs
    smol_world.py  the smol teacher: SmolLM2-135M after its short, cached task fine-tune
    models.py      SmolLM2 / Qwen loaders, LoRA and QLoRA, tokenizer compatibility checks
    rollout.py     sampling with HF generate, the position-based response mask, log-probs
    engines.py     rollout engines behind one interface: HF generate (default) and vLLM
    config.py      the training config dataclasses, presets, YAML and key=value overrides
    train.py       the on-policy loop of METHOD §7 (accelerate for several processes)
    evaluate.py    avg@n and unbiased pass@k                                                (§9)

Submodules are imported on use (`from sgopd_lite.gate import sign_gate`), so importing the
package itself stays cheap.
"""

__version__ = "0.1.0"
