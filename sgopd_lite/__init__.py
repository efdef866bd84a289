"""sgopd_lite: an educational reproduction of Sign-Gated On-Policy Distillation (SG-OPD).

Where things live, floor by floor (docs/method.md describes the method; each module names its
sections). A module imports only from its own floor or the floors below it, never from above;
tests/test_imports.py reads every import statement and fails on any circle.

    ground floor: the math, pure functions
    losses.py      log-probs of sampled tokens, KL estimators, policy-gradient / PPO / CE losses,
                   full-vocabulary divergences (method.md §3, §5)
    gate.py        the sign-consistency gate: a1, a2, token classes, lambda_t, advantage (method.md §3-5)
    scheduler.py   phased teacher sampling: the weight w(k) and teacher-prompt counts (method.md §6)
    verifier.py    answer extraction, math-verify grading with a hard time bound, rewards (method.md §2)
    advantage.py   every method's per-token advantage, side by side: where the verifier acts (method.md §13)
    mix.py         a mixed method's teacher and reward routes: scales, gradient budget (method.md §14)

    first floor: data, models, sampling
    data.py        problem sets (the arithmetic task, reasoning-gym, JSONL, hub) and the prompt
    assets/        the package data (arithmetic splits, committed tiny models), found through
                   importlib.resources, and where outputs go (the checkout, else the current folder)
    models.py      generic loading: a pair from folders or the hub, LoRA / QLoRA, the
                   compatibility checks, the reference policy (imports no world)
    rollout.py     sampling with HF generate, the position-based response mask, log-probs
    engines.py     rollout engines behind one interface: HF generate (default) and vLLM
    evaluate.py    avg@n and unbiased pass@k (method.md §9)
    config.py      the training config dataclasses, presets, YAML and key=value overrides
    knobs.py       the table of every config knob (docs/usage.md), read from those dataclasses

    second floor: the worlds a run trains on (worlds/, one module each, one dispatch by name)
    worlds/base.py World, problem sets, the shared SFT batch
    worlds/tiny.py the CPU teacher/student pair and its two assumption-breaking knobs
    worlds/smol.py SmolLM2-135M offline (GGUF conversion, pruning) and its cached fine-tunes
    worlds/hub.py  a pretrained pair from folders or the hub (the Qwen pair by default)

    third floor: running
    train.py       the on-policy loop of docs/method.md §7 (accelerate for several processes)
    demo.py        `make demo`: OPD, a gate, the teacher probe and GRPO where the gate has work to do, per skill and per token
    viz.py         figures and HTML for notebooks and reports, one figure per function

    top floor: the study (study/)
    study/plan.py    `make reproduce`: the seeded plan, its runs and the worker processes
    study/report.py  docs/results_first_study.md: the first study's tables and figures
    study/worlds_report.py  docs/results.md: the worlds study, from the run summaries
    study/stats.py   the 95% interval and paired-difference helpers of every table
    study/sweep.py   `sweep`: a grid of runs from key=value lists / ranges or a study file
                     (resumable, --jobs workers, --shard i/n); run summaries
    study/sweep_report.py  `sweep-report`: a sweep's table with intervals and a heatmap
    study/roles_report.py, horizon_report.py, mix_report.py  sections of docs/results.md
    study/unseen.py, balance.py, channels.py, error_kinds.py, smol_start.py  measurements the
                     report or a study file reads (each writes its JSON under results/runs/)

Submodules are imported on use (`from sgopd_lite.gate import sign_gate`), so importing the
package itself stays cheap.
"""

__version__ = "0.1.0"
