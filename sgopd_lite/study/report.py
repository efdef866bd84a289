"""The first study's report: `python -m sgopd_lite report` turns the run summaries of the plan
(study/plan.py, committed in results/runs/) into docs/results_first_study.md (the worlds where
the gate had nothing to do; the worlds study is docs/results.md, study/worlds_report.py), with its tables, 95% intervals
and figures (drawn by viz, one figure per function). It refuses while any run is missing or
partial (`ReportError`): a table with holes would read as a result.

Every comparison is paired by seed (`Study.paired`); every cell is a mean with the half-width of
its Student-t interval (`mean_ci`).

May import: study.plan, study.stats, config, viz (inside functions). Nothing imports it but the command line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .stats import _T975, _cell, _said, _verdict, mean_ci, paired  # noqa: F401 (re-exported)
from .plan import (DOCS_DIR, EVAL_N, EVAL_PROBLEMS, GRID_LAMBDA_E, GRID_LAMBDA_I, GRID_SEEDS, GRID_SETTING,
                   METHOD_NAMES, METHODS, REPO_DIR, RESULTS_DIR, SEEDS, SETTING_NAMES, SETTINGS, SMOL_CONFIG,
                   SMOL_METHODS, STEPS, RunSpec, plan, smol_plan)


class ReportError(RuntimeError):
    """The runs on disk do not cover the plan; the message lists what is missing."""


def _read_summary(path: Path, steps: int | None) -> tuple[dict | None, str | None]:
    """(summary, None) or (None, why it is unusable) for one summary file that exists."""
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return None, f"{path.name} ({err.msg})"
    if not all(isinstance(s.get(k), (int, float)) and math.isfinite(s[k]) for k in ("avg", "pass")):
        return None, f"{path.name} (no finite avg/pass)"
    if steps is not None and s.get("steps") != steps:
        return None, f"{path.name} (ran {s.get('steps')} steps, the plan says {steps})"
    return s, None


def load_summaries(runs: list[RunSpec], results_dir: Path = RESULTS_DIR, steps: int | None = STEPS
                   ) -> dict[str, dict]:
    """The summary of every run of `runs`; raises ReportError naming what is missing or broken
    (including a run of another protocol: `steps` other than the plan's)."""
    missing, broken, out = [], [], {}
    for spec in runs:
        path = spec.summary_path(results_dir)
        if not path.is_file():
            missing.append(spec.name)
            continue
        s, why = _read_summary(path, steps)
        if why:
            broken.append(why)
        else:
            out[spec.name] = s
    if missing or broken:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(runs)} runs missing (first: {', '.join(missing[:5])})")
        if broken:
            parts.append(f"{len(broken)} unreadable: {', '.join(broken[:5])}")
        raise ReportError("cannot write the report: " + "; ".join(parts)
                          + f". Run `make reproduce` (summaries in {results_dir}).")
    return out


def _curves(summaries: list[dict], key: str):
    """Per-seed lists of {step, key} dicts, the shape `viz.plot_learning_curves` takes."""
    return [[{"step": s, key: v} for s, v in x["curves"].get(key, [])] for x in summaries]


# --------------------------------------------------------------------------------------------
# The study on disk
# --------------------------------------------------------------------------------------------

@dataclass
class Study:
    """Every summary the report reads, and the paired comparisons it makes of them."""

    summ: dict              # run name -> summary, the tiny plan
    smol: dict              # run name -> summary, the smol runs
    start: dict             # setting -> {teacher, student} -> {avg, pass}
    smol_start: dict        # {eval_problems, n, teacher, student}
    smol_cfg: object        # the smol runs' TrainConfig (configs/smol_cpu.yaml)
    main: list              # RunSpecs of the main table
    grid: list              # RunSpecs of the gate ablation
    seeds: int
    grid_seeds: int

    def by_seed(self, setting: str, method: str) -> dict[int, dict]:
        """seed -> summary, for one cell of the main table (in the plan's order)."""
        return {r.seed: self.summ[r.name] for r in self.main if r.setting == setting and r.method == method}

    def runs(self, setting: str, method: str) -> list[dict]:
        return list(self.by_seed(setting, method).values())

    def values(self, setting: str, method: str, field: str = "avg") -> list[float]:
        return [x[field] for x in self.runs(setting, method)]

    def paired(self, setting: str, a: str, b: str, field: str = "avg") -> list[float]:
        """a - b per seed (the seeds both have): the paired differences behind every comparison."""
        return paired(self.by_seed(setting, a), self.by_seed(setting, b), field)


