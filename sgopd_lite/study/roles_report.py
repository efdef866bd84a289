"""docs/results.md, section "Where must the verifier act?": the verifier-roles study
(configs/studies/verifier_roles.yaml, results in results/runs/verifier_roles/) beside the
worlds study's OPD, OPDVR's gate, SG-OPD's gate and GRPO on the same worlds and seeds.

Per world: accuracy overall and per skill with error adoption (the share of sampled steps that
forget a borrow / a carry), paired differences to OPD and to GRPO with Holm-corrected verdicts,
and the per-token evidence by push direction; then a paragraph written from those numbers. While
the study is still running the section says how many of its runs it holds, and calls nothing.

May import: study.stats, data. Imported by study/worlds_report.py, which loads the runs
(`worlds_report.Runs`) and passes them in.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..data import SKILLS
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


def roles_section(roles, worlds_main, start: dict, prefix=None, channels: dict | None = None) -> list[str]:
    """The section's lines (roles, worlds_main: worlds_report.Runs; start: the study's start.json;
    prefix: the step_prefix study's Runs; channels: study/channels.py's measurement)."""
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
        "* **teacher probe**: 4 verified teacher samples per training prompt; where the teacher passes at "
        "least half, OPD; where it fails, GRPO (or nothing: *drop*, a control).",
        "* **step gate**: OPDVR's cells (correct & pushed down, wrong & pushed up: 0) with each token's "
        "verdict taken from its own line, checked on its own operands.",
        "* **first-error gate**: the same cells, everything before the first wrong line trusted as correct "
        "and everything from it on as wrong.",
        "* **hybrid**: OPD's advantage plus c times GRPO's; c = 1 and c = 4 (the rule that fixed 4 before "
        "any run is in the study file).",
        "* **oracle gate**: OPD without the teacher's push wherever its top token is not the known correct "
        "one. No real task has this oracle: it is a bound, not a method.",
        "",
        "OPD, OPDVR's gate, SG-OPD's gate (gate only, 1.8 / 1.0) and GRPO are the worlds study's runs of "
        "the same seeds. Error adoption is measured on the same held-out samples as accuracy: of the "
        "sampled steps that need a borrow (a carry), the share whose result is the forgotten-borrow "
        "(forgotten-carry) one. The worlds study's runs predate that measurement and the push evidence "
        "(shown as -).",
        "",
    ]
    for world, wname in WORLDS.items():
        if world not in start:
            continue
        rows = _rows(roles, worlds_main, world)
        lines += _world_tables(world, wname, rows, start[world])
    if not roles.missing:
        lines += findings(roles, worlds_main, start)
        if channels or (prefix is not None and prefix.planned):
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


def findings(roles, worlds_main, start: dict) -> list[str]:
    """What kept the skill the teacher gets wrong (A2 complementary error: the borrow), at what
    cost, and where a gate that removed the teacher's pushes lost it anyway; from the Holm
    verdicts and the evidence columns, never from a mean alone."""
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
                     + (f"it ends below OPD on {', '.join(costs)}." if costs else "no skill ends below OPD."))
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
        if zeroed >= 0.9 and lost:
            lines.append(f"* **{ARMS[a][0]}** removed {100 * zeroed:.0f}% of the pushes its line verdicts call harmful "
                         f"(down on a right line's tokens, up on a wrong line's), yet the borrow fell from "
                         f"{100 * b0:.1f} to {100 * mean(a, 'borrow'):.1f} and the share of forgotten borrows rose from "
                         f"{100 * slip0:.1f}% to {100 * mean(a, 'slip_borrow'):.1f}%. Its line verdicts do not see "
                         "every harmful push: the next subsection measures where the error still came in.")
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

PREFIX_ARM = "step_gate_prefix"
PREFIX_LABEL = "step gate, prefix"
LEAK_ROWS = ("OPD", "OPDVR's gate", "step gate", "step gate, prefix", "first-error gate", "oracle gate (a bound)",
             "hybrid c = 1", "GRPO", "teacher probe")


def prefix_verdicts(rows: dict, prefix_runs: dict) -> dict:
    """(reference, column) -> (text, verdict): the prefix step gate minus the line step gate, OPD
    and GRPO on every column and the forgotten-borrow share, one family corrected by Holm."""
    diffs = {(ref, c): _diffs(prefix_runs, rows[ref], c)
             for ref in ("step_gate", "opd", "grpo") if rows.get(ref) for c in (*COLUMNS, "slip_borrow")}
    adjusted = holm_p(diffs)
    return {k: (said_corrected(d, adjusted[k]), corrected_verdict(d, adjusted[k])) for k, d in diffs.items()}


def leak_section(roles, worlds_main, start: dict, prefix, channels: dict) -> list[str]:
    """Where the forgotten borrow still reached the student under the step gates (channels.json:
    each method's pushes at the borrow digit on one batch of the starting student's rollouts),
    and the step gate whose checker points at the first wrong character (the step_prefix study)."""
    lines = ["### Why the step gates lost the borrow", ""]
    first = channels.get("students", {}).get("start")
    if first:
        push = first["pushes"]
        lines += [f"Every method's advantage, formed as its trainer forms it, on one batch of the starting student's "
                  f"rollouts ({first['prompts']} borrow and both training prompts x {channels['group']}, seed "
                  f"{channels['seed']}; `python -m sgopd_lite.study.channels`), read at the digit that decides each "
                  f"borrow (16 against the forgotten 26: the 1). The batch has {first['borrow_digits']['right']} right "
                  f"borrow digits, {first['borrow_digits']['forgot']} forgotten and {first['borrow_digits']['other']} "
                  "other. A push *toward* the error is the right digit pushed down or the forgotten one up; "
                  "*away* is the opposite. Sums of |A| per 100 rollouts; the pushes toward the error on a right "
                  "digit are split by where its line stands.", "",
                  "| method | toward the forgotten borrow | away from it | share of OPD's toward | on a right digit: "
                  "line right | line wrong elsewhere | after a wrong line |", "|---|---|---|---|---|---|---|"]
        opd = push["OPD"]["toward"]
        for label in LEAK_ROWS:
            if label in push:
                r = push[label]
                by = r["toward_by_place"]
                lines.append(f"| {label} | {r['toward']:.1f} | {r['away']:.1f} | {100 * r['toward'] / opd:.1f}% | "
                             + " | ".join(f"{v:.1f}" for v in by.values()) + " |")
        lines.append("")
        finals = {k: v for k, v in channels["students"].items() if k != "start"}
        if finals:
            lines += ["The same measurement on the final students of the study's seed-0 runs (their own rollouts of "
                      "the same prompts): what they write at the borrow digit.", "",
                      "| student | reward on these prompts | right | forgotten | other |", "|---|---|---|---|---|"]
            for name, v in {"start": first, **finals}.items():
                k = v["borrow_digits"]
                n = sum(k.values()) or 1
                lines.append(f"| {name} | {100 * v['reward_mean']:.1f} | {100 * k['right'] / n:.1f}% | "
                             f"{100 * k['forgot'] / n:.1f}% | {100 * k['other'] / n:.1f}% |")
            lines.append("")
    rows = _rows(roles, worlds_main, "a2c")
    prefix_runs = prefix.seeds("a2c", PREFIX_ARM) if prefix is not None else {}
    if prefix_runs:
        seeds = ",".join(str(x) for x in sorted(prefix_runs))
        lines += ["**The check.** `step_unit=prefix` gives the step gate a checker that points at a wrong line's "
                  "first wrong character (the tiny world knows it): the characters before it count as right, so "
                  "the teacher's push down on a right borrow digit is zeroed even when the line goes wrong later "
                  "(configs/studies/step_prefix.yaml, the same seeds and protocol; written after the study above, "
                  "to test what the table above points at).", "",
                  "| method | seeds | avg@8 | " + " | ".join(SKILLS) + " | forgot borrow | forgot carry |",
                  "|---|---|---|" + "---|" * len(SKILLS) + "---|---|"]
        shown = {"opd": "OPD", "grpo": "GRPO", "step_gate": "step gate (line)"}
        for key, label in shown.items():
            runs = rows.get(key) or {}
            if runs:
                lines.append(f"| {label} | {','.join(str(x) for x in sorted(runs))} | "
                             + " | ".join(_pct([_value(x, c) for x in runs.values()])
                                          for c in (*COLUMNS, "slip_borrow", "slip_carry")) + " |")
        lines.append(f"| {PREFIX_LABEL} | {seeds} | " + " | ".join(
            _pct([_value(x, c) for x in prefix_runs.values()]) for c in (*COLUMNS, "slip_borrow", "slip_carry")) + " |")
        fam = prefix_verdicts(rows, prefix_runs)
        refs = [r for r in ("step_gate", "opd", "grpo") if rows.get(r)]
        cols = (*COLUMNS, "slip_borrow")
        lines += ["", f"The prefix step gate minus each, paired by seed (points; uncorrected 95% interval, then the "
                  f"verdict after Holm's correction over this table's {len(fam)} comparisons at {ALPHA}):", "",
                  "| minus | " + " | ".join(c if c != "slip_borrow" else "forgot borrow" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for r in refs:
            label = shown[r]
            lines.append(f"| {label} | " + " | ".join(fam[(r, c)][0] for c in cols) + " |")
        lines.append("")
    lines += leak_findings(rows, prefix_runs, channels, start)
    return lines


def leak_findings(rows: dict, prefix_runs: dict, channels: dict, start: dict) -> list[str]:
    """The paragraph: which pushes still pointed at the error, what nothing opposed, and what
    closing the leak did, from the measurement and the corrected verdicts."""
    push = channels.get("students", {}).get("start", {}).get("pushes", {})
    lines = []
    if push:
        opd = push["OPD"]["toward"]
        teacher_only = [k for k in ("OPD", "OPDVR's gate", "step gate", "first-error gate", "oracle gate (a bound)")
                        if k in push]
        never_away = [k for k in teacher_only if push[k]["away"] == 0]
        lines.append("* At the borrow digit the teacher only ever pushes toward its own error: "
                     + (f"{', '.join(never_away)} push away from it nowhere (0.0)" if never_away else "")
                     + ". A gate can only remove such pushes, never reverse them, so what it lets through meets no "
                     "opposition.")
        for k in ("step gate", "first-error gate", "oracle gate (a bound)"):
            if k in push:
                by = push[k]["toward_by_place"]
                where = max(by, key=by.get)
                lines.append(f"* **{k}** lets through {100 * push[k]['toward'] / opd:.1f}% of OPD's push toward the "
                             f"forgotten borrow, most of it on a right digit {where} "
                             f"({100 * by[where] / max(push[k]['toward'], 1e-9):.0f}% of its own).")
        if "GRPO" in push and "hybrid c = 1" in push:
            g, h = push["GRPO"], push["hybrid c = 1"]
            lines.append(f"* The reward pushes both ways, and more away from the error than toward it: GRPO "
                         f"{g['toward']:.1f} toward, {g['away']:.1f} away (the teacher probe hands these prompts to "
                         f"GRPO: {push.get('teacher probe', g)['away']:.1f} away). Beside the teacher it is too small "
                         f"to matter: the hybrid at c = 1 sums to {h['toward']:.1f} toward and {h['away']:.1f} away.")
        finals = channels.get("students", {})
        for name, v in finals.items():
            k = v["borrow_digits"]
            n = sum(k.values())
            if name != "start" and n and k["forgot"] / n >= 0.9:
                lines.append(f"* The final student of **{name}** writes the forgotten digit at "
                             f"{100 * k['forgot'] / n:.0f}% of the borrow digits it samples: once the error is the "
                             "student's own, the teacher agrees with it and pushes nothing either way.")
    if prefix_runs and rows.get("step_gate"):
        fam = prefix_verdicts(rows, prefix_runs)
        b, bl = fam[("step_gate", "borrow")], fam[("step_gate", "slip_borrow")]
        vs_grpo = fam.get(("grpo", "borrow"), ("-", ""))
        if b[1] == "higher":
            said = "closing the leak kept more of the borrow than the line step gate"
        elif b[1] == "lower":
            said = "closing the leak kept less of the borrow than the line step gate"
        else:
            said = "closing the leak did not clearly change the borrow"
        lines.append(f"* **The check**: {said}: borrow minus the line step gate {b[0]}, forgotten-borrow share "
                     f"{bl[0]}; minus GRPO on borrow {vs_grpo[0]}.")
    return lines + [""] if lines else []
