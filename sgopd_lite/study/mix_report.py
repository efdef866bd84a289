"""docs/results.md, section "Never worse than the better of OPD and GRPO?": the mix study
(configs/studies/mix.yaml, results in results/runs/mix/), its pilot (configs/studies/mix_pilot.yaml)
and the route measurements on the starting students (study/balance.py, results/runs/mix/balance.json).

The question, per world x horizon (200 and 1000 steps) x measure (avg@8 and each skill): is an
arm at or above the better of OPD and GRPO? Read as non-inferiority to both, within the margin
the study file states (MARGIN points), one-sided: for each reference, H0 "arm - reference <=
-MARGIN" against "> -MARGIN", the paired t-test over seeds, Holm-corrected over the family of one
world x horizon (every arm x measure x reference). A cell holds where every test of it rejects H0;
it breaks where, for some measure and reference, the arm is clearly below the reference by more
than the margin (the two-sided test of "arm - reference = -MARGIN", corrected the same way, says
lower); anything else is "not shown" (the seeds cannot tell). While runs are missing, the section
shows how many are in and calls nothing.

May import: study.stats, data. Imported by
study/worlds_report.py, which loads the runs and passes them in.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import SKILLS
from .stats import ALPHA, holm, points as _points, t_two_sided_p

NAME, PILOT = "mix", "mix_pilot"
WORLDS = {"hold": "both hold", "a2s": "A2 shared error", "a2c": "A2 complementary error"}
REFERENCES = {"opd": "OPD", "grpo": "GRPO"}
ARMS = {"teacher_probe": "teacher probe (today)", "probe_balanced": "teacher probe, balanced",
        "probe_reward": "teacher probe + reward on trusted prompts", "hybrid_parity": "hybrid at gradient parity",
        "staged": "staged: OPD, then GRPO"}
PILOT_CANDIDATES = ("probe_sign", "probe_route", "probe_budget", "probe_route_budget")   # the file's order
HORIZONS = (200, 1000)
MEASURES = {"avg@8": "eval_avg@8", **{s: f"eval_avg@8_{s}" for s in SKILLS}}
MARGIN = 0.05           # the non-inferiority margin, as configs/studies/mix.yaml states it (5 points)


def at(summary: dict, step: int, key: str) -> float:
    """An evaluation of a run at `step` (its summary's `evals`), NaN where it has none."""
    for s, metrics in summary.get("evals", []):
        if int(s) == step:
            return metrics.get(key, float("nan"))
    return float("nan")


def one_sided_p(diffs, margin: float) -> float:
    """p of the paired t-test of H0 "mean <= -margin" against "mean > -margin" (df = n - 1);
    NaN without a spread to test."""
    v = np.asarray(diffs, dtype=float) + margin
    if len(v) < 2 or float(v.std(ddof=1)) == 0.0:
        return float("nan")
    t = float(v.mean()) / (float(v.std(ddof=1)) / math.sqrt(len(v)))
    two = t_two_sided_p(t, len(v) - 1)
    return two / 2 if t > 0 else 1 - two / 2


def cell_family(runs, world: str, step: int, arms=tuple(ARMS), margin: float = MARGIN) -> dict:
    """{(arm, measure, ref): (diffs, p_noninferior, p_worse)} of one world x horizon, both
    p-values Holm-corrected over the family (p_worse: one-sided, H0 "mean >= -margin")."""
    diffs = {}
    for arm in arms:
        for measure, key in MEASURES.items():
            for ref in REFERENCES:
                a, b = runs.seeds(world, arm), runs.seeds(world, ref)
                d = [at(a[s], step, key) - at(b[s], step, key) for s in sorted(a) if s in b]
                diffs[(arm, measure, ref)] = [x for x in d if x == x]
    keys = list(diffs)
    p_ok = holm([one_sided_p(diffs[k], margin) for k in keys])
    p_bad = holm([one_sided_p([-x for x in diffs[k]], -margin) for k in keys])
    return {k: (diffs[k], p_ok[i], p_bad[i]) for i, k in enumerate(keys)}


def verdict(family: dict, arm: str) -> tuple[str, list[str]]:
    """("holds" / "breaks" / "not shown", the measures x references that break or stay unshown)."""
    cells = {(m, r): v for (a, m, r), v in family.items() if a == arm}
    broken = [f"{m} vs {REFERENCES[r]}" for (m, r), (_, _, p_bad) in cells.items() if p_bad == p_bad and p_bad < ALPHA]
    if broken:
        return "breaks", broken
    open_ = [f"{m} vs {REFERENCES[r]}" for (m, r), (_, p_ok, _) in cells.items() if not (p_ok == p_ok and p_ok < ALPHA)]
    return ("holds", []) if not open_ else ("not shown", open_)


def balance_table(balance: dict) -> list[str]:
    """The route measurements on the starting students (study/balance.py's JSON)."""
    if not balance:
        return []
    lines = [f"Route gradients on the starting students ({balance['batches']} batches of 16 x 8 of seed "
             f"{balance['seed']}, no optimizer step; `python -m sgopd_lite.study.balance`): each route's gradient "
             "norm before any clip, the reward route's share of the two norms and of the rollouts, the clip's "
             "factor, the reward's share of what the optimizer receives, and how far AdamW's step moves the "
             "reward route's own objective compared with a run where the reward alone made the gradient.", "",
             "| world | arm | ‖g teacher‖ | ‖g reward‖ | reward share | of rollouts | clip factor | share sent | AdamW ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for w, arms in balance["worlds"].items():
        for arm, m in arms.items():
            ratio = "-" if m["adam_ratio"] != m["adam_ratio"] else f"{m['adam_ratio']:.2f}"
            lines.append(f"| {WORLDS.get(w, w)} | {arm} | {m['teacher']:.3f} | {m['reward']:.3f} | {m['reward_share']:.3f} "
                         f"| {m['rollout_share']:.3f} | {m['clip_factor']:.2f} | {m['after']:.3f} | {ratio} |")
    return lines + [""]


def pilot_choice(pilot) -> tuple[str | None, dict]:
    """The mix_pilot file's rule: each candidate's score is its smallest margin over the worlds
    (its final avg@8 minus the larger of OPD's and GRPO's, seed 100); the highest score wins, and
    within 1 point the one listed first. (None, {}) while a run is missing."""
    if pilot is None or pilot.missing or not pilot.planned:
        return None, {}
    scores = {}
    for cand in PILOT_CANDIDATES:
        margins = []
        for w in WORLDS:
            mine = list(pilot.seeds(w, cand).values())[0]["avg"]
            best = max(list(pilot.seeds(w, ref).values())[0]["avg"] for ref in REFERENCES)
            margins.append(mine - best)
        scores[cand] = min(margins)
    top = max(scores.values())
    return next(c for c in PILOT_CANDIDATES if scores[c] >= top - 0.01), scores


def pilot_table(pilot) -> list[str]:
    if pilot is None or not pilot.planned:
        return []
    done = sum(len(v) for v in pilot.cells.values())
    arms = ("opd", "grpo", "teacher_probe", *PILOT_CANDIDATES)
    lines = [f"**The pilot** (configs/studies/mix_pilot.yaml: seed 100, one seed, 200 steps; {done} of "
             f"{pilot.planned} runs): final avg@8 in points per world, then the candidate's smallest margin "
             "over the worlds against the better of OPD and GRPO, the score its rule reads.", "",
             "| arm | " + " | ".join(WORLDS.values()) + " | score |", "|---|" + "---|" * (len(WORLDS) + 1)]
    choice, scores = pilot_choice(pilot)
    for arm in arms:
        cells = []
        for w in WORLDS:
            s = list(pilot.seeds(w, arm).values())
            cells.append(f"{100 * s[0]['avg']:.1f}" if s else "-")
        score = f"{100 * scores[arm]:+.1f}" if arm in scores else ""
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {score} |")
    if choice:
        lines += ["", f"By the rule written before the pilot ran, the study's balanced probe is **{choice}**. "
                  "One seed: a choice, not evidence."]
    return lines + [""]


def mix_section(runs, pilot=None, balance: dict | None = None) -> list[str]:
    """The section's lines (runs, pilot: worlds_report.Runs of the study and its pilot)."""
    lines = ["## Never worse than the better of OPD and GRPO?", "",
             "A method that mixes the teacher's push with the reward shares one loss, one clip and one AdamW "
             "between the two (docs/method.md §14). This study measures each signal's share of the gradient, "
             "balances it three ways, and asks, per world, horizon and skill, whether an arm is at or above "
             f"the better of OPD and GRPO within {100 * MARGIN:.0f} points (one-sided paired tests against "
             "both, Holm-corrected over each world x horizon).", ""]
    lines += balance_table(balance or {})
    lines += pilot_table(pilot)
    return lines + study_tables(runs)


def study_tables(runs) -> list[str]:
    """The study's tables (the arms at 200 and 1000 steps, with the seeds in so far) and, once every
    run is in, the never-worse table; [] before the study has a plan (notebook 03 shows these too)."""
    lines = []
    if runs is None or not runs.planned:
        return lines
    done = sum(len(v) for v in runs.cells.values())
    if runs.missing:
        lines += [f"**Still running: {done} of {runs.planned} runs are in** (configs/studies/mix.yaml)"
                  + (". The tables below show the seeds present" if done else "") + "; no verdict is drawn until "
                  "every run is in.", ""]
    for step in HORIZONS if done else ():
        lines += [f"**After {step} steps** (avg@8 in points; mean ± 95% interval where more than one seed is in)", "",
                  "| world | arm | seeds | " + " | ".join(MEASURES) + " | avg@8 on eval_unseen |",
                  "|---|---|---|" + "---|" * (len(MEASURES) + 1)]
        for w, wname in WORLDS.items():
            for arm, label in {**REFERENCES, **ARMS}.items():
                seeds = runs.seeds(w, arm)
                if not seeds:
                    continue
                vals = [_points([at(s, step, key) for s in seeds.values()])
                        for key in (*MEASURES.values(), "eval_unseen_avg@8")]
                lines.append(f"| {wname} | {label} | {len(seeds)} | " + " | ".join(vals) + " |")
        lines.append("")
    if runs.missing:
        return lines
    lines += ["**Never worse?** Each cell: holds (non-inferior to OPD and to GRPO on every measure), breaks "
              "(clearly worse than one of them by more than the margin somewhere: which is named) or not shown.", "",
              "| arm | " + " | ".join(f"{wn}, {h}" for wn in WORLDS.values() for h in HORIZONS) + " |",
              "|---|" + "---|" * (len(WORLDS) * len(HORIZONS))]
    families = {(w, h): cell_family(runs, w, h) for w in WORLDS for h in HORIZONS}
    for arm, label in ARMS.items():
        cells = []
        for w in WORLDS:
            for h in HORIZONS:
                v, why = verdict(families[(w, h)], arm)
                cells.append(v + (f" ({'; '.join(why[:2])}{'; ...' if len(why) > 2 else ''})" if v == "breaks" else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    holds = [ARMS[a] for a in ARMS if all(verdict(families[k], a)[0] == "holds" for k in families)]
    lines += ["", "* Never worse in every world and horizon: " + (", ".join(holds) if holds else "**no arm**") + "."]
    return lines + [""]