def load_study(results_dir: Path = RESULTS_DIR, seeds: int = SEEDS, grid_seeds: int = GRID_SEEDS,
               steps: int | None = STEPS) -> Study:
    """All summaries of the plan and the smol runs, and both start-point files (ReportError if any
    is missing)."""
    from ..config import load_config

    runs = plan(seeds, grid_seeds)
    summ = load_summaries(runs, results_dir, steps)
    smol_cfg = load_config(SMOL_CONFIG)
    smol = load_summaries(smol_plan(), results_dir, smol_cfg.steps)
    start_path, smol_start_path = Path(results_dir) / "start.json", Path(results_dir) / "smol" / "start.json"
    for path in (start_path, smol_start_path):
        if not path.is_file():
            raise ReportError(f"cannot write the report: {path} is missing (run `make reproduce`)")
    return Study(summ=summ, smol=smol, start=json.loads(start_path.read_text()),
                 smol_start=json.loads(smol_start_path.read_text()), smol_cfg=smol_cfg,
                 main=[r for r in runs if r.group == "main"], grid=[r for r in runs if r.group == "grid"],
                 seeds=seeds, grid_seeds=grid_seeds)


# --------------------------------------------------------------------------------------------
# The sections of docs/results_first_study.md, each a list of lines
# --------------------------------------------------------------------------------------------

def header_section(st: Study) -> list[str]:
    """Title, how the runs were made, where and when."""
    all_s = list(st.summ.values())
    machines = sorted({s["machine"] for s in all_s})
    hours = sum(s["seconds"] for s in all_s) / 3600
    dates = sorted(s["finished"] for s in all_s)
    steps = "/".join(str(v) for v in sorted({s["steps"] for s in all_s}))
    lrs = "/".join(f"{v:g}" for v in sorted({s.get("lr", float("nan")) for s in all_s}))
    losses = "/".join(sorted({s.get("loss_type", "?") for s in all_s}))
    return ["# Reproduction report: does the sign gate help on the tiny world?", "",
            "Generated by `python -m sgopd_lite report` from the run summaries in `results/runs/`, which "
            "`make reproduce` writes (it skips finished runs, so it resumes anywhere). Do not edit by hand.", "",
            f"* Runs: {len(st.main)} in the main table ({len(SETTINGS)} settings x {len(METHODS)} methods x "
            f"{st.seeds} seeds) and {len(st.grid)} in the gate ablation ({len(GRID_LAMBDA_E)} x "
            f"{len(GRID_LAMBDA_I)} x {st.grid_seeds} seeds).",
            f"* Each run: {steps} steps x 16 prompts x 8 rollouts, {losses} loss, lr {lrs}, then the "
            f"held-out split ({EVAL_PROBLEMS} problems), n = {EVAL_N} samples at temperature 1.0.",
            f"* Machine(s): {'; '.join(machines)}. Compute: {hours:.1f} CPU-process hours in all (about "
            f"{hours / 2:.1f} hours of wall time with `make reproduce`'s 2 workers), "
            f"runs finished between {dates[0]} and {dates[-1]}.",
            "* Cells: mean ± half-width of the 95% Student-t interval over seeds, in points (x100).", ""]


def start_section(st: Study) -> list[str]:
    """Teacher and starting student of each setting."""
    lines = ["## Starting points (seed 0)", "", f"| setting | teacher avg@{EVAL_N} | student avg@{EVAL_N} "
             f"| student pass@{EVAL_N} |", "|---|---|---|---|"]
    for s in SETTINGS:
        lines.append(f"| {SETTING_NAMES[s]} | {100 * st.start[s]['teacher']['avg']:.1f} | "
                     f"{100 * st.start[s]['student']['avg']:.1f} | {100 * st.start[s]['student']['pass']:.1f} |")
    return lines


def final_tables_section(st: Study) -> list[str]:
    """Final avg@n and pass@n of every method in every setting."""
    lines = []
    for field, label in (("avg", f"avg@{EVAL_N} (per sample)"), ("pass", f"pass@{EVAL_N} (per question)")):
        lines += ["", f"## Final {label}", "",
                  "| method | " + " | ".join(SETTING_NAMES[s] for s in SETTINGS) + " |",
                  "|---|" + "---|" * len(SETTINGS)]
        for m in METHODS:
            lines.append(f"| {METHOD_NAMES[m]} | "
                         + " | ".join(_cell(st.values(s, m, field)) for s in SETTINGS) + " |")
    return lines


def difference_section(st: Study) -> list[str]:
    """Every method minus plain OPD, paired by seed, with a verdict per cell."""
    lines = ["", "## Difference to plain OPD (paired by seed)", "",
             "Each cell: mean of (method - OPD) over seeds with its 95% interval, in points; the word says "
             "whether the interval excludes zero.", "",
             "| method | metric | " + " | ".join(SETTING_NAMES[s] for s in SETTINGS) + " |",
             "|---|---|" + "---|" * len(SETTINGS)]
    for m in METHODS[1:]:
        for field in ("avg", "pass"):
            cells = [f"{_cell(d)} ({_verdict(d)})" for d in (st.paired(s, m, "opd", field) for s in SETTINGS)]
            lines.append(f"| {METHOD_NAMES[m]} | {field}@{EVAL_N} | " + " | ".join(cells) + " |")
    return lines


