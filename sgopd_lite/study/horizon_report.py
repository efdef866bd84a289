"""docs/results.md, section "The same at 1000 steps": the horizon check of the verifier-roles
study (configs/studies/horizon.yaml, results in results/runs/horizon/): OPD, GRPO and the
teacher probe trained five times longer on A2 complementary error and on both hold, evaluated
per skill every 200 steps, and the kinds of mistake the students make on `none` problems
(study/error_kinds.py, results/runs/horizon/error_kinds.json).

Two seeds: every number is shown per seed, and the section says where both seeds agree; it
calls no difference significant.

May import: data, study.error_kinds (its KINDS). Imported by study/worlds_report.py, which loads
the runs and passes them in.
"""

from __future__ import annotations

from ..data import SKILLS
from .error_kinds import KINDS

NAME = "horizon"
WORLDS = {"a2c": "A2 complementary error", "hold": "both hold"}
METHODS = {"opd": "OPD", "grpo": "GRPO", "teacher_probe": "teacher probe"}
STEPS = (200, 400, 600, 800, 1000)
# the row of each world's table: label -> eval key (n = 8); forgotten borrows where the teacher forgets them
MEASURES = {"avg@8": "eval_avg@8", **{s: f"eval_avg@8_{s}" for s in SKILLS}}
WORLD_MEASURES = {"a2c": {"forgot borrow": "eval_slip_borrow"}, "hold": {}}
# the pairs whose order at 200 steps is checked at 1000, and on which measures
PAIRS = (("teacher_probe", "opd"), ("teacher_probe", "grpo"), ("grpo", "opd"))
PAIR_MEASURES = {"a2c": ("avg@8", "borrow"), "hold": ("avg@8", "none")}
TIE = 0.005             # a difference under half a point (1 of 256 x 8 samples is 0.05) orders nothing


def evals(summary: dict) -> dict[int, dict]:
    """step -> that evaluation's eval_* metrics (the summary's `evals`)."""
    return {int(step): metrics for step, metrics in summary.get("evals", [])}


def value(summary: dict, step: int, key: str) -> float:
    return evals(summary).get(step, {}).get(key, float("nan"))


def _seeds_cell(values: list[float]) -> str:
    """'41.3 (39.0 / 43.6)': the mean over seeds, then each seed, in points."""
    vals = [v for v in values if v == v]
    if not vals:
        return "-"
    mean = sum(vals) / len(vals)
    return f"{100 * mean:.1f} (" + " / ".join(f"{100 * v:.1f}" if v == v else "-" for v in values) + ")"


def consistency(horizon, worlds_main, roles) -> tuple[int, int]:
    """(equal, compared): horizon runs whose step-200 avg@8 equals the 200-step run of the same
    world, method and seed (worlds_main for OPD and GRPO, verifier_roles for the teacher probe).
    The learning rate is constant after warm-up, so the first 200 steps are the same run."""
    equal = compared = 0
    for (world, method), seeds in horizon.cells.items():
        source = roles if method in ("teacher_probe",) else worlds_main
        for seed, summary in seeds.items():
            other = source.seeds(world, method).get(seed)
            if other is not None and 200 in evals(summary):
                compared += 1
                equal += abs(value(summary, 200, "eval_avg@8") - other["avg"]) < 1e-9
    return equal, compared


