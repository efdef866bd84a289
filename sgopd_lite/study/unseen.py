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


# The skills each A2 world plants on purpose (worlds/tiny.py SETTINGS): whose, and which.
PLANTED = {"A2 shared": (("teacher", "carry"), ("student", "carry")),
           "A2 complementary": (("teacher", "borrow"), ("student", "borrow"), ("student", "carry"))}


def report_section(result: dict) -> list[str]:
    """docs/results.md's section on seen and unseen problems, from `measure`'s result; [] without it."""
    if not result:
        return []
    models, worlds = result["models"], result["worlds"]
    where: dict[str, list[str]] = {}
    for world, roles in worlds.items():
        for role, key in roles.items():
            where.setdefault(key, []).append(world)
    seen = {role: next(m["seen_in_eval_skills"] for m in models.values() if m["role"] == role)
            for role in ("teacher", "student")}

    def pts(c):
        half = "" if c["problems"] < 2 else f" ± {100 * c['half']:.1f}"
        return f"{100 * c['mean']:.1f}{half} ({c['problems']})" if c["problems"] else "-"

    lines = ["## Seen and unseen problems (the starting models)", "",
             "The committed models were built by supervised fine-tuning on freshly drawn problems that skipped "
             "only the natural-mix split `eval`. The skill-balanced split every run here reports, `eval_skills`, "
             "is held out from the RL training prompts, not from that SFT data: replaying each build's draws "
             f"(`worlds.tiny.sft_seen`), {seen['teacher']} of its 256 problems were in every teacher's SFT data "
             f"and {seen['student']} in every student's. `eval_unseen` holds "
             f"{min(result['eval_unseen_problems'].values())} problems of each skill that no committed model saw "
             "and that no other split holds; every two-operand question was drawn during the builds, so all of "
             "them have three operands, and the column '3 operands' is the like-for-like part of `eval_skills`. "
             "Models built from now on skip every evaluation split, and every run also scores `eval_unseen` "
             "(`world.eval_unseen`); the committed study runs predate it.", "",
             f"avg@{result['n']} in points ± the 95% interval over problems (problems in brackets), seed "
             f"{result['seed']}; the last column is eval_unseen minus eval_skills with the interval of a "
             "difference of two independent means, uncorrected.", "",
             "| model | world(s) | skill | eval_skills | seen | 3 operands | eval_unseen | unseen minus eval_skills |",
             "|---|---|---|---|---|---|---|---|"]
    cells = 0
    for key, m in models.items():
        for s, parts in m["skills"].items():
            d = parts["unseen minus eval_skills"]
            cells += 1
            lines.append(f"| {m['role']} `{key}` | {', '.join(where[key])} | {s} | {pts(parts['eval_skills'])} "
                         f"| {pts(parts['seen'])} | {pts(parts['3 operands'])} | {pts(parts['eval_unseen'])} "
                         f"| {100 * d['mean']:+.1f} ± {100 * d['half']:.1f} |")
    off = [(key, s) for key in models for s in flagged(models, key)]
    planted = {(worlds[w][role], s): (w, role) for w, pairs in PLANTED.items() if w in worlds for role, s in pairs}
    lines.append("")
    if off:
        said = "; ".join(f"{models[k]['role']} of {', '.join(where[k])} on {s}, "
                         f"{100 * models[k]['skills'][s]['eval_skills']['mean']:.1f} on eval_skills and "
                         f"{100 * models[k]['skills'][s]['eval_unseen']['mean']:.1f} on eval_unseen" for k, s in off)
        lines.append(f"* Outside its interval: {len(off)} of {cells} model-skill cells ({said}). With {cells} "
                     f"uncorrected 95% intervals, about {0.05 * cells:.1f} fall outside by chance alone.")
    else:
        lines.append(f"* Outside its interval: none of the {cells} model-skill cells.")
    hit = [planted[c] + (c[1],) for c in off if c in planted]
    planted_said = "; ".join(
        f"{w}'s {role} on {s}: {100 * models[worlds[w][role]]['skills'][s]['eval_skills']['mean']:.1f} on "
        f"eval_skills, {100 * models[worlds[w][role]]['skills'][s]['eval_unseen']['mean']:.1f} on eval_unseen"
        for w, pairs in PLANTED.items() if w in worlds for role, s in pairs)
    if hit:
        lines.append(f"* A planted skill differs on problems the models never saw ({', '.join(' '.join(h) for h in hit)}): "
                     f"the studies' numbers on that skill partly measure recall of SFT problems. {planted_said}.")
    else:
        lines.append(f"* The planted skills read the same on problems no model saw, within their intervals ({planted_said}): "
                     "at the start, the worlds are what they were built to be on problems no model saw too. "
                     + ("The cells outside their interval are on skills no world plants. " if off else "")
                     + "This measures the starting models only: the committed runs' trained students were scored "
                     "on eval_skills alone, and whether their differences hold on unseen problems is for runs "
                     "that score both splits.")
    return lines + [""]


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