def ablation_section(st: Study, fig_dir: Path) -> list[str]:
    """The lambda_e x lambda_i grid on the hardest setting, as a table and a heatmap."""
    from .. import viz

    rows = [{"lambda_e": r.lambda_e, "lambda_i": r.lambda_i,
             "value": st.summ[r.name]["avg"], "metric": f"avg@{EVAL_N}"} for r in st.grid]
    opd_both = float(np.mean(st.values(GRID_SETTING, "opd")))
    fig = viz.plot_ablation_heatmap(rows, facet=None, baseline=opd_both,
                                    title=f"SG-OPD, {SETTING_NAMES[GRID_SETTING]}: final avg@{EVAL_N}")
    fig.savefig(fig_dir / "ablation_heatmap.png", dpi=110)
    viz._plt().close(fig)
    lines = ["", f"## Gate ablation (SG-OPD, {SETTING_NAMES[GRID_SETTING]}, {st.grid_seeds} seeds)", "",
             f"Final avg@{EVAL_N} in points; rows lambda_i, columns lambda_e. Plain OPD in this setting: "
             f"{100 * opd_both:.1f}. lambda_e = lambda_i = 1 is plain OPD's gate with phased teacher sampling.", "",
             "| lambda_i \\ lambda_e | " + " | ".join(f"{v:g}" for v in GRID_LAMBDA_E) + " |",
             "|---|" + "---|" * len(GRID_LAMBDA_E)]
    for li in GRID_LAMBDA_I:
        lines.append(f"| {li:g} | " + " | ".join(
            _cell([x["value"] for x in rows if x["lambda_e"] == le and x["lambda_i"] == li])
            for le in GRID_LAMBDA_E) + " |")
    return lines + ["", "![ablation heatmap](figures/ablation_heatmap.png)"]


def smol_section(st: Study) -> list[str]:
    """OPD vs SG-OPD with the SmolLM2 pair on the CPU (one seed each)."""
    sn, cfg, start = st.smol_start["n"], st.smol_cfg, st.smol_start
    smol_runs = [st.smol[r.name] for r in smol_plan()]
    lines = ["", "## A pretrained pair: SmolLM2 on the CPU", "",
             f"`python -m sgopd_lite reproduce --smol` ({SMOL_CONFIG.relative_to(REPO_DIR)}): teacher = "
             "SmolLM2-135M-Instruct after its cached fine-tune on clean solutions, student = SmolLM2-135M-Instruct "
             "after its own cached fine-tune on sloppy ones (90% forget every carry and borrow; worlds/smol.py), "
             f"LoRA r = 16; {cfg.steps} steps x "
             f"{cfg.prompts_per_step} prompts x {cfg.group_size} rollouts, {cfg.loss_type} loss, "
             f"lr {cfg.lr:g}, phased teacher sampling k1 = {cfg.pts.k1}, k2 = {cfg.pts.k2} for SG-OPD; "
             f"held-out: the first {start['eval_problems']} problems, n = {sn}. "
             f"Machine: {smol_runs[0]['machine']}.", "",
             f"| model | avg@{sn} | pass@{sn} | run time |", "|---|---|---|---|",
             f"| teacher | {100 * start['teacher']['avg']:.1f} | {100 * start['teacher']['pass']:.1f} | |",
             f"| student at the start | {100 * start['student']['avg']:.1f} | "
             f"{100 * start['student']['pass']:.1f} | |"]
    for r in smol_plan():
        x = st.smol[r.name]
        lines.append(f"| {METHOD_NAMES[r.method]}, seed {r.seed} | {100 * x['avg']:.1f} | {100 * x['pass']:.1f} | "
                     f"{x['seconds'] / 60:.1f} min |")
    return lines + ["", f"{len(smol_runs) // len(SMOL_METHODS)} seed per method: no interval can be given, so "
                    "this table shows that the method runs on a pretrained pair on a CPU, not that one method beats "
                    "the other. Run times are wall-clock, training plus the final evaluation, and include whatever "
                    "else the machine ran at the time (other studies' workers, for example)."]


