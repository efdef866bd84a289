"""What was measured: the readouts that close notebooks 03-06 ("What was measured"), from the
committed summaries of the worlds study and of the verifier-roles study
(results/runs/<study>/*.json, read by study/worlds_report.py and study/roles_report.py). docs/results.md is the full report; these are the few rows each notebook
needs beside its own small runs.

The study may still be running: every readout uses the seeds whose summaries exist and prints
them (`seeds 0, 1`), so no number is written down anywhere but in a summary. `load_measured`
refuses, naming the folder, when the summaries the readouts need are missing (a copy of the
package without the repository's results/, for example); only `pts_rows` says in its output that
its study has not been reached yet, instead of refusing.

Cells are mean ± half-width of the 95% Student-t interval over seeds, in points (x100);
differences are paired by seed, and the differences of one table are corrected together as one
family (Holm's method, study/stats.py; each readout's docstring names its family), as in
docs/results.md.

May import: study.worlds_report, study.roles_report, study.mix_report, study.smol_report, study.stats, data.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..data import SKILLS
from . import mix_report, roles_report, smol_report
from .stats import family_said, mean_ci
from .worlds_report import METHODS, WORLDS, Runs, _pct, diff, load_all, load_runs, pts_rescued

# The worlds_main cells the readouts print, each needing at least one seed (tests/test_notebooks.py
# checks the committed ones hold them): the A2 complementary world's methods, and OPD on A1 graded.
EVIDENCE_METHODS = ("opd", "exopd", "gate_only", "opdvr", "sgopd", "reversed_gate")   # notebook 03
SKILL_METHODS = ("opd", "gate_only", "grpo")                                           # notebook 05
REQUIRED = tuple(("worlds_main", ("a2c", m)) for m in (*EVIDENCE_METHODS, "grpo")) + (("worlds_main", ("a1g", "opd")),)
# ... and the verifier-roles study's arms on A2 complementary error (notebook 05, `roles_rows`)
REQUIRED += tuple((roles_report.NAME, ("a2c", a)) for a in roles_report.ARMS)


def load_measured(results_dir) -> dict:
    """{study name: Runs} of worlds_report.load_all and of the verifier-roles study, and the start
    points of each world (st["start"]: world -> teacher / student -> avg, pass, per_skill;
    st["roles_start"]: the same with the shares of forgotten borrows and carries, "slip").
    FileNotFoundError, naming the folder, when a cell of REQUIRED or every a2c_thresholds cell
    has no summary."""
    results_dir = Path(results_dir)
    if not (results_dir / "worlds_main").is_dir():
        raise FileNotFoundError(f"{results_dir / 'worlds_main'} does not exist: the study's summaries are committed in "
                                "the repository's results/runs/; run this notebook from a checkout (on Colab, the "
                                "install cell clones it)")
    st = load_all(results_dir)
    roles = roles_report.NAME
    st[roles] = load_runs(roles, results_dir) if (results_dir / roles).is_dir() else Runs(roles)
    missing = [f"{study}/{'-'.join(cell)}-s*.json" for study, cell in REQUIRED if not st[study].seeds(*cell)]
    if not st["a2c_thresholds"].cells:
        missing.append("a2c_thresholds/*.json")
    start = results_dir / "worlds_main" / "start.json"
    if not start.is_file():
        missing.append("worlds_main/start.json")
    if missing:
        raise FileNotFoundError(f"{results_dir} holds no summary for {', '.join(missing)}: run the studies "
                                "(`python -m sgopd_lite sweep --study configs/studies/<name>.yaml`) or use a "
                                "checkout whose results/runs/ has them")
    st["start"] = json.loads(start.read_text())
    roles_start = results_dir / roles / "start.json"
    st["roles_start"] = json.loads(roles_start.read_text()) if roles_start.is_file() else {}
    return st


def _seeds(runs: dict) -> str:
    return ", ".join(str(s) for s in sorted(runs)) or "-"


def _start_row(st: dict, world: str, who: str, skills=SKILLS) -> str:
    p = st["start"][world][who]
    return (f"| {who} at the start | - | {100 * p['avg']:.1f} | "
            + " | ".join(f"{100 * p['per_skill'][s]:.1f}" for s in skills) + " |")


def skill_rows(st: dict, world: str = "a2c", methods=SKILL_METHODS, ref: str = "opd") -> list[str]:
    """Final avg@8 overall and per skill of `methods` on `world` (the main table), the starting
    teacher and student beside them; then each method minus `ref`, paired by seed, overall and
    per skill: one family, every difference of that table."""
    m = st["worlds_main"]
    lines = [f"**{WORLDS[world]}: final avg@8 per skill** (worlds_main)", "",
             "| method | seeds | avg@8 | " + " | ".join(SKILLS) + " |", "|---|---|---|" + "---|" * len(SKILLS),
             _start_row(st, world, "teacher"), _start_row(st, world, "student")]
    for k in methods:
        lines.append(f"| {METHODS[k]} | {_seeds(m.seeds(world, k))} | {_pct(m.values(world, k))} | "
                     + " | ".join(_pct(m.values(world, k, key=s)) for s in SKILLS) + " |")
    others = [k for k in methods if k != ref]
    said = family_said({(k, key): diff(m.seeds(world, k), m.seeds(world, ref), key)
                        for k in others for key in ("avg", *SKILLS)})
    lines += ["", f"**Minus {METHODS[ref]}, paired by seed** (points: mean ± uncorrected 95% interval; the verdict "
              "after Holm's correction over every difference of this table)", "",
              "| method | seeds | avg@8 | " + " | ".join(SKILLS) + " |", "|---|---|---|" + "---|" * len(SKILLS)]
    for k in others:
        a, b = m.seeds(world, k), m.seeds(world, ref)
        lines.append(f"| {METHODS[k]} | {_seeds({s: 0 for s in a if s in b})} | "
                     + " | ".join(said[(k, key)] for key in ("avg", *SKILLS)) + " |")
    return lines + [""]


def roles_rows(st: dict, world: str = "a2c") -> list[str]:
    """Where the verifier acts, and what each place kept on `world`: the worlds study's OPD, gates
    and GRPO and every arm of the verifier-roles study (same seeds), with final avg@8, carry,
    borrow and the share of sampled borrow steps that end in the forgotten-borrow result (measured
    by the roles study's runs only); then each arm minus OPD on the borrow and overall, and minus
    GRPO overall. The verdicts are docs/results.md's ("Where must the verifier act?",
    roles_report.family_verdicts): per reference, every arm x (avg and each skill) is one family,
    Holm-corrected, so the text here is the text there."""
    m, r = st["worlds_main"], st[roles_report.NAME]
    rows = {**{k: m.seeds(world, k) for k in roles_report.BASELINES},
            **{k: r.seeds(world, k) for k in roles_report.ARMS}}
    vs_opd, vs_grpo = roles_report.family_verdicts(rows, "opd"), roles_report.family_verdicts(rows, "grpo")
    start = st.get("roles_start", {}).get(world, {})
    lines = [f"**{WORLDS[world]}: where the verifier acts, and what each place kept** (worlds_main and "
             f"{roles_report.NAME}, paired by seed)", "",
             "| method | where the verifier acts | seeds | avg@8 | carry | borrow | forgot borrow | borrow - OPD | "
             "avg - OPD | avg - GRPO |", "|---|---|---|---|---|---|---|---|---|---|"]
    for who in ("teacher", "student"):
        if who in start:
            p = start[who]
            lines.append(f"| {who} at the start | | | {100 * p['avg']:.1f} | {100 * p['per_skill']['carry']:.1f} | "
                         f"{100 * p['per_skill']['borrow']:.1f} | {100 * p.get('slip', {}).get('borrow', float('nan')):.1f}"
                         " | | | |")
    for k, (label, where) in {**roles_report.BASELINES, **roles_report.ARMS}.items():
        runs = rows.get(k) or {}
        if not runs:
            continue
        vals = {c: [_field(x, c) for x in runs.values()] for c in ("avg", "carry", "borrow", "slip_borrow")}
        said = [vs_opd[(k, "borrow")][0], vs_opd[(k, "avg")][0], vs_grpo[(k, "avg")][0]] \
            if (k, "avg") in vs_opd else ["-", "-", "-"]
        lines.append(f"| {label} | {where} | {_seeds(runs)} | " + " | ".join(_pct(vals[c]) for c in vals)
                     + " | " + " | ".join(said) + " |")
    lines += ["", f"Differences: mean ± uncorrected 95% interval, then the verdict after Holm's correction over "
              f"the {len(vs_opd)} differences of each reference (every arm, avg@8 and each skill), as in "
              "docs/results.md. *forgot borrow*: of the sampled steps that need a borrow, the share whose result "
              "is the forgotten-borrow one (the worlds study's runs predate this measure: -)."]
    if r.missing:
        lines += ["", f"Not finished yet: {len(r.missing)} of {r.planned} planned runs of {roles_report.NAME}."]
    return lines + [""]


def _field(summary: dict, key: str) -> float:
    """avg, a skill or slip_borrow / slip_carry (the final evaluation's error adoption) of a summary."""
    if key.startswith("slip_"):
        return summary.get("final", {}).get(f"eval_{key}", float("nan"))
    return summary["per_skill"][key]["avg"] if key in SKILLS else summary[key]


def evidence_rows(st: dict, world: str = "a2c", methods=EVIDENCE_METHODS) -> list[str]:
    """Per method on `world`, pooled over each run's training steps (gate.gate_evidence): of the
    positions where the teacher's top token is wrong, the share whose push the gate zeroed, shrank,
    left as OPD's or amplified; of those where it is right, the share it zeroed (a push there may
    still be against the correct token, so this is not a cost: docs/results.md); the share of
    tokens gated and of rollouts in groups with no evidence (all rewards equal)."""
    m = st["worlds_main"]
    keys = ("wrong_zeroed", "wrong_shrunk", "wrong_unchanged", "wrong_amplified", "right_zeroed", "frac_gated",
            "frac_rollouts_no_evidence")
    lines = [f"**{WORLDS[world]}: what each gate did where the teacher's top token is wrong** (worlds_main; top "
             f"token wrong at {_pct(m.values(world, 'opd', key='evidence.teacher_wrong'))} % of the known positions "
             "under OPD)", "",
             "| method | seeds | top wrong: zeroed | top wrong: shrunk | top wrong: as OPD | top wrong: amplified | "
             "top right: zeroed | tokens gated | no-evidence rollouts |", "|---|---|---|---|---|---|---|---|---|"]
    for k in methods:
        lines.append(f"| {METHODS[k]} | {_seeds(m.seeds(world, k))} | "
                     + " | ".join(_pct(m.values(world, k, key=f"evidence.{x}")) for x in keys) + " |")
    return lines + [""]


def threshold_rows(st: dict, evidence: bool = False) -> list[str]:
    """The a2c_thresholds cells that have summaries of gate only on A2 complementary error
    (lambda_e x lambda_i x a1_mode; summaries of another world or method are left out): final
    avg@8, carry, borrow, and minus the main table's OPD and GRPO on the same seeds (avg@8 and
    borrow; each column of differences is one family, corrected by Holm's method); with
    `evidence`, instead of the differences, the pushes zeroed and shrunk where the teacher's top
    token is wrong, those zeroed where it is right, and the no-evidence rollouts.
    Planned cells without a summary yet are named below the table."""
    t, m = st["a2c_thresholds"], st["worlds_main"]
    opd, grpo = m.seeds("a2c", "opd"), m.seeds("a2c", "grpo")
    cells = {c: {k: x for k, x in runs.items() if x.get("setting") == "a2c" and x.get("method") == "gate_only"}
             for c, runs in t.cells.items()}                      # the study's world and method only
    t = Runs(t.name, {c: runs for c, runs in cells.items() if runs}, t.planned, t.missing)
    head = "| lambda_e | lambda_i | a1_mode | seeds | avg@8 | carry | borrow | "
    columns = {"- OPD": (opd, "avg"), "borrow - OPD": (opd, "borrow"), "- GRPO": (grpo, "avg")}
    said = {name: family_said({cell: diff(runs, ref, key) for cell, runs in t.cells.items()})
            for name, (ref, key) in columns.items()}
    if evidence:
        head += "top wrong: zeroed | top wrong: shrunk | top right: zeroed | no-evidence rollouts |"
    else:
        head += "- OPD | borrow - OPD | - GRPO |"
    lines = ["**A2 complementary error: the gate's thresholds** (a2c_thresholds, gate only; OPD and GRPO are the "
             "main table's, paired by seed)", "", head, "|" + "---|" * (head.count(" | ") + 1)]
    for cell, runs in sorted(t.cells.items()):
        row = f"| {' | '.join(cell)} | {_seeds(runs)} | {_pct(t.values(*cell))} | " \
              f"{_pct(t.values(*cell, key='carry'))} | {_pct(t.values(*cell, key='borrow'))} | "
        if evidence:
            row += " | ".join(_pct(t.values(*cell, key=f"evidence.{x}"))
                              for x in ("wrong_zeroed", "wrong_shrunk", "right_zeroed", "frac_rollouts_no_evidence")) + " |"
        else:
            row += " | ".join(said[name][cell] for name in columns) + " |"
        lines.append(row)
    if t.missing:
        lines += ["", f"Not finished yet: {len(t.missing)} of {t.planned} planned runs ({', '.join(t.missing[:4])}"
                  + (", ..." if len(t.missing) > 4 else "") + ")."]
    return lines + [""]


def pts_rows(st: dict) -> tuple[list[str], list[str]]:
    """Phased teacher sampling on A1 graded (pts_a1g) beside the main table's OPD: final avg@8
    per setting, minus the start and minus OPD, paired by seed (the settings minus OPD: one
    family). Returns (lines, the settings that rescued the student by the report's rule,
    worlds_report.pts_rescued: the final avg@8 interval lies above the start *and* the setting is
    higher than OPD after Holm's correction). With no pts_a1g summary yet, the lines say so."""
    p, m = st["pts_a1g"], st["worlds_main"]
    opd = m.seeds("a1g", "opd")
    begin = st["start"]["a1g"]["student"]["avg"]
    lines = [f"**A1 graded: phased teacher sampling** (pts_a1g, PTS only; the student starts at {100 * begin:.1f})", "",
             "| setting | seeds | avg@8 | - start | - OPD (paired) | rescued? |", "|---|---|---|---|---|---|",
             f"| OPD | {_seeds(opd)} | {_pct(m.values('a1g', 'opd'))} | "
             f"{_pct([v - begin for v in m.values('a1g', 'opd')])} | - | - |"]
    said = family_said({name: diff(runs, opd) for (name,), runs in p.cells.items()})
    ok = pts_rescued(st, begin)
    for (name,), runs in p.cells.items():
        avg = [s["avg"] for s in runs.values()]
        lines.append(f"| {name} | {_seeds(runs)} | {_pct(avg)} | {_pct([v - begin for v in avg])} | "
                     f"{said[name]} | {'yes' if ok[name] else 'no'} |")
    rescued = [name for name in ok if ok[name]]
    if not p.cells:
        lines += ["", f"**The study has not reached pts_a1g yet** ({p.planned} runs planned, none finished in this "
                  "checkout's results/runs/pts_a1g): only OPD's row can be shown."]
    return lines + [""], rescued


def difference_rows(runs: Runs, axes: list[str], refs: dict, keys=("avg", "carry", "borrow")) -> list[str]:
    """One row per cell of `runs` (levels of `axes`, in order): its seeds, then for each reference
    (name -> seed -> summary) and each key ('avg' or a skill) the cell minus the reference,
    paired by seed, in points with its verdict; every difference of the table is one family,
    corrected by Holm's method (the line under the table says so)."""
    head = list(axes) + ["seeds"] + [f"{k} - {name}" for name in refs for k in keys]
    said = family_said({(cell, name, k): diff(got, ref, k) for cell, got in runs.cells.items()
                        for name, ref in refs.items() for k in keys})
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, got in runs.cells.items():
        lines.append("| " + " | ".join([*cell, _seeds(got)] + [said[(cell, name, k)] for name in refs for k in keys]) + " |")
    return lines + ["", f"Differences: mean ± uncorrected 95% interval; the verdict after Holm's correction over the "
                    f"{len(said)} differences of this table."]


def heatmap_cells(runs: Runs, axes: list[str], key: str = "avg") -> list[dict]:
    """The cells of `runs` as viz.plot_sweep_heatmap takes them: each axis's level, and the mean,
    half-width of the 95% interval and number of seeds of `key`."""
    out = []
    for cell, got in runs.cells.items():
        mean, half = mean_ci(runs.values(*cell, key=key))
        out.append({**dict(zip(axes, cell)), "mean": mean, "half": half, "n": len(got)})
    return out


def sweep_runs(out) -> Runs:
    """A sweep folder's finished summaries (study/sweep.py) as Runs: cell (its levels, in axis
    order) -> seed -> summary, so that `diff` and the readouts above work on a notebook's own sweep."""
    from .sweep_report import _cells, load_sweep

    definition, summaries, _ = load_sweep(out)
    runs = Runs(Path(out).name, planned=len(definition["runs"]))
    for levels, cell_runs in _cells(definition):
        for r in cell_runs:
            if r["name"] in summaries:
                runs.cells.setdefault(levels, {})[r["seed"]] = summaries[r["name"]]
            else:
                runs.missing.append(r["name"])
    return runs


def mix_rows(results_dir) -> list[str]:
    """Notebook 03: the mixing study's arms at 200 and 1000 steps, with the seeds in so far, and its
    never-worse table once every run is in (docs/results.md, "Never worse than the better of OPD
    and GRPO?"; the same generator, study/mix_report.py)."""
    from .plan import STUDY_DIR

    if not (STUDY_DIR / f"{mix_report.NAME}.yaml").is_file():
        return ["The mixing study's file is not in this checkout."]
    return mix_report.study_tables(load_runs(mix_report.NAME, results_dir))


def smol_rows(results_dir) -> list[str]:
    """Notebook 05 with SIZE = "smol": the planted SmolLM2 world at the start and the smol study's
    rows (docs/results.md, "On a pretrained model"), with the seeds in so far; the study's verdicts
    only once every run is in. Says so, instead of refusing, while the study has not started."""
    folder = Path(results_dir) / smol_report.NAME
    start = json.loads((folder / "start.json").read_text()) if (folder / "start.json").is_file() else {}
    from .plan import STUDY_DIR

    runs = load_runs(smol_report.NAME, results_dir) if (STUDY_DIR / f"{smol_report.NAME}.yaml").is_file() else None
    return smol_report.start_lines(start) + smol_report.study_lines(runs, start)


def show(lines: list[str]) -> None:
    """Display markdown lines as Markdown in a notebook (IPython), else print them."""
    text = "\n".join(lines)
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    display(Markdown(text))
