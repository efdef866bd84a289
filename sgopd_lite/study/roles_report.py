"""docs/results.md, section "Where must the verifier act?": the verifier-roles study
(configs/studies/verifier_roles.yaml, results in results/runs/verifier_roles/) beside the
worlds study's OPD, OPDVR's gate, SG-OPD's gate and GRPO on the same worlds and seeds.

Per world: accuracy overall and per skill with error adoption (the share of sampled steps that
forget a borrow / a carry), paired differences to OPD and to GRPO with Holm-corrected verdicts,
and the per-token evidence by push direction; then a paragraph written from those numbers. While
the study is still running the section says how many of its runs it holds, and calls nothing.

May import: study.stats, study.horizon_report (inside a function), data, config. Imported by study/worlds_report.py, which loads the runs
(`worlds_report.Runs`) and passes them in.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..data import SKILLS
from ..config import ProbeConfig
from .stats import ALPHA, _cell, corrected_verdict, holm_p, said_corrected

NAME = "verifier_roles"
PREFIX_STUDY = "step_prefix"          # configs/studies/step_prefix.yaml: why the step gates lost the borrow
WORLDS = {"a2c": "A2 complementary error", "a2s": "A2 shared error", "hold": "both hold"}
BASELINES = {"opd": ("OPD", "nowhere"), "opdvr": ("OPDVR's gate", "rollout verdict, gate"),
             "gate_only": ("SG-OPD's gate", "rollout verdict, gate"), "grpo": ("GRPO", "reward only")}
ARMS = {"teacher_probe": ("teacher probe", "on the teacher; GRPO where it fails"),
        "teacher_probe_drop": ("teacher probe, drop", "on the teacher; nothing where it fails"),
        "step_gate": ("step gate", "each step's verdict, gate"),
        "first_error_gate": ("first-error gate", "first wrong step, gate"),
        "hybrid": ("hybrid c = 1", "reward beside the teacher"),
        "hybrid_c4": ("hybrid c = 4", "reward beside the teacher"),
        "oracle_gate": ("oracle gate (a bound)", "known correct tokens (tiny world only)")}
COLUMNS = ("avg", *SKILLS)
EFFECTS = ("zeroed", "shrunk", "unchanged", "amplified", "flipped")


def _value(summary: dict, key: str) -> float:
    if key in SKILLS:
        return summary["per_skill"][key]["avg"]
    if key.startswith("slip_"):
        return summary.get("final", {}).get(f"eval_{key}", math.nan)
    if key.startswith("push_"):
        return summary.get("evidence", {}).get(key, math.nan)
    return summary[key]


def _diffs(a: dict, b: dict, key: str) -> list[float]:
    return [_value(a[s], key) - _value(b[s], key) for s in sorted(a) if s in b]


def _pct(values) -> str:
    """'41.2 ± 1.3' over seeds, the bare mean for one seed (no interval), '-' for none."""
    values = [v for v in values if v == v]
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return _cell(values) if values else "-"


def _rows(roles, worlds_main, world: str) -> dict:
    """name -> seed -> summary, the baselines first (worlds_main), then the arms."""
    rows = {k: worlds_main.seeds(world, k) for k in BASELINES}
    rows.update({k: roles.seeds(world, k) for k in ARMS})
    return rows


def family_verdicts(rows: dict, ref: str, arms=tuple(ARMS)) -> dict:
    """(arm, column) -> (text, verdict) for every arm minus `ref` on every column, as one family
    (one per world and reference: len(arms) x 5 comparisons) corrected together by Holm; the
    text is 'd ± h (Holm p: verdict)' with the uncorrected 95% interval (stats.said_corrected)."""
    diffs = {(a, c): _diffs(rows[a], rows[ref], c) for a in arms if rows.get(a) for c in COLUMNS}
    adjusted = holm_p(diffs)
    return {k: (said_corrected(d, adjusted[k]), corrected_verdict(d, adjusted[k])) for k, d in diffs.items()}


EVIDENCE_STUDY = "worlds_main_evidence"   # the worlds study's baselines re-run with today's logging


def with_evidence(worlds_main, evidence) -> tuple[object, int, int]:
    """worlds_main with the error adoption (final eval_slip_*) and push evidence of its exact
    re-runs (`evidence`: the EVIDENCE_STUDY Runs) merged into the summaries they reproduce: the
    same cell and seed, the same final avg@8 and the same accuracy on every skill, to the last
    digit. Returns (the merged Runs, re-runs used, re-runs compared); worlds_main is not changed."""
    import copy

    merged, used, compared = copy.copy(worlds_main), 0, 0
    merged.cells = {cell: dict(seeds) for cell, seeds in worlds_main.cells.items()}
    for cell, seeds in (evidence.cells if evidence is not None else {}).items():
        for seed, again in seeds.items():
            first = merged.cells.get(cell, {}).get(seed)
            if first is None:
                continue
            compared += 1
            if again["avg"] == first["avg"] and again["per_skill"] == first["per_skill"]:
                used += 1
                slips = {k: v for k, v in again.get("final", {}).items() if k.startswith("eval_slip_")}
                merged.cells[cell][seed] = {**first, "final": {**first.get("final", {}), **slips},
                                            "evidence": {**first.get("evidence", {}), **again.get("evidence", {})}}
    return merged, used, compared


def roles_section(roles, worlds_main, start: dict, prefix=None, channels: dict | None = None,
                  evidence=None, horizon=None) -> list[str]:
    """The section's lines (roles, worlds_main: worlds_report.Runs; start: the study's start.json;
    prefix: the step_prefix study's Runs; channels: study/channels.py's measurement; evidence:
    the EVIDENCE_STUDY Runs, exact re-runs of worlds_main's baselines with today's logging;
    horizon: the 1000-step check's Runs, whose per-seed finals the findings quote)."""
    worlds_main, used, compared = with_evidence(worlds_main, evidence)
    done = sum(len(v) for v in roles.cells.values())
    lines = ["## Where must the verifier act?", ""]
    if roles.missing:
        lines += [f"**Still running: {done} of {roles.planned} runs are in** (the seeds present are listed per row). "
                  "The tables below are what they hold; no verdict here is final, and the paragraph on what "
                  "kept the borrow waits for the whole study.", ""]
    lines += [
        "The sign gate reads one verdict per rollout, so it cannot say which step was wrong. This study "
        "moves the verifier elsewhere (`sgopd_lite/advantage.py` has every method side by side):",
        "",
        f"* **teacher probe**: {PROBE.m} verified teacher samples per training prompt; where at least "
        f"{math.ceil(PROBE.threshold * PROBE.m)} of them are right, OPD; where fewer are, GRPO (or nothing: *drop*, "
        "a control).",
        "* **step gate**: OPDVR's cells (correct & pushed down, wrong & pushed up: 0) with each token's "
        "verdict taken from its own line, checked on its own operands.",
        "* **first-error gate**: the same cells, everything before the first wrong line trusted as correct "
        "and everything from it on as wrong.",
        "* **hybrid**: OPD's advantage plus c times GRPO's; c = 1 and c = 4 (the rule that fixed 4 before "
        "any run is in the study file). " + HYBRID_CAVEAT,
        "* **oracle gate**: OPD without the teacher's push wherever its top token is not the known correct "
        "one. No real task has this oracle: it is a bound, not a method.",
        "",
        "OPD, OPDVR's gate, SG-OPD's gate (gate only, 1.8 / 1.0) and GRPO are the worlds study's runs of "
        "the same seeds. Error adoption is measured on the same evaluation samples as accuracy: of the "
        "sampled steps that need a borrow (a carry), the share whose result is the forgotten-borrow "
        "(forgotten-carry) one. The worlds study's runs predate that measurement and the push evidence "
        "(shown as -)" + (f"; both come from its exact re-runs (`{EVIDENCE_STUDY}`): {used} of {compared} re-runs "
                          "reproduced the final avg@8 and every per-skill accuracy to the last digit and are used."
                          if compared else "."),
        "",
    ]
    for world, wname in WORLDS.items():
        if world not in start:
            continue
        rows = _rows(roles, worlds_main, world)
        lines += _world_tables(world, wname, rows, start[world])
    if not roles.missing:
        leak_next = bool(channels) or (prefix is not None and prefix.planned > 0)
        lines += findings(roles, worlds_main, start, leak_next, horizon)
        if leak_next:
            lines += leak_section(roles, worlds_main, start, prefix, channels or {})
    return lines


