"""Is the planted smol world what it must be before any method runs? The teacher and the student
of a smol world config, per skill, on the skill-balanced evaluation problems.

    python -m sgopd_lite.study.smol_start --config configs/smol_a2c.yaml

builds the world's pair where it is not cached (worlds/smol.py: about six minutes per model on
one CPU thread, plus its build-time evaluation), samples `--n` answers per problem of the
config's evaluation split at temperature 1, and writes each model's avg@n per skill with a 95%
interval over problems, and the share of the sampled carry / borrow steps whose result is the
forgotten one (error adoption, `data.check_steps`), to results/runs/smol_a2c/start.json.

For A2 complementary error the world must show, before any method runs: the teacher clearly
wrong on the borrow (and right on the carry), the student clearly right on the borrow and wrong
on the carry. If it does not, the recipe changes, not the target.

May import: config, data, evaluate, worlds, study.stats.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..data import SKILLS, check_steps, skill_of
from .stats import mean_ci

RESULT = Path("results/runs/smol_a2c/start.json")


def per_skill(problems, correct: list[int], n: int) -> dict:
    """{skill: {"avg", "half", "problems"}}: avg@n with the 95% interval over problems."""
    out = {}
    for s in SKILLS:
        acc = [c / n for p, c in zip(problems, correct) if skill_of(p.question) == s]
        if acc:
            m, h = mean_ci(acc)
            out[s] = {"avg": m, "half": h, "problems": len(acc)}
    return out


def measure(config: str, n: int = 4, limit: int | None = None, seed: int = 0) -> dict:
    from ..config import load_config
    from ..evaluate import evaluate
    from ..worlds import load_world

    cfg = load_config(config)
    start = time.perf_counter()
    world = load_world(cfg)
    built = time.perf_counter() - start
    problems = world.eval_problems[:limit]
    rows = {}
    for role, model in (("teacher", world.teacher), ("student", world.student)):
        torch.manual_seed(seed)
        res = evaluate(model, world.tokenizer, problems, n=n, max_new_tokens=cfg.max_new_tokens,
                       instruction=world.instruction, vocab_size=world.vocab_size, step_checker=check_steps)
        rows[role] = {"avg": res.avg_at_n, "per_skill": per_skill(problems, res.per_problem_correct, n),
                      "slip": {k: res.slip_rate(k) for k in ("carry", "borrow")}, "seconds": round(res.seconds, 1)}
    return {"config": config, "n": n, "problems": len(problems), "seed": seed, "build_or_load_seconds": round(built, 1),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "world": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgopd_lite.study.smol_start", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/smol_a2c.yaml")
    ap.add_argument("--n", type=int, default=4, help="samples per problem (default 4)")
    ap.add_argument("--limit", type=int, default=None, help="the first N evaluation problems only")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args(argv)
    result = measure(args.config, args.n, args.limit)
    for role, row in result["world"].items():
        cells = ", ".join(f"{s} {100 * v['avg']:.1f} ± {100 * v['half']:.1f}" for s, v in row["per_skill"].items())
        print(f"{role}: avg@{args.n} {100 * row['avg']:.1f}; {cells}; forgotten carry "
              f"{row['slip']['carry']:.3f}, borrow {row['slip']['borrow']:.3f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
