"""Did the worlds' starting models see their evaluation problems? Accuracy on problems they saw
while they were built, and on problems they never saw.

The committed tiny models were trained by SFT on freshly drawn questions that skipped only the
`eval` split. The skill-balanced split the studies score (`eval_skills`) came later, so most of
its questions were in their SFT data (`worlds.tiny.sft_seen` replays each build's draws). The
split `eval_unseen` holds questions none of them saw, none a training prompt. This module scores
the starting teacher and student of each of the four worlds, skill by skill, on:

    eval_skills   the split every study since the worlds study reports
    seen          the part of eval_skills that this model saw in its SFT data
    unseen part   the rest of eval_skills (few problems: every two-operand question was seen)
    3 operands    eval_skills' three-operand problems: the like-for-like control, since every
                  problem of eval_unseen has three operands
    eval_unseen   problems no committed model saw

Each cell is avg@8 in points with a 95% interval over problems (Student t). The difference
eval_unseen minus eval_skills (and minus its three-operand part) has the interval of a
difference of two independent means (different problems). `python -m sgopd_lite.study.unseen`
writes results/runs/unseen/start.json (about a minute on one core), which docs/results.md reports.

May import: data, evaluate, worlds, study.stats.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..data import SKILLS, arithmetic_split, check_steps, parse_expression, skill_of
from .stats import mean_ci

RESULT = Path("results/runs/unseen/start.json")
WORLDS = ("both hold", "A1 graded", "A2 shared", "A2 complementary")   # the four worlds of the studies
PARTS = ("eval_skills", "seen", "unseen part", "3 operands", "eval_unseen")
N = 8          # samples per problem
SEED = 0       # torch seed set before each model's evaluation of each split


def cell(values) -> dict:
    """{"mean", "half", "problems"} of per-problem accuracies (a share, not points)."""
    if not len(values):
        return {"mean": math.nan, "half": math.nan, "problems": 0}
    m, h = mean_ci(values)
    return {"mean": m, "half": h if len(values) > 1 else math.nan, "problems": len(values)}


def difference(a: dict, b: dict) -> dict:
    """a minus b, with the 95% half-width of a difference of two independent means (normal)."""
    half = math.sqrt(a["half"] ** 2 + b["half"] ** 2) if a["problems"] > 1 and b["problems"] > 1 else math.nan
    return {"mean": a["mean"] - b["mean"], "half": half}


def model_table(acc_skills: list[float], acc_unseen: list[float], seen: frozenset) -> dict:
    """{skill: {part: cell, "unseen minus eval_skills": diff, "unseen minus 3 operands": diff}}
    from one model's per-problem accuracies on eval_skills and eval_unseen (split order)."""
    skills_split, unseen_split = arithmetic_split("eval_skills"), arithmetic_split("eval_unseen")
    out = {}
    for s in SKILLS:
        rows = [(p, a) for p, a in zip(skills_split, acc_skills) if skill_of(p.question) == s]
        parts = {"eval_skills": cell([a for _, a in rows]),
                 "seen": cell([a for p, a in rows if p.question in seen]),
                 "unseen part": cell([a for p, a in rows if p.question not in seen]),
                 "3 operands": cell([a for p, a in rows if len(parse_expression(p.question)[0]) == 3]),
                 "eval_unseen": cell([a for p, a in zip(unseen_split, acc_unseen) if skill_of(p.question) == s])}
        parts["unseen minus eval_skills"] = difference(parts["eval_unseen"], parts["eval_skills"])
        parts["unseen minus 3 operands"] = difference(parts["eval_unseen"], parts["3 operands"])
        out[s] = parts
    return out


def measure(verbose: bool = True) -> dict:
    """Score the starting models of the four worlds (each model once, shared between worlds)."""
    from ..evaluate import evaluate
    from ..worlds.tiny import SETTINGS, TinyWorldConfig, load_tiny_pair, role_key, sft_seen

    models, worlds = {}, {}
    for name in WORLDS:
        cfg = TinyWorldConfig(**SETTINGS[name])
        tok, teacher, student = load_tiny_pair(cfg=cfg, build=False, verbose=False)
        worlds[name] = {}
        for role, model in (("teacher", teacher), ("student", student)):
            key = role_key(cfg, role)
            worlds[name][role] = key
            if key in models:
                continue
            acc = {}
            for split in ("eval_skills", "eval_unseen"):
                torch.manual_seed(SEED)
                res = evaluate(model, tok, arithmetic_split(split), n=N, max_new_tokens=40,
                               instruction=cfg.instruction, step_checker=check_steps)
                acc[split] = [c / N for c in res.per_problem_correct]
            seen = sft_seen(cfg, role)
            overlap = {p.question for p in arithmetic_split("eval_skills")} & seen
            models[key] = {"role": role, "seen_in_eval_skills": len(overlap),
                           "skills": model_table(acc["eval_skills"], acc["eval_unseen"], seen)}
            if verbose:
                print(f"{key}: {len(overlap)} of 256 eval_skills questions seen in SFT", flush=True)
    counts = {s: sum(skill_of(p.question) == s for p in arithmetic_split("eval_unseen")) for s in SKILLS}
    return {"n": N, "seed": SEED, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "eval_unseen_problems": counts, "worlds": worlds, "models": models}


def flagged(models: dict, key: str) -> list[str]:
    """The skills where a model's eval_unseen accuracy differs from its eval_skills accuracy by
    more than the difference's 95% interval."""
    return [s for s, parts in models[key]["skills"].items()
            if abs(parts["unseen minus eval_skills"]["mean"]) > parts["unseen minus eval_skills"]["half"]]


def table(result: dict) -> str:
    """A Markdown table: a row per world, model and skill; avg@8 in points ± 95% interval."""
    def pts(c):
        if c["problems"] == 0:
            return "-"
        half = "" if math.isnan(c["half"]) else f" ± {100 * c['half']:.1f}"
        return f"{100 * c['mean']:.1f}{half} ({c['problems']})"

    lines = ["| world | model | skill | eval_skills | seen | 3 operands | eval_unseen | unseen minus eval_skills |",
             "|---|---|---|---|---|---|---|---|"]
    for world, roles in result["worlds"].items():
        for role, key in roles.items():
            for s, parts in result["models"][key]["skills"].items():
                d = parts["unseen minus eval_skills"]
                lines.append(f"| {world} | {role} | {s} | {pts(parts['eval_skills'])} | {pts(parts['seen'])} "
                             f"| {pts(parts['3 operands'])} | {pts(parts['eval_unseen'])} "
                             f"| {100 * d['mean']:+.1f} ± {100 * d['half']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgopd_lite.study.unseen", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(RESULT), help="where the JSON goes")
    args = ap.parse_args(argv)
    result = measure()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