def _world_tables(world: str, wname: str, rows: dict, start: dict) -> list[str]:
    lines = [f"### {wname}", "",
             "| method | where the verifier acts | seeds | avg@8 | " + " | ".join(SKILLS)
             + " | forgot borrow | forgot carry |",
             "|---|---|---|---|" + "---|" * len(SKILLS) + "---|---|"]
    for role, label in (("student", "start (student)"), ("teacher", "teacher")):
        s = start[role]
        slip = s.get("slip", {})
        lines.append(f"| {label} | | | {100 * s['avg']:.1f} | "
                     + " | ".join(f"{100 * s['per_skill'][k]:.1f}" for k in SKILLS)
                     + f" | {100 * slip.get('borrow', math.nan):.1f} | {100 * slip.get('carry', math.nan):.1f} |")
    for key, (label, where) in {**BASELINES, **ARMS}.items():
        runs = rows.get(key) or {}
        if not runs:
            continue
        seeds = ",".join(str(s) for s in sorted(runs))
        cells = [_pct([_value(x, c) for x in runs.values()]) for c in (*COLUMNS, "slip_borrow", "slip_carry")]
        lines.append(f"| {label} | {where} | {seeds} | " + " | ".join(cells) + " |")
    lines.append("")
    for ref in ("opd", "grpo"):
        if not rows.get(ref):
            continue
        fam = family_verdicts(rows, ref)
        arms = [a for a in ARMS if rows.get(a)]
        if not arms:
            continue
        lines += [f"Minus {BASELINES[ref][0]}, paired by seed (points; uncorrected 95% interval, then the verdict "
                  f"after Holm's correction over this table's {len(fam)} comparisons at {ALPHA}):", "",
                  "| method | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
        for a in arms:
            lines.append(f"| {ARMS[a][0]} | " + " | ".join(fam[(a, c)][0] for c in COLUMNS) + " |")
        lines.append("")
    lines += _evidence_table(rows)
    return lines


def _evidence_table(rows: dict) -> list[str]:
    """Harmful pushes (down on a correct token, up on a wrong one) and what each method did."""
    lines = ["Per-token evidence by the direction of the teacher's push on the sampled token, pooled over "
             "all steps (mean over seeds). *oracle*: positions up to and including a rollout's first "
             "mistake, correct = the known correct token; *steps*: every token of a checkable line, correct "
             "= its line is right on its own operands. Harmful = down on a correct token or up on a wrong "
             "one; then what the method did to those pushes (its teacher term against OPD's A = a2: the GRPO "
             "term of the hybrid and of the teacher probe's fallback is not counted here), and how much of the "
             "helpful pushes it zeroed.", "",
             "| method | oracle: harmful share | zeroed | shrunk | unchanged | amplified | flipped | helpful zeroed "
             "| steps: harmful share | zeroed | unchanged | helpful zeroed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, (label, _) in {**BASELINES, **ARMS}.items():
        runs = list((rows.get(key) or {}).values())
        if not runs or key == "grpo":
            continue

        def m(name):
            return _pct([_value(x, name) for x in runs])
        lines.append(f"| {label} | {m('push_oracle_harm_share')} | "
                     + " | ".join(m(f"push_oracle_harm_{e}") for e in EFFECTS)
                     + f" | {m('push_oracle_help_zeroed')} | {m('push_step_harm_share')} | "
                     f"{m('push_step_harm_zeroed')} | {m('push_step_harm_unchanged')} | {m('push_step_help_zeroed')} |")
    return lines + [""]


PROBE = ProbeConfig()     # the study's probe: its defaults (configs/studies/verifier_roles.yaml sets none)

# The hybrid's c was chosen so that the two terms' mean |A| per token matched. What a mixed update
# does depends on each term's share of the gradient, which that rule does not measure: its rows
# test those two coefficients, and no sentence here draws a finding about mixing from them.
HYBRID_CAVEAT = ("Its c was set by the two terms' mean |A| per token, not by their shares of the gradient, which "
                 "that rule does not measure: its rows test these two coefficients, not mixing the two signals, and "
                 "no finding here rests on them until a run at a measured gradient balance.")


def limits(arm: str, roles, worlds_main, horizon=None) -> list[str]:
    """Where an arm's A2 complementary finding does not hold: its Holm verdicts against GRPO on A2
    shared error (overall and on the carry, the skill that world's teacher gets wrong) and, from the
    1000-step check (2 seeds, no verdict), where GRPO's borrow ends above the arm's in every seed."""
    out = []
    rows = _rows(roles, worlds_main, "a2s")
    if rows.get(arm) and rows.get("grpo"):
        vs = family_verdicts(rows, "grpo")
        overall, carry = vs[(arm, "avg")], vs[(arm, "carry")]
        word = {"lower": "ends below GRPO", "higher": "ends above GRPO"}.get(overall[1], "is not distinguishable from GRPO")
        out.append(f"on A2 shared error it {word}: overall {overall[0]}, carry {carry[0]}")
    if horizon is not None and horizon.cells.get(("a2c", arm)) and horizon.cells.get(("a2c", "grpo")):
        from .horizon_report import value
        mine, grpo = horizon.cells[("a2c", arm)], horizon.cells[("a2c", "grpo")]
        seeds = sorted(set(mine) & set(grpo))
        b = {who: [value(runs[s], 1000, "eval_avg@8_borrow") for s in seeds] for who, runs in (("arm", mine), ("grpo", grpo))}
        if seeds and all(g > a for g, a in zip(b["grpo"], b["arm"])):
            out.append(f"at 1000 steps (seeds {', '.join(map(str, seeds))}, no verdict) GRPO's borrow ends above its in "
                       f"every seed: " + " / ".join(f"{100 * g:.1f}" for g in b["grpo"]) + " against "
                       + " / ".join(f"{100 * a:.1f}" for a in b["arm"]))
    return out


def findings(roles, worlds_main, start: dict, leak_next: bool = False, horizon=None) -> list[str]:
    """What kept the skill the teacher gets wrong (A2 complementary error: the borrow), at what
    cost, where that does not hold (`limits`), and where a gate that removed the teacher's pushes
    lost it anyway; from the Holm verdicts and the evidence columns, never from a mean alone."""
    rows = _rows(roles, worlds_main, "a2c")
    vs_opd, vs_grpo = family_verdicts(rows, "opd"), family_verdicts(rows, "grpo")
    real = [a for a in ARMS if a != "oracle_gate" and rows.get(a)]
    b0 = start["a2c"]["student"]["per_skill"]["borrow"]
    slip0 = start["a2c"]["student"].get("slip", {}).get("borrow", math.nan)

    def mean(a, key):
        vals = [_value(x, key) for x in rows[a].values()]
        vals = [v for v in vals if v == v]
        return sum(vals) / len(vals) if vals else math.nan

    lines = ["### What kept the borrow, and what it cost", "",
             f"On A2 complementary error the student starts with the borrow at {100 * b0:.1f} (it forgets "
             f"{100 * slip0:.1f}% of the borrows it needs); the teacher forgets nearly all of them. Verdicts are "
             "the Holm-corrected ones of the tables above.", ""]
    kept = [a for a in real if vs_opd.get((a, "borrow"), ("", ""))[1] == "higher"]
    for a in kept:
        costs = [c for c in SKILLS if vs_opd[(a, c)][1] == "lower"]
        lines.append(f"* **{ARMS[a][0]}** ends with more of the borrow than OPD: {_pct([_value(x, 'borrow') for x in rows[a].values()])} "
                     f"(minus OPD {vs_opd[(a, 'borrow')][0]}; minus GRPO {vs_grpo[(a, 'borrow')][0]}); it forgets "
                     f"{100 * mean(a, 'slip_borrow'):.1f}% of its borrows; "
                     + (f"it ends below OPD on {', '.join(costs)}." if costs else "no skill ends below OPD.")
                     + ("".join(f" Where this does not hold: {'; '.join(lim)}." for lim in [limits(a, roles, worlds_main, horizon)] if lim)))
    if not kept:
        lines.append("* No method without the oracle ends with more of the borrow than OPD.")
    ahead = [a for a in real if vs_grpo.get((a, "avg"), ("", ""))[1] == "higher"]
    below = [a for a in real if vs_grpo.get((a, "avg"), ("", ""))[1] == "lower"]
    lines.append("* Overall against GRPO: ahead " + (", ".join(ARMS[a][0] for a in ahead) or "none")
                 + "; behind " + (", ".join(ARMS[a][0] for a in below) or "none")
                 + "; the rest are not distinguishable from it with these seeds.")
    for a in real:
        zeroed = mean(a, "push_step_harm_zeroed")
        lost = vs_opd.get((a, "borrow"), ("", ""))[1] != "higher" and mean(a, "borrow") < b0
        if zeroed >= 0.9 and lost and mean(a, "slip_borrow") > slip0:
            lines.append(f"* **{ARMS[a][0]}** removed {100 * zeroed:.0f}% of the pushes its line verdicts call harmful "
                         f"(down on a right line's tokens, up on a wrong line's), yet the borrow fell from "
                         f"{100 * b0:.1f} to {100 * mean(a, 'borrow'):.1f} and the share of forgotten borrows rose from "
                         f"{100 * slip0:.1f}% to {100 * mean(a, 'slip_borrow'):.1f}%. Its line verdicts do not see "
                         "every harmful push" + (": the next subsection measures where the error still came in."
                                                 if leak_next else "."))
    if rows.get("teacher_probe_drop"):
        lines.append(f"* A control for that: **teacher probe, drop** trains no prompt the teacher fails (in this world "
                     f"the borrow prompts), so the student learns from the teacher only where it is right. It ends at "
                     f"carry {100 * mean('teacher_probe_drop', 'carry'):.1f}, borrow {100 * mean('teacher_probe_drop', 'borrow'):.1f}, "
                     f"forgetting {100 * mean('teacher_probe_drop', 'slip_borrow'):.1f}% of its borrows.")
    if rows.get("oracle_gate"):
        lines.append(f"* The oracle gate (a bound, not a method) minus OPD on borrow: {vs_opd[('oracle_gate', 'borrow')][0]}.")
    return lines + [""]


# --------------------------------------------------------------------------------------------
# Why the step gates lost the borrow: the pushes at the digit that decides it, and the check
# that closes the leak (configs/studies/step_prefix.yaml)
# --------------------------------------------------------------------------------------------

PLACE_WORDS = {"line right": "in a right line", "line wrong elsewhere": "in a line wrong elsewhere",
               "after a wrong line": "after a wrong line"}
# the step_prefix study's arms: key -> (label, the verifier_roles arm it refines)
CHECK_ARMS = {"step_gate_prefix": ("step gate, prefix", "step_gate"),
              "oracle_local": ("oracle gate, local (a bound)", "oracle_gate")}
LEAK_ROWS = ("OPD", "OPDVR's gate", "step gate", "step gate, prefix", "first-error gate", "oracle gate (a bound)",
             "oracle gate, local (a bound)", "hybrid c = 1", "GRPO", "teacher probe")


def check_verdicts(rows: dict, checks: dict) -> dict:
    """(arm, reference, column) -> (text, verdict): each check arm minus the arm it refines, OPD
    and GRPO on every column, and minus the arm it refines on the forgotten-borrow share; one
    family, corrected by Holm."""
    diffs = {}
    for arm, runs in checks.items():
        parent = CHECK_ARMS[arm][1]
        for ref in (parent, "opd", "grpo"):
            if rows.get(ref):
                for c in COLUMNS + (("slip_borrow",) if ref == parent else ()):
                    diffs[(arm, ref, c)] = _diffs(runs, rows[ref], c)
    adjusted = holm_p(diffs)
    return {k: (said_corrected(d, adjusted[k]), corrected_verdict(d, adjusted[k])) for k, d in diffs.items()}


def _ref_label(ref: str) -> str:
    return {**{k: v[0] for k, v in BASELINES.items()}, **{k: v[0] for k, v in ARMS.items()}}[ref]


def leak_section(roles, worlds_main, start: dict, prefix, channels: dict) -> list[str]:
    """Where the forgotten borrow still reached the student under the step gates: each method's
    pushes at the borrow digit (channels.json, `measure`), which pushes move the borrow to first
    order (`influence`), and the two checks of the step_prefix study."""
    lines = ["### Why the step gates lost the borrow", ""]
    first = channels.get("students", {}).get("start")
    if first:
        push = first["pushes"]
        lines += [f"**At the borrow digit.** Every method's advantage, formed as its trainer forms it, on one batch of "
                  f"the starting student's rollouts ({first['prompts']} borrow and both training prompts x "
                  f"{channels['group']}, seed {channels['seed']}; `python -m sgopd_lite.study.channels`), read at the digit "
                  f"that decides each borrow (16 against the forgotten 26: the 1). The batch has "
                  f"{first['borrow_digits']['right']} right borrow digits, {first['borrow_digits']['forgot']} forgotten "
                  f"and {first['borrow_digits']['other']} other. A push *toward* the error is the right digit pushed down "
                  "or the forgotten one up; *away* is the opposite. Sums of |A| per 100 rollouts; the pushes toward the "
                  "error on a right digit are split by where its line stands.", "",
                  "| method | toward the forgotten borrow | away from it | share of OPD's toward | on a right digit: "
                  "line right | line wrong elsewhere | after a wrong line |", "|---|---|---|---|---|---|---|"]
        opd = push["OPD"]["toward"] or float("nan")
        for label in LEAK_ROWS:
            if label in push:
                r = push[label]
                lines.append(f"| {label} | {r['toward']:.1f} | {r['away']:.1f} | {100 * r['toward'] / opd:.1f}% | "
                             + " | ".join(f"{v:.1f}" for v in r["toward_by_place"].values()) + " |")
        lines.append("")
        finals = {k: v for k, v in channels["students"].items() if k != "start"}
        if finals:
            lines += ["What the final students of the seed-0 runs write at the borrow digit, sampling the same prompts "
                      "(reward: the share of their rollouts the verifier accepts):", "",
                      "| student | reward | right | forgotten | other |", "|---|---|---|---|---|"]
            for name, v in {"start": first, **finals}.items():
                k = v["borrow_digits"]
                n = sum(k.values()) or 1
                lines.append(f"| {name} | {100 * v['reward_mean']:.1f} | {100 * k['right'] / n:.1f}% | "
                             f"{100 * k['forgot'] / n:.1f}% | {100 * k['other'] / n:.1f}% |")
            lines.append("")
    lines += _influence_table(channels.get("influence", {}))
    rows = _rows(roles, worlds_main, "a2c")
    checks = {arm: prefix.seeds("a2c", arm) for arm in CHECK_ARMS} if prefix is not None else {}
    checks = {k: v for k, v in checks.items() if v}
    if checks:
        lines += ["**The checks** (configs/studies/step_prefix.yaml; the same seeds and protocol as the study, written "
                  "after it" + (", each to test what a measurement above points at" if first or channels.get("influence")
                                else "") + "):", "",
                  "* `step_unit=prefix`: the step gate's checker points at a wrong line's first wrong character (the "
                  "tiny world knows it), so the characters before it count as right and the teacher's push down on a "
                  "right borrow digit is zeroed even when the line goes wrong later;",
                  "* `oracle_reach=local`: the oracle gate (a bound) also knows, after a rollout's first mistake, every "
                  "result digit that a line's own operands fix, so it drops the teacher's push at every borrow digit "
                  "where the teacher's choice is wrong, whatever the student wrote there.", "",
                  "| method | seeds | avg@8 | " + " | ".join(SKILLS) + " | forgot borrow | forgot carry |",
                  "|---|---|---|" + "---|" * len(SKILLS) + "---|---|"]
        shown = {"opd": "OPD", "grpo": "GRPO", "step_gate": "step gate", "oracle_gate": "oracle gate (a bound)"}
        for key, label in shown.items():
            if rows.get(key):
                lines.append(_check_row(label, rows[key]))
        for arm, runs in checks.items():
            lines.append(_check_row(CHECK_ARMS[arm][0], runs))
        fam = check_verdicts(rows, checks)
        lines += ["", f"Each check minus the arm it refines, OPD and GRPO, paired by seed (points; uncorrected 95% "
                  f"interval, then the verdict after Holm's correction over this table's {len(fam)} comparisons at "
                  f"{ALPHA}):", "", "| check | minus | " + " | ".join(COLUMNS) + " | forgot borrow |",
                  "|---|---|" + "---|" * len(COLUMNS) + "---|"]
        for arm in checks:
            for ref in (CHECK_ARMS[arm][1], "opd", "grpo"):
                if (arm, ref, "avg") in fam:
                    lines.append(f"| {CHECK_ARMS[arm][0]} | {_ref_label(ref)} | "
                                 + " | ".join(fam[(arm, ref, c)][0] for c in COLUMNS)
                                 + f" | {fam.get((arm, ref, 'slip_borrow'), ('-',))[0]} |")
        lines.append("")
    lines += leak_findings(rows, checks, channels, start)
    return lines


def _check_row(label: str, runs: dict) -> str:
    return (f"| {label} | {','.join(str(x) for x in sorted(runs))} | "
            + " | ".join(_pct([_value(x, c) for x in runs.values()]) for c in (*COLUMNS, "slip_borrow", "slip_carry"))
            + " |")


INFLUENCE_ROLES = ("borrow digit, right", "borrow digit, forgotten", "borrow digit, other", "carry digit",
                   "other result characters", "everything else")


def _influence_table(influence: dict) -> list[str]:
    """The first-order reading of `channels.influence`, per batch, scaled so that OPD's total is -100."""
    if not influence:
        return []
    batches = sorted(influence)
    first = influence[batches[0]]
    lines = [f"**Which pushes move the borrow.** A push at one token moves every other through the shared weights. "
             f"`channels.influence` reads, to first order, how one update of each method would move the borrow's "
             f"log-odds (right against forgotten digit, teacher-forced on {first['probes']} held-out borrow and both "
             f"gold solutions): the dot product of that log-odds' gradient with the method's update, split by the "
             f"tokens that carry the push. One batch of {first['rollouts']} rollouts of the starting student (an "
             f"equal number of training prompts of each skill) per seed; scaled so that OPD's total is -100 in each "
             f"batch, negative = toward the forgotten borrow; cells: batch {' / '.join(batches)}. A plain gradient "
             "step, not the optimizer's (AdamW rescales each weight), so this says which pushes point where, not "
             "how far a run goes.", "",
             "| method | total | " + " | ".join(INFLUENCE_ROLES) + " |", "|---|---|" + "---|" * len(INFLUENCE_ROLES)]
    for label in LEAK_ROWS:
        if label not in first["methods"]:
            continue
        cells = []
        for key in ("total", *(f"role: {r}" for r in INFLUENCE_ROLES)):
            vals = [100 * influence[b]["methods"][label][key] / abs(influence[b]["methods"]["OPD"]["total"])
                    for b in batches]
            cells.append(" / ".join(f"{v:+.1f}" for v in vals))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def leak_findings(rows: dict, checks: dict, channels: dict, start: dict) -> list[str]:
    """The paragraph: which pushes still pointed at the error, which moved the borrow, and what
    each check did, from the measurements and the corrected verdicts."""
    push = channels.get("students", {}).get("start", {}).get("pushes", {})
    lines = []
    if push:
        opd = push["OPD"]["toward"]
        never_away = [k for k in ("OPD", "OPDVR's gate", "step gate", "first-error gate", "oracle gate (a bound)")
                      if k in push and push[k]["away"] == 0]
        if never_away:
            lines.append(f"* At the borrow digit the teacher's push never points away from its error ({', '.join(never_away)}: "
                         "0.0 away). A gate only removes pushes, so what it lets through is unopposed there.")
        for k in ("step gate", "first-error gate", "oracle gate (a bound)"):
            if k in push and push[k]["toward"] > 0 and opd > 0:
                by = push[k]["toward_by_place"]
                where = max(by, key=by.get)
                share = by[where] / push[k]["toward"]
                lines.append(f"* **{k}** lets through {100 * push[k]['toward'] / opd:.1f}% of OPD's push toward the "
                             f"forgotten borrow at that digit, {'most' if share > 0.5 else f'{100 * share:.0f}%'} of it "
                             f"on a right digit {PLACE_WORDS[where]}.")
    influence = channels.get("influence", {})
    if influence and all(influence[b]["methods"]["OPD"]["total"] < 0 for b in influence):
        batches = sorted(influence)
        scale = {b: 100 / abs(influence[b]["methods"]["OPD"]["total"]) for b in batches}
        scaled = {lab: [scale[b] * influence[b]["methods"][lab]["total"] for b in batches]
                  for lab in influence[batches[0]]["methods"]}
        other = [scale[b] * influence[b]["methods"]["OPD"]["role: borrow digit, other"] for b in batches]
        opd_roles = [{r: abs(v) for r, v in influence[b]["methods"]["OPD"].items() if r.startswith("role: ")}
                     for b in batches]
        if all(max(x, key=x.get) == "role: borrow digit, other" for x in opd_roles) and all(v < 0 for v in other):
            lines.append("* To first order, the largest single push on the borrow, for OPD, is the teacher's push at "
                         "borrow digits the student wrote neither right nor forgotten ("
                         + " / ".join(f"{v:+.1f}" for v in other) + " of OPD's -100): a wrong digit pushed down, a "
                         "push that every verdict-reading gate calls helpful and keeps.")
        gates = [g for g in ("OPDVR's gate", "step gate", "step gate, prefix", "first-error gate") if g in scaled]
        toward = [g for g in gates if all(v < 0 for v in scaled[g])]
        if toward:
            lines.append("* Every update of " + ", ".join(f"{g} ({' / '.join(f'{v:+.1f}' for v in scaled[g])})"
                                                        for g in toward)
                         + " still points toward the forgotten borrow, to first order; GRPO's reads "
                         + " / ".join(f"{v:+.1f}" for v in scaled.get("GRPO", [])) + ".")
    fam = check_verdicts(rows, checks) if checks else {}
    for arm in checks:
        parent = CHECK_ARMS[arm][1]
        b, vs_opd, vs_grpo = fam[(arm, parent, "borrow")], fam[(arm, "opd", "borrow")], fam[(arm, "grpo", "borrow")]
        said = {"higher": "kept more of the borrow than", "lower": "kept less of the borrow than",
                "no clear difference": "did not clearly change the borrow from"}.get(b[1], f"({b[1]}) against")
        lines.append(f"* **{CHECK_ARMS[arm][0]}** {said} {_ref_label(parent)}: borrow {b[0]}; minus OPD {vs_opd[0]}; "
                     f"minus GRPO {vs_grpo[0]}; forgotten-borrow share minus {_ref_label(parent)} "
                     f"{fam[(arm, parent, 'slip_borrow')][0]}.")
    lines += _what_it_says(rows, checks, fam, start)
    return lines + [""] if lines else []


def _what_it_says(rows: dict, checks: dict, fam: dict, start: dict) -> list[str]:
    """The conclusion of the checks, said only when the local oracle's verdicts support it: the
    pushes at the borrow digits carried the error, and without a reward the borrow still fell."""
    local = checks.get("oracle_local")
    if not local or not rows.get("oracle_gate") or not rows.get("opd"):
        return []
    if not (fam[("oracle_local", "oracle_gate", "slip_borrow")][1] == "lower"
            and fam[("oracle_local", "opd", "borrow")][1] == "higher"):
        return []

    def mean(runs, key):
        vals = [_value(x, key) for x in runs.values()]
        return 100 * sum(vals) / len(vals)
    b0 = 100 * start["a2c"]["student"]["per_skill"]["borrow"]
    out = [f"* **What this says.** Dropping the teacher's push at every borrow digit where its choice is wrong, "
           f"after a rollout's first mistake too, cut the adoption of its error (forgotten borrows "
           f"{mean(rows['oracle_gate'], 'slip_borrow'):.1f}% with the first-mistake oracle, {mean(local, 'slip_borrow'):.1f}% "
           f"with the local one) and kept more of the borrow than OPD: the error came in through the teacher's pushes "
           f"at those digits, including those a verdict-reading gate keeps on purpose (a wrong digit pushed down: the "
           f"largest term of the first-order reading) and those the first-mistake oracle cannot judge (after a "
           f"rollout's first mistake). Yet the borrow still "
           f"ended below its start ({b0:.1f} to {mean(local, 'borrow'):.1f})"]
    if rows.get("teacher_probe_drop"):
        out[0] += (f", like the control that never trains a borrow prompt (teacher probe, drop: "
                   f"{mean(rows['teacher_probe_drop'], 'borrow'):.1f})")
    out[0] += (": removing the teacher's wrong pushes leaves nothing that pushes toward the right digit, and "
               "learning the other skills wears the borrow down. What pushes toward it is the reward: GRPO ends at "
               f"{mean(rows['grpo'], 'borrow'):.1f}" + (f", the teacher probe at {mean(rows['teacher_probe'], 'borrow'):.1f}"
                                                       if rows.get("teacher_probe") else "") + ".")
    return out
