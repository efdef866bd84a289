"""How much of the update does each signal of a mixed method get? The two routes' gradients
(docs/method.md §14) on the starting students of the three worlds of the roles section.

For each world and arm, on the first `batches` steps' batches of seed 0 (16 prompts x 8
rollouts, the study's protocol), the starting student samples, the arm forms its advantage, and
the trainer's own backward pass gives each route's gradient; no optimizer step is taken, so every
batch is scored at the start. Per arm, the mean over batches of:

    teacher, reward     ||g_teacher||, ||g_reward|| before any clip or budget
    reward share        ||g_reward|| / (||g_teacher|| + ||g_reward||)
    of rollouts         the reward route's share of the rollouts (what a prompt count would give it)
    clip factor         what the global clip (or the budget) multiplied the sum by
    after               the reward share of the gradient the optimizer receives
    AdamW ratio         how far AdamW's step moves the reward route's own objective under this
                        arm (its clip or budget, its second moment) relative to a run where the
                        reward alone made the gradient (clipped at 1.0 on its own):
                        `mix.adam_step_ratio`, second moments accumulated over the batches as
                        AdamW would (beta2 0.999, bias-corrected); batches without a reward
                        gradient (every group all right or all wrong) are left out

`python -m sgopd_lite.study.balance` prints the table and writes results/runs/mix/balance.json
(about a minute per world on one core, the teacher probe's table included).

May import: config, train, mix, data.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

RESULT = Path("results/runs/mix/balance.json")
WORLD_CONFIGS = {"hold": "configs/worlds/hold.yaml", "a2s": "configs/worlds/a2s.yaml", "a2c": "configs/worlds/a2c.yaml"}
WORLD_NAMES = {"hold": "both hold", "a2s": "A2 shared error", "a2c": "A2 complementary error"}
# label -> overrides. Today's two mixed methods, then each balancing knob on the probe.
ARMS = {
    "teacher probe": ["method=teacher_probe"],
    "teacher probe, sign(a2)": ["method=teacher_probe", "gate.a2_scale=sign"],
    "teacher probe, route terms": ["method=teacher_probe", "mix.normalise=route"],
    "teacher probe, budget": ["method=teacher_probe", "mix.budget=share"],
    "teacher probe, route terms + budget": ["method=teacher_probe", "mix.normalise=route", "mix.budget=share"],
    "hybrid c = 1": ["method=hybrid", "hybrid_c=1"],
    "hybrid c = 4": ["method=hybrid", "hybrid_c=4"],
}
BETA2, EPS = 0.999, 1e-8


def measure_arm(cfg, batches: int) -> dict:
    """The route measurements of one configured arm (a TrainConfig) on its first `batches` batches."""
    from ..mix import adam_step_ratio, budget, norm
    from ..train import Trainer

    def ema(v, grads):                   # AdamW's running second moment, before bias correction
        return [(1 - BETA2) * g * g + (BETA2 * m if m is not None else 0.0) for g, m in zip(grads, v)]

    tr = Trainer(cfg, verbose=False)
    rows, v_mixed, v_alone = [], None, None
    for k in range(batches):
        routes, g_t, g_r = tr.measure_routes(k)
        n_t, n_r = norm(g_t), norm(g_r)
        total = norm([t + r for t, r in zip(g_t, g_r)])
        if cfg.mix.budget == "share":
            _, info = budget(g_t, g_r, tr.budget_share(routes), cfg.grad_clip)
            factor_t, factor_r, clip = info["teacher_scale"], info["reward_scale"], info["clip_factor"]
        else:
            clip = min(1.0, cfg.grad_clip / (total + 1e-6)) if cfg.grad_clip else 1.0
            factor_t = factor_r = clip
        sent_t, sent_r = [factor_t * g for g in g_t], [factor_r * g for g in g_r]
        alone = [min(1.0, cfg.grad_clip / (n_r + 1e-6)) * g if cfg.grad_clip else g for g in g_r]
        v_mixed = ema(v_mixed or [None] * len(g_t), [t + r for t, r in zip(sent_t, sent_r)])
        v_alone = ema(v_alone or [None] * len(g_r), alone)
        correct = 1 - BETA2 ** (k + 1)
        ratio = (adam_step_ratio(g_r, sent_r, [v / correct for v in v_mixed], alone, [v / correct for v in v_alone], EPS)
                 if n_r > 0 else float("nan"))
        after_t, after_r = norm(sent_t), norm(sent_r)
        rows.append({"teacher": n_t, "reward": n_r, "reward_share": n_r / (n_t + n_r) if n_t + n_r else 0.0,
                     "rollout_share": routes.rollout_share, "clip_factor": clip,
                     "after": after_r / (after_t + after_r) if after_t + after_r else 0.0,
                     "adam_ratio": ratio})
    out = {key: sum(r[key] for r in rows) / len(rows) for key in rows[0] if key != "adam_ratio"}
    ratios = [r["adam_ratio"] for r in rows if r["adam_ratio"] == r["adam_ratio"]]   # batches with a reward gradient
    out["adam_ratio"] = sum(ratios) / len(ratios) if ratios else float("nan")
    return out


def measure(worlds=tuple(WORLD_CONFIGS), arms=tuple(ARMS), batches: int = 8, verbose: bool = True) -> dict:
    """{world: {arm: measurements}}; the arms of a world share one probe table (one out_dir)."""
    from ..assets import project_dir
    from ..config import load_config

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in worlds:
            out[w] = {}
            for arm in arms:
                start = time.perf_counter()
                cfg = load_config(str(project_dir() / WORLD_CONFIGS[w]),
                                  [*ARMS[arm], "seed=0", f"out_dir={tmp}/{w}", "log_rollouts=0"])
                out[w][arm] = {**measure_arm(cfg, batches), "seconds": round(time.perf_counter() - start, 1)}
                if verbose:
                    print(f"{WORLD_NAMES[w]} / {arm}: {out[w][arm]}", flush=True)
    return {"batches": batches, "seed": 0, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "worlds": out}


def table(result: dict) -> str:
    """One Markdown table, a row per world and arm."""
    lines = ["| world | arm | teacher | reward | reward share | of rollouts | clip factor | after | AdamW ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w, arms in result["worlds"].items():
        for arm, m in arms.items():
            lines.append(f"| {WORLD_NAMES.get(w, w)} | {arm} | {m['teacher']:.3f} | {m['reward']:.3f} "
                         f"| {m['reward_share']:.3f} | {m['rollout_share']:.3f} | {m['clip_factor']:.2f} "
                         f"| {m['after']:.3f} | {m['adam_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgopd_lite.study.balance", description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", nargs="+", default=list(WORLD_CONFIGS), choices=list(WORLD_CONFIGS))
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM")
    ap.add_argument("--batches", type=int, default=8, help="batches of 16 x 8 per arm (default 8)")
    ap.add_argument("--out", default=str(RESULT), help="where the JSON goes ('' = nowhere)")
    args = ap.parse_args(argv)
    result = measure(args.worlds, args.arms, args.batches)
    print(table(result))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