def curves_section(st: Study, fig_dir: Path) -> list[str]:
    """Training reward and KL curves per setting, and SG-OPD's gate classes over training."""
    from .. import viz

    plt = viz._plt()
    for key, title in (("reward_mean", "training reward"), ("kl_k1", "KL(student || teacher), k1")):
        panels = {SETTING_NAMES[s]: {METHOD_NAMES[m]: _curves(st.runs(s, m), key) for m in METHODS}
                  for s in SETTINGS}
        fig = viz.plot_learning_curve_panels(panels, key, smooth=4,
                                             title=f"{title}: mean over {st.seeds} seeds, band = min-max")
        fig.savefig(fig_dir / f"curves_{key}.png", dpi=100)
        plt.close(fig)
    fig = viz.plot_gate_fraction_panels({SETTING_NAMES[s]: [x["curves"] for x in st.runs(s, "sgopd")]
                                         for s in SETTINGS},
                                        title=f"SG-OPD gate classes over training (mean over {st.seeds} seeds)")
    fig.savefig(fig_dir / "gate_fractions.png", dpi=100)
    plt.close(fig)
    return ["", "## Curves", "", "![training reward](figures/curves_reward_mean.png)", "",
            "![KL](figures/curves_kl_k1.png)", "", "![gate fractions](figures/gate_fractions.png)"]


def _where(st: Study, a: str, b: str, verdict: str) -> str:
    """The settings where a - b (paired, avg) has this verdict, or 'no setting'."""
    return ", ".join(SETTING_NAMES[s] for s in SETTINGS if _verdict(st.paired(s, a, b)) == verdict) or "no setting"


def findings_section(st: Study) -> list[str]:
    """The plain statement, written from the numbers."""
    lines = ["", "## What was found", "",
             f"Paired by seed, 95% intervals, avg@{EVAL_N} points unless marked; \"where from\" splits SG-OPD "
             "into its two parts: the gate alone and phased teacher sampling (PTS) alone against OPD, and "
             "what the gate adds on top of PTS (SG-OPD - PTS only).", ""]
    for s in SETTINGS:
        lines.append(f"* **{SETTING_NAMES[s]}**: SG-OPD - OPD = {_said(st.paired(s, 'sgopd', 'opd'))}; "
                     f"pass@{EVAL_N} {_said(st.paired(s, 'sgopd', 'opd', 'pass'))}. Where from: gate only - OPD = "
                     f"{_said(st.paired(s, 'gate_only', 'opd'))}, PTS only - OPD = "
                     f"{_said(st.paired(s, 'pts_only', 'opd'))}, "
                     f"SG-OPD - PTS only = {_said(st.paired(s, 'sgopd', 'pts_only'))}.")
    fell = []
    for s in SETTINGS:
        (m, h) = mean_ci(st.values(s, "opd"))
        if m + h < st.start[s]["student"]["avg"]:
            fell.append(f"{SETTING_NAMES[s]} ({100 * st.start[s]['student']['avg']:.1f} -> {100 * m:.1f})")
    lines += ["", "* Plain OPD ends below its own starting student (start outside the interval of the final "
              f"avg@{EVAL_N}) in: {', '.join(fell) or 'no setting'}."]
    for label, a, b in (("The gate alone (gate only - OPD)", "gate_only", "opd"),
                        ("Phased teacher sampling alone (PTS only - OPD)", "pts_only", "opd"),
                        ("The gate on top of PTS (SG-OPD - PTS only)", "sgopd", "pts_only")):
        lines.append(f"* {label} is clearly ahead in: {_where(st, a, b, 'higher')}; clearly behind in: "
                     f"{_where(st, a, b, 'lower')}.")
    return lines + [
        f"* SG-OPD is clearly ahead of OPD (per sample) in: {_where(st, 'sgopd', 'opd', 'higher')}; "
        f"clearly behind in: {_where(st, 'sgopd', 'opd', 'lower')}; elsewhere the intervals include zero.", "",
        "For comparison (docs/method.md §10): the paper reports SG-OPD over OPD by +1.98 per-sample and +7.50 "
        "per-question points on average; an independent reproduction found 47.8 -> 47.5 (same-size Qwen3-4B) "
        "and 20.9 -> 21.5 (Qwen3-1.7B from a 4B teacher) avg@16. This tiny world is a teaching model with a "
        "deliberately planted failure of each assumption, not a replication of those benchmarks.", "",
        "Running it at paper scale on GPUs: `docs/gpu_plan.md` (QLoRA on one 16 GB GPU, a full run on 8)."]


def write_report(results_dir: Path = RESULTS_DIR, docs_dir: Path = DOCS_DIR, seeds: int = SEEDS,
                 grid_seeds: int = GRID_SEEDS, steps: int | None = STEPS) -> Path:
    """docs/results_first_study.md and docs/figures/*.png from the run summaries (ReportError if any is missing)."""
    st = load_study(results_dir, seeds, grid_seeds, steps)
    fig_dir = Path(docs_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines = (header_section(st) + start_section(st) + final_tables_section(st) + difference_section(st)
             + ablation_section(st, fig_dir) + smol_section(st) + curves_section(st, fig_dir)
             + findings_section(st))
    out = Path(docs_dir) / "results_first_study.md"
    out.write_text("\n".join(lines) + "\n")
    return out
