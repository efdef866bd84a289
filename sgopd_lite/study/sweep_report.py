"""`python -m sgopd_lite sweep-report DIR [--baseline key=value ...]`: the table of a sweep.

One row per cell (study/sweep.py): final avg@n and pass@n over its seeds as mean ± half-width
of the 95% Student-t interval (`stats.mean_ci`, in points), the per-skill avg@n (carry, borrow,
both, none), and, with `--baseline`, each cell minus its baseline cell, paired by seed, with a
verdict. The verdicts of one column of differences (every cell minus its baseline, for avg@n or
for pass@n) are one family, corrected together by Holm's method (`stats.family_said`: the mean,
its uncorrected 95% interval, the adjusted p-value, then higher / lower / no clear difference);
the line under the table says so. The table is printed and written
to DIR/report.md; a grid of exactly two axes (besides seed) also gets DIR/heatmap.png
(`viz.plot_sweep_heatmap`).

The baseline names levels of some axes (`gate.lambda_i=1`): each cell is compared with the cell
that has those levels on the named axes and its own levels on the others, so in a lambda_i x
a1_mode grid `--baseline gate.lambda_i=1` compares within each a1_mode. Naming every axis picks
one cell for all.

A partial sweep is reported, and says so on its first lines: how many runs are missing, which
failed (their errors in DIR/failed/). Cells show how many seeds they hold.

May import: study.sweep, study.stats, config, viz (inside functions).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import ConfigError
from ..data import SKILLS
from .stats import _cell, family_said, mean_ci, paired
from .sweep import SEED, label


def load_sweep(out) -> tuple[dict, dict, list[str]]:
    """(DIR/sweep.json, run name -> summary of the finished runs, names of failed runs)."""
    out = Path(out)
    path = out / "sweep.json"
    if not path.is_file():
        raise ConfigError(f"{out} holds no sweep (no sweep.json): run `python -m sgopd_lite sweep --out {out} ...`")
    definition = json.loads(path.read_text())
    summaries = {}
    for run in definition["runs"]:
        try:
            s = json.loads((out / f"{run['name']}.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(s.get("avg"), (int, float)):
            summaries[run["name"]] = s
    failed = [r["name"] for r in definition["runs"]
              if r["name"] not in summaries and (out / "failed" / f"{r['name']}.json").is_file()]
    return definition, summaries, failed


def _cells(definition: dict) -> list[tuple[tuple[str, ...], list[dict]]]:
    """[(the cell's levels in axis order, its runs)] in the sweep's order."""
    axes = [a for a in definition["axes"] if a != SEED]
    cells: dict[tuple, list] = {}
    for run in definition["runs"]:
        cells.setdefault(tuple(run["cell"].get(a, "") for a in axes), []).append(run)
    return list(cells.items())


def _baseline_of(definition: dict, baseline: list[str] | None):
    """{axis: level} the baseline fixes; ConfigError for an axis or level the sweep lacks."""
    if not baseline:
        return None
    axes = {a: levels for a, levels in definition["axes"].items() if a != SEED}
    fixed = {}
    for item in baseline:
        if "=" not in item:
            raise ConfigError(f"--baseline {item}: expected axis=level (e.g. gate.lambda_i=1)")
        key, text = (x.strip() for x in item.split("=", 1))
        if key not in axes:
            raise ConfigError(f"--baseline {item}: {key!r} is not an axis of this sweep ({sorted(axes)})")
        lab = text if text in axes[key] else label(text)
        if lab not in axes[key]:
            raise ConfigError(f"--baseline {item}: {key} has the levels {axes[key]}")
        fixed[key] = lab
    return fixed


def sweep_table(out, baseline: list[str] | None = None) -> tuple[list[str], list[dict], str]:
    """The lines of DIR/report.md, the per-cell numbers (for the heatmap) and the metric's name."""
    definition, summaries, failed = load_sweep(out)
    axes = [a for a in definition["axes"] if a != SEED]
    base = _baseline_of(definition, baseline)
    cells = _cells(definition)
    by_cell = {levels: {r["seed"]: summaries[r["name"]] for r in runs if r["name"] in summaries}
               for levels, runs in cells}
    ns = sorted({s["n"] for s in summaries.values()}) or ["n"]
    n = ns[0] if len(ns) == 1 else "n"
    skills = [k for k in SKILLS if any(k in s.get("per_skill", {}) for s in summaries.values())]

    total = len(definition["runs"])
    lines = [f"# Sweep {Path(out).name}", "",
             f"{len(cells)} cells x seeds {', '.join(definition['axes'].get(SEED, ['(one)']))}; "
             f"base config: {definition.get('config') or 'TrainConfig defaults'}; fixed: "
             f"{' '.join(definition.get('fixed', [])) or 'none'}.",
             "Cells: mean ± half-width of the 95% Student-t interval over seeds, in points (x100); "
             "± 0.0 with one seed (no interval).", ""]
    if len(summaries) < total:
        missing = [r["name"] for r in definition["runs"] if r["name"] not in summaries and r["name"] not in failed]
        lines += [f"**Incomplete: {len(summaries)} of {total} runs finished**"
                  + (f"; {len(failed)} failed ({', '.join(failed[:5])}; errors in failed/)" if failed else "")
                  + (f"; {len(missing)} not run yet" if missing else "") + ".", ""]
    head = axes + ["seeds", f"avg@{n}", f"pass@{n}"] + [f"avg@{n} {k}" for k in skills]
    if base:
        head += [f"avg@{n} - baseline (paired)", f"pass@{n} - baseline (paired)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    numbers, said = [], {}
    if base:                  # one family per metric: every cell minus its baseline cell
        refs = {levels: tuple(base.get(a, lv) for a, lv in zip(axes, levels)) for levels, _ in cells}
        said = {metric: family_said({levels: paired(by_cell[levels], by_cell.get(ref, {}), metric)
                                     for levels, ref in refs.items() if ref != levels and by_cell[levels]})
                for metric in ("avg", "pass")}
    for levels, runs in cells:
        got = by_cell[levels]
        row = list(levels) + [f"{len(got)}" + (f" of {len(runs)}" if len(got) < len(runs) else "")]
        if not got:
            lines.append("| " + " | ".join(row + ["-"] * (len(head) - len(row))) + " |")
            continue
        vals = [s["avg"] for s in got.values()]
        row += [_cell(vals), _cell([s["pass"] for s in got.values()])]
        for k in skills:
            v = [s["per_skill"][k]["avg"] for s in got.values() if k in s.get("per_skill", {})]
            row.append(_cell(v) if v else "-")
        if base:
            ref = tuple(base.get(a, lv) for a, lv in zip(axes, levels))
            if ref == levels:
                row += ["baseline", "baseline"]
            else:
                row += [said["avg"][levels], said["pass"][levels]]
        m, h = mean_ci(vals)
        numbers.append({**dict(zip(axes, levels)), "mean": m, "half": h, "n": len(vals)})
        lines.append("| " + " | ".join(row) + " |")
    if base:
        lines += ["", "Differences: each cell minus its baseline cell ("
                  + ", ".join(f"{a}={v}" for a, v in base.items())
                  + (", the other axes as in the row" if len(base) < len(axes) else "")
                  + "), paired by seed, in points: mean ± its uncorrected 95% interval, then the p-value after "
                  f"Holm's correction and its verdict. Family: one column of differences ({len(said['avg'])} "
                  "comparisons for each metric), corrected together."]
    return lines, numbers, f"avg@{n}"


def write_sweep_report(out, baseline: list[str] | None = None) -> tuple[Path, str]:
    """DIR/report.md (and DIR/heatmap.png for a two-axis grid); returns (path, the table text)."""
    out = Path(out)
    lines, numbers, metric = sweep_table(out, baseline)
    definition = json.loads((out / "sweep.json").read_text())
    axes = [a for a in definition["axes"] if a != SEED]
    if len(axes) == 2 and numbers:
        from .. import viz

        fig = viz.plot_sweep_heatmap(numbers, x=axes[0], y=axes[1], metric=metric)
        fig.savefig(out / "heatmap.png", dpi=100)
        viz._plt().close(fig)
        lines += ["", "![heatmap](heatmap.png)"]
    text = "\n".join(lines) + "\n"
    path = out / "report.md"
    path.write_text(text)
    return path, text