def horizon_section(horizon, worlds_main, roles, start: dict, kinds: dict) -> list[str]:
    """The section's lines (horizon, worlds_main, roles: worlds_report.Runs; start: the
    verifier-roles study's start points; kinds: error_kinds.json)."""
    done = sum(len(v) for v in horizon.cells.values())
    lines = ["## The same at 1000 steps (horizon check)", ""]
    if horizon.missing:
        lines += [f"**Still running: {done} of {horizon.planned} runs are in.** Nothing below is final.", ""]
    equal, compared = consistency(horizon, worlds_main, roles)
    lines += ["The study above reads 200 steps, and OPD is a slow learner. OPD, GRPO and the best new arm (the "
              "teacher probe, chosen on the study's own seeds) trained for 1000 steps on two of its worlds, seeds 0 "
              "and 1, with the same held-out evaluation every 200 steps (configs/studies/horizon.yaml). Each cell: "
              "the mean of the two seeds, then seed 0 / seed 1, in points. Two seeds give no verdict: the section "
              "says only where both seeds agree.", "",
              f"* The first 200 steps are the 200-step runs: the step-200 evaluation equals the study's final one in "
              f"{equal} of {compared} runs (the learning rate is constant after warm-up, and the runs are seeded).", ""]
    for world, wname in WORLDS.items():
        if not any(horizon.seeds(world, m) for m in METHODS):
            continue
        s0 = start.get(world, {}).get("student", {})
        lines += [f"### {wname}, 1000 steps", "",
                  "| method | measure | start | " + " | ".join(str(s) for s in STEPS) + " |",
                  "|---|---|---|" + "---|" * len(STEPS)]
        measures = {**MEASURES, **WORLD_MEASURES[world]}
        for method, label in METHODS.items():
            runs = horizon.seeds(world, method)
            if not runs:
                continue
            for name, key in measures.items():
                begin = _start_value(s0, name)
                cells = [_seeds_cell([value(runs[s], step, key) for s in sorted(runs)]) for step in STEPS]
                lines.append(f"| {label} | {name} | {begin} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += order_lines(horizon, world)
    if kinds:
        lines += none_lines(horizon, kinds)
    return lines


def _start_value(student: dict, name: str) -> str:
    if not student:
        return "-"
    if name == "avg@8":
        return f"{100 * student['avg']:.1f}"
    if name == "forgot borrow":
        v = student.get("slip", {}).get("borrow")
        return f"{100 * v:.1f}" if v is not None else "-"
    return f"{100 * student['per_skill'][name]:.1f}"


def _said_order(d200: list[float], d1000: list[float]) -> str:
    """Whether the sign of a per-seed difference at 200 steps is the sign at 1000, in every seed."""
    if not d200 or any(d != d for d in d200 + d1000):
        return "no data"
    if any(abs(d) < TIE for d in d200 + d1000):
        return f"within {100 * TIE:.1f} points in some seed: no order"
    same200 = all(d > 0 for d in d200) or all(d < 0 for d in d200)
    every = {1: "in the one seed so far", 2: "in both seeds"}.get(len(d200), f"in all {len(d200)} seeds")
    if not same200:
        return "the seeds disagree at 200 steps"
    if all((a > 0) == (b > 0) and b != 0 for a, b in zip(d200, d1000)):
        return f"holds at 1000 {every}"
    if all((a > 0) != (b > 0) and b != 0 for a, b in zip(d200, d1000)):
        return f"reverses at 1000 {every}"
    return "holds at 1000 in some seeds, not in others"


def order_lines(horizon, world: str) -> list[str]:
    """For each pair of methods and each of the world's PAIR_MEASURES: the per-seed difference
    at 200 and at 1000 steps, and whether its sign held."""
    lines = []
    for a, b in PAIRS:
        ra, rb = horizon.seeds(world, a), horizon.seeds(world, b)
        seeds = sorted(set(ra) & set(rb))
        if not seeds:
            continue
        parts = []
        for name in PAIR_MEASURES[world]:
            key = MEASURES[name]
            d = {step: [value(ra[s], step, key) - value(rb[s], step, key) for s in seeds] for step in (200, 1000)}
            parts.append(f"{name} {' / '.join(f'{100 * x:+.1f}' for x in d[200])} at 200, "
                         f"{' / '.join(f'{100 * x:+.1f}' for x in d[1000])} at 1000: {_said_order(d[200], d[1000])}")
        lines.append(f"* {METHODS[a]} minus {METHODS[b]} (seed {' / '.join(str(s) for s in seeds)}): " + "; ".join(parts) + ".")
    return lines + [""] if lines else []


def none_lines(horizon, kinds: dict) -> list[str]:
    """Why `none` falls on both hold: accuracy sampled and greedy, and the kinds of wrong line on
    `none` problems, for the starting student and the final students measured."""
    students = {k: v for k, v in kinds.get("students", {}).items() if k.startswith("hold") and "none" in v}
    if not students:
        return []
    kinds_shown = list(KINDS)      # a line after a wrong one may need a carry or borrow even on `none`
    lines = ["### Why `none` falls under a teacher that is right on it", "",
             f"Each line of {kinds['n']} sampled solutions (temperature 1) of every `none` problem of eval_skills, sorted "
             "by what went wrong in it (`python -m sgopd_lite.study.error_kinds`; a phantom carry is an addition "
             "that needs no carry written 10 too large, a phantom borrow the same for a subtraction), beside the "
             "greedy solution's accuracy. Shares of the lines, in %.", "",
             "| student | none avg@8 | none greedy | " + " | ".join(kinds_shown) + " |",
             "|---|---|---|" + "---|" * len(kinds_shown)]
    for name, prof in students.items():
        v = prof["none"]
        lines.append(f"| {name} | {100 * v['avg']:.1f} | {100 * v['greedy']:.1f} | "
                     + " | ".join(f"{100 * v[k]:.1f}" for k in kinds_shown) + " |")
    lines.append("")
    first = students.get("hold start", {}).get("none")
    finals = {k: v["none"] for k, v in students.items() if k != "hold start"}
    grpo = [v for k, v in finals.items() if "-grpo-" in k]
    if first and finals:
        fell = [k for k, v in finals.items() if v["avg"] < first["avg"]]
        lines.append(f"* `none` ends below its start ({100 * first['avg']:.1f}) in {len(fell)} of {len(finals)} final "
                     "students measured" + (", GRPO's among them: GRPO never reads the teacher, so the fall does not "
                                            "need the teacher" if any("-grpo-" in k for k in fell) and grpo else "") + ".")
        greedy_fell = [k for k, v in finals.items() if v["greedy"] < first["greedy"]]
        if greedy_fell:
            lines.append(f"* Greedy accuracy on `none` falls too in {len(greedy_fell)} of {len(finals)} "
                         f"(start {100 * first['greedy']:.1f}): not only sampling noise at temperature 1.")
        grew = {k: sum(v[k] for v in finals.values()) / len(finals) - first[k] for k in kinds_shown if k != "right"}
        top = max(grew, key=grew.get)
        if grew[top] > 0:
            lines.append(f"* The wrong lines that grow most, on average over those students, are *{top}* "
                         f"({100 * first[top]:.1f}% of lines at the start, {100 * (first[top] + grew[top]):.1f}% after); "
                         + ", ".join(f"{k} {100 * first[k]:.1f}% -> {100 * (first[k] + grew[k]):.1f}%"
                                     for k in grew if k != top) + ".")
    return lines + [""]
