"""The worlds study's report: when does a verifier gate help? `python -m sgopd_lite report` turns
the committed summaries of the study files worlds_main, a2c_thresholds, a2c_confirm, stability
and pts_a1g (configs/studies/, results in results/runs/<study>/) into docs/results.md: the main
table with accuracy per skill, paired differences to OPD and to GRPO, what each gate did to the
tokens where the teacher is wrong, the threshold ablation, phased teacher sampling, the stability
claim, and the paper's numbers beside them. (The first study, on worlds where the gate had
nothing to do, is docs/results_first_study.md, written by study/report.py.)

It refuses while a run is missing (`ReportError`), unless asked for a partial report, which then
says on its first line how much is missing. Every comparison is paired by seed; every cell is a
mean with the half-width of its 95% Student-t interval (study/stats.py).

Two rules keep its conclusions no stronger than its numbers:
* Every verdict belongs to a stated family of comparisons, and the verdicts of a family are
  corrected together (Holm's method, stats.family_said); the uncorrected interval is printed
  beside each. The families: one world of the paired-difference tables (every method against
  OPD and against GRPO, 13 comparisons); the headline's 24 comparisons of the 3 gates with OPD
  and with GRPO in the 4 worlds (`gate_wins`); one column of the threshold table; the
  comparisons of the fresh-seed table; the 3 phased-teacher-sampling settings against OPD; the
  2 worlds of the stability table.
* A method or cell named as the best of several is chosen on the same seeds that measured it,
  so its own numbers overstate it (the winner's curse): the report says so and gives it a
  verdict only from runs on fresh seeds (a2c_confirm, for the threshold cell); the main table
  has no fresh seeds, so its best method per world gets none.

May import: study.plan, study.sweep, study.stats, the later sections' generators (study.unseen,
horizon_report, roles_report, mix_report, smol_report), data, viz (the README's figure, only when
matplotlib is present). Imported by the command line and by study/measured.py (the notebooks'
readouts).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data import SKILLS
from .plan import DOCS_DIR, RESULTS_DIR, study
from .horizon_report import NAME as HORIZON_STUDY, horizon_section   # the same at 1000 steps
from .roles_report import EVIDENCE_STUDY, NAME as ROLES, PREFIX_STUDY, roles_section   # "Where must the verifier act?"
from .stats import ALPHA, _cell, family_said, family_verdicts, holm_p, mean_ci, paired, said_corrected
from .unseen import report_section as unseen_section   # seen and unseen problems of the starting models
from .mix_report import NAME as MIX_STUDY, PILOT as MIX_PILOT, mix_section   # never worse than OPD and GRPO?
from .smol_report import NAME as SMOL_STUDY, PILOT as SMOL_PILOT, QLORA as SMOL_QLORA, smol_section, tiny_values

STUDIES = ("worlds_main", "a2c_thresholds", "a2c_confirm", "stability", "pts_a1g")
WORLDS = {"hold": "both hold", "a1g": "A1 graded", "a2s": "A2 shared error", "a2c": "A2 complementary error"}
METHODS = {"opd": "OPD", "exopd": "ExOPD 1.25", "gate_only": "gate only (1.8 / 1.0)", "opdvr": "OPDVR's gate",
           "reversed_gate": "reversed gate", "grpo": "GRPO", "pts_only": "PTS only", "sgopd": "SG-OPD"}
GATES = ("gate_only", "opdvr", "sgopd")           # the gates under test (the reversed gate is a control)
EFFECTS = ("zeroed", "shrunk", "unchanged", "amplified", "flipped")


class ReportError(RuntimeError):
    """The runs on disk do not cover the study files; the message says what is missing."""


@dataclass
class Runs:
    """One study file's finished summaries: cell (its axis labels, in axis order) -> seed -> summary."""

    name: str
    cells: dict = field(default_factory=dict)
    planned: int = 0
    missing: list = field(default_factory=list)

    def seeds(self, *cell) -> dict[int, dict]:
        return self.cells.get(tuple(cell), {})

    def values(self, *cell, key: str = "avg") -> list[float]:
        return [_field(s, key) for s in self.seeds(*cell).values()]


def _field(summary: dict, key: str) -> float:
    """'avg', 'pass', a skill name (its avg@n) or 'evidence.<name>' of a summary."""
    if key in SKILLS:
        return summary["per_skill"][key]["avg"]
    if key == "evidence.frac_gated" and summary.get("method") == "exopd" and "frac_gated" in summary.get("evidence", {}):
        # ExOPD gives every token the same coefficient: no token differs from its base
        # coefficient (gate.sign_gate). Runs logged before that definition counted lambda_t != 1.
        return 0.0
    if key.startswith("evidence."):
        return summary.get("evidence", {}).get(key.split(".", 1)[1], float("nan"))
    return summary[key]


def load_runs(name: str, results_dir: Path = RESULTS_DIR) -> Runs:
    """The study file's plan, and which of its runs have a finished summary on disk."""
    sw = study(name, results_dir)
    runs = Runs(name)
    for run, _cfg in sw.plan():
        runs.planned += 1
        path = sw.summary_path(run)
        s = json.loads(path.read_text()) if path.is_file() else None
        if s is None or not isinstance(s.get("avg"), (int, float)):
            runs.missing.append(run.name)
            continue
        runs.cells.setdefault(tuple(v for _, v in run.cell), {})[run.seed] = s
    return runs


def diff(a: dict, b: dict, key: str = "avg") -> list[float]:
    """a - b per seed (the seeds both have), for any summary field."""
    return paired({k: {"v": _field(s, key)} for k, s in a.items()}, {k: {"v": _field(s, key)} for k, s in b.items()}, "v")


def _pct(values) -> str:
    """'12.3 ± 4.5' of shares in [0, 1], or '-' when there is nothing to average."""
    values = [v for v in values if v == v]
    return _cell(values) if values else "-"


# --------------------------------------------------------------------------------------------
# The sections, each a list of lines
# --------------------------------------------------------------------------------------------

def header_section(st: dict, start: dict, more: dict | None = None) -> list[str]:
    """The report's header; `more`: the studies of later sections (name -> Runs), listed and counted too."""
    done = sum(sum(len(c) for c in r.cells.values()) for r in st.values())
    planned = sum(r.planned for r in st.values())
    every = {**st, **(more or {})}
    summaries = [s for r in every.values() for c in r.cells.values() for s in c.values()]
    lines = ["# Results: when does a verifier gate help? (the tiny world, the worlds study)", ""]
    if done < planned:
        lines += [f"**Partial report: {done} of {planned} runs finished**; cells show the seeds finished so far "
                  "and the conclusions below may change. `python -m sgopd_lite sweep --study configs/studies/<name>.yaml` "
                  "resumes each study.", ""]
    lines += [
        "Generated by `python -m sgopd_lite report` from the run summaries in `results/runs/<study>/` "
        "(study files in `configs/studies/`); do not edit by hand. `make reproduce` re-runs the studies "
        "(it skips every run whose summary exists, so delete a study's summaries to run it again) and then "
        "this command. The first study, on worlds where the gate had nothing to do, is "
        "[results_first_study.md](results_first_study.md).", "",
        "* Studies: " + "; ".join(f"`{n}` {sum(len(c) for c in r.cells.values())} of {r.planned} runs"
                                  for n, r in every.items() if r.planned) + ".",
        "* Each run: 200 steps x 16 prompts x 8 rollouts, sampled loss, lr 0.0003, then the skill-balanced "
        "evaluation split (`eval_skills`: 64 problems each of carry, borrow, both, none; held out from the RL "
        "training prompts, not from the models' SFT data: next section), n = 8 samples at "
        "temperature 1" + (f"; `{HORIZON_STUDY}`: 1000 steps, that evaluation every 200." if HORIZON_STUDY in every
                           else "."),
        f"* Machine(s): {', '.join(sorted({s['machine'] for s in summaries}))}. Compute: "
        f"{sum(s['seconds'] for s in summaries) / 3600:.1f} CPU-process hours.",
        "* Cells: mean ± half-width of the 95% Student-t interval over seeds, in points (x100). A "
        "difference is paired by seed: its mean ± the half-width of its *uncorrected* 95% interval, then "
        "the p-value of the paired t-test after Holm's correction over the difference's family (each "
        "table says which comparisons form its family) and the verdict that gives: higher or lower when "
        f"the corrected p is under {ALPHA}. Within a family, the chance of calling any comparison higher "
        f"or lower when none differs is at most {ALPHA:.0%}.", "",
        "## The worlds at the start (seed 0, the same evaluation as the runs' final one)", "",
        "| world | who | avg@8 | " + " | ".join(SKILLS) + " |", "|---|---|---|" + "---|" * len(SKILLS)]
    for w, name in WORLDS.items():
        for who in ("teacher", "student"):
            p = start[w][who]
            lines.append(f"| {name} | {who} | {100 * p['avg']:.1f} | "
                         + " | ".join(f"{100 * p['per_skill'][s]:.1f}" for s in SKILLS) + " |")
    return lines + [""]


def main_table_section(st: dict) -> list[str]:
    m = st["worlds_main"]
    lines = ["## The main table: final avg@8 (per sample) and pass@8 (per question)", "",
             "| method | " + " | ".join(f"{n} avg@8 | pass@8" for n in WORLDS.values()) + " |",
             "|---|" + "---|---|" * len(WORLDS)]
    for k, name in METHODS.items():
        lines.append(f"| {name} | " + " | ".join(f"{_pct(m.values(w, k))} | {_pct(m.values(w, k, key='pass'))}"
                                                for w in WORLDS) + " |")
    if m.values("hold", "grpo") and m.values("hold", "grpo") == m.values("a2s", "grpo"):
        lines += ["", "GRPO never reads the teacher, and both hold and A2 shared error share their student, so "
                  "their GRPO runs are the same runs, seed for seed (a check that runs are reproducible)."]
    lines += ["", "### Accuracy per skill (avg@8)", ""]
    for w, wname in WORLDS.items():
        lines += [f"**{wname}**", "", "| method | seeds | " + " | ".join(SKILLS) + " |", "|---|---|" + "---|" * len(SKILLS)]
        for k, name in METHODS.items():
            lines.append(f"| {name} | {len(m.seeds(w, k))} | " + " | ".join(_pct(m.values(w, k, key=s)) for s in SKILLS) + " |")
        lines.append("")
    return lines


def differences_section(st: dict) -> list[str]:
    m = st["worlds_main"]
    lines = ["## Paired differences (avg@8 points)", "",
             "Family: one world, that is one column of both tables: every method against OPD and against "
             "GRPO, 13 distinct comparisons (OPD against GRPO is one comparison, shown in both tables), "
             "Holm-corrected together; ± is each difference's uncorrected 95% interval.", ""]
    said = {w: world_said(m, w) for w in WORLDS}
    for ref in ("opd", "grpo"):
        lines += [f"**Minus {METHODS[ref]}**", "", "| method | " + " | ".join(WORLDS.values()) + " |",
                  "|---|" + "---|" * len(WORLDS)]
        for k, name in METHODS.items():
            if k != ref:
                lines.append(f"| {name} | " + " | ".join(said[w][(k, ref)] for w in WORLDS) + " |")
        lines.append("")
    return lines


def world_family(m: Runs, world: str) -> dict:
    """(method, reference) -> the method minus OPD or GRPO in one world, paired by seed: one
    family, every method against both references, OPD against GRPO once ((grpo, opd))."""
    return {(k, ref): diff(m.seeds(world, k), m.seeds(world, ref))
            for ref in ("opd", "grpo") for k in METHODS if k != ref and (k, ref) != ("opd", "grpo")}


def world_said(m: Runs, world: str) -> dict:
    """world_family as text, corrected together, with (opd, grpo) added: the same comparison as
    (grpo, opd), turned round, with its p-value."""
    family = world_family(m, world)
    adjusted = holm_p(family)
    out = {key: said_corrected(d, adjusted[key]) for key, d in family.items()}
    out[("opd", "grpo")] = said_corrected(diff(m.seeds(world, "opd"), m.seeds(world, "grpo")), adjusted[("grpo", "opd")])
    return out


def _uncorrected(d: list[float]) -> str:
    """'+2.3 ± 1.5': a difference with its uncorrected interval and no verdict, or '-'."""
    if not d:
        return "-"
    mean, half = mean_ci(d)
    return f"{100 * mean:+.1f} ± {100 * half:.1f}" if mean == mean else "no data"


def evidence_section(st: dict) -> list[str]:
    m = st["worlds_main"]
    lines = ["## What each gate did where the teacher's top token is wrong (per-token evidence)", "",
             "At each response position up to the rollout's first mistake the tiny world knows the correct "
             "next token, and the sampled token *is* that correct token (the first mistake is the first "
             "position where it is not). The columns ask one question: where the teacher's most likely token "
             "is wrong (*top wrong*) or right (*top right*), what did the gate do to OPD's push a2 on the "
             "sampled token? Each row pools all training steps of a run (weighted by positions), then "
             "averages over seeds: the share of top-wrong positions whose push the gate zeroed, shrank, left "
             "as OPD's, amplified or flipped, and the share of top-right positions whose push it zeroed.", "",
             "These columns do not say whether a push helped or harmed. The teacher's top token decides the "
             "column, not the direction of its push on the sampled token: at a top-right position a2 can "
             "still be negative (the teacher gives the correct token less than the student does), and zeroing "
             "that push removes a push against a correct token, which helps. So *top right: zeroed* is not "
             "a cost of the gate; evidence by the direction of the push is a separate question.", "",
             "*Gated* (frac_gated): the share of tokens whose coefficient differs from the method's own base "
             "coefficient (the one a token without evidence gets), averaged over steps; OPD and ExOPD scale "
             "every token alike and have none. The committed ExOPD runs logged an earlier count (lambda_t != 1, "
             "every token for ExOPD's 1.25); under the definition above their share is 0 by construction, "
             "which is what the table shows. *No-evidence rollouts*: rollouts in groups whose rewards are all "
             "equal (a1 = 0 in group mode).", ""]
    for w, wname in WORLDS.items():
        share = _pct(m.values(w, "opd", key="evidence.teacher_wrong"))
        lines += [f"**{wname}** (teacher's top token wrong at {share} % of positions)", "",
                  "| method | " + " | ".join(f"top wrong: {e}" for e in EFFECTS)
                  + " | top right: zeroed | gated | no-evidence rollouts |",
                  "|---|" + "---|" * (len(EFFECTS) + 3)]
        for k in ("opd", "exopd", *GATES, "reversed_gate"):
            keys = [f"evidence.wrong_{e}" for e in EFFECTS] + ["evidence.right_zeroed", "evidence.frac_gated",
                                                                "evidence.frac_rollouts_no_evidence"]
            lines.append(f"| {METHODS[k]} | " + " | ".join(_pct(m.values(w, k, key=x)) for x in keys) + " |")
        lines.append("")
    return lines


def thresholds_section(st: dict) -> list[str]:
    t, m = st["a2c_thresholds"], st["worlds_main"]
    opd = m.seeds("a2c", "opd")
    grpo = m.seeds("a2c", "grpo")
    cells = sorted(t.cells.items())
    minus_opd = family_said({cell: diff(runs, opd) for cell, runs in cells})
    minus_grpo = family_said({cell: diff(runs, grpo) for cell, runs in cells})
    lines = ["## Thresholds where the gate acts (A2 complementary error, gate only)", "",
             "lambda_e x lambda_i x a1_mode, seeds 0-1 (2 seeds, a cut that "
             "configs/studies/a2c_thresholds.yaml fixed before the study ran). "
             "Differences are paired by seed with the main table's OPD and GRPO on the same world and seeds "
             "(lambda_e = lambda_i = 1 is OPD itself, run again here: identical runs, so no verdict). "
             "Family: one column of differences (the 12 cells against OPD, or against GRPO). With 2 seeds "
             "an interval is wide; this table screens, and its best cell was re-run on fresh seeds below.", "",
             "| lambda_e | lambda_i | a1_mode | seeds | avg@8 | carry | borrow | - OPD | - GRPO | top wrong: zeroed | top right: zeroed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell, runs in cells:
        lines.append(f"| {' | '.join(cell)} | {len(runs)} | {_pct([s['avg'] for s in runs.values()])} | "
                     f"{_pct(t.values(*cell, key='carry'))} | {_pct(t.values(*cell, key='borrow'))} | "
                     f"{minus_opd[cell]} | {minus_grpo[cell]} | "
                     f"{_pct(t.values(*cell, key='evidence.wrong_zeroed'))} | {_pct(t.values(*cell, key='evidence.right_zeroed'))} |")
    lines.append("")
    c = st["a2c_confirm"]
    if c.planned:
        said = confirm_said(c)
        lines += ["### The best cell on fresh seeds", "",
                  "The cell with the highest mean above, chosen on seeds 0-1, re-run on seeds 100 and up beside "
                  "OPD and GRPO (and with a dead zone tau), so that the choice is not judged on the seeds that made it. "
                  "Family: every difference of this table (each arm minus OPD and minus GRPO).", "",
                  "| arm | seeds | avg@8 | carry | borrow | - OPD | - GRPO |", "|---|---|---|---|---|---|---|"]
        for (arm,), runs in c.cells.items():
            lines.append(f"| {arm} | {len(runs)} | {_pct(c.values(arm))} | {_pct(c.values(arm, key='carry'))} | "
                         f"{_pct(c.values(arm, key='borrow'))} | {said[(arm, 'opd')]} | {said[(arm, 'grpo')]} |")
        lines.append("")
    return lines


def confirm_family(c: Runs) -> dict:
    """(arm, reference) -> the arm minus OPD or GRPO on the fresh seeds of a2c_confirm: one family,
    every difference of the fresh-seed table (an arm against itself is left empty)."""
    return {(arm, ref): (diff(runs, c.seeds(ref)) if arm != ref else [])
            for (arm,), runs in c.cells.items() for ref in ("opd", "grpo")}


def confirm_said(c: Runs) -> dict:
    """confirm_family as text, corrected together ('-' for an arm against itself)."""
    return family_said(confirm_family(c))


def pts_section(st: dict) -> list[str]:
    p, m = st["pts_a1g"], st["worlds_main"]
    opd = m.seeds("a1g", "opd")
    said = family_said({name: diff(runs, opd) for (name,), runs in p.cells.items()})
    lines = ["## Phased teacher sampling where it acts (A1 graded, PTS only)", "",
             "3 settings x seeds 0-2 (3 settings, a cut that configs/studies/pts_a1g.yaml fixed before "
             "the study ran); OPD is the main table's, paired by seed. Family: the 3 settings minus OPD.", "",
             "| setting | seeds | avg@8 | " + " | ".join(SKILLS) + " | - OPD |", "|---|---|---|" + "---|" * len(SKILLS) + "---|"]
    lines.append(f"| OPD | {len(opd)} | {_pct(m.values('a1g', 'opd'))} | "
                 + " | ".join(_pct(m.values("a1g", "opd", key=s)) for s in SKILLS) + " | - |")
    for (name,), runs in p.cells.items():
        lines.append(f"| {name} | {len(runs)} | {_pct(p.values(name))} | "
                     + " | ".join(_pct(p.values(name, key=s)) for s in SKILLS) + f" | {said[name]} |")
    return lines + ["", "Settings (configs/studies/pts_a1g.yaml): default w0 1, K1 50, K2 150, rho 0.25, M 4; "
                    "long w0 1, K1 100, K2 200, rho 0.5, M 4; flat w0 2, K1 = K2 = 200 (never phased out), rho 1, M 8.", ""]


def pts_rescued(st: dict, begin: float) -> dict:
    """setting -> whether phased teacher sampling rescued the A1-graded student: its final avg@8
    interval lies wholly above the start `begin` (one evaluation, seed 0), *and* it is higher
    than OPD after Holm's correction over the pts_a1g settings (the family of pts_section)."""
    p, opd = st["pts_a1g"], st["worlds_main"].seeds("a1g", "opd")
    verdicts = family_verdicts({name: diff(runs, opd) for (name,), runs in p.cells.items()})
    out = {}
    for (name,), runs in p.cells.items():
        mean, half = mean_ci([x["avg"] for x in runs.values()])
        out[name] = mean - half > begin and verdicts[name] == "higher"
    return out


def stability_family(s: Runs) -> dict:
    """world -> the gate at 1.8 / 1.0 minus ExOPD at 1.8, paired by seed: one family of 2."""
    return {w: diff(s.seeds(w, "gate18"), s.seeds(w, "exopd18")) for w in ("hold", "a2c")}


def _tail(summary: dict, key: str, last: int = 50, how=min) -> float:
    """min (or mean, ...) of a curve over its last `last` steps. A summary keeps a curve's value
    at every 5th step only (sweep.CURVE_EVERY), so this reads 10 of the last 50 steps."""
    pts = summary.get("curves", {}).get(key, [])
    end = pts[-1][0] if pts else 0
    vals = [v for k, v in pts if k > end - last]
    return how(vals) if vals else float("nan")


def stability_section(st: dict) -> list[str]:
    from .sweep import CURVE_EVERY

    s = st["stability"]
    said = family_said(stability_family(s))
    every = f"every {CURVE_EVERY}th step" if CURVE_EVERY > 1 else "every step"
    lines = ["## The stability claim: ExOPD at 1.8 without the gate against the gate at 1.8 / 1.0", "",
             "Both arms measure a2 against the initial student (`gate.reference=initial`), so the gate is the "
             "only difference. Instability would show as a final accuracy below the start, a reward that "
             "collapses late, a KL to the teacher that grows again, or skipped (non-finite) steps. Family: the "
             f"2 worlds (gate minus ExOPD). The reward and KL columns read the curves a summary keeps ({every} "
             "of the last 50), so a collapse between two readings would not show.", "",
             f"| world | arm | seeds | avg@8 | gate - ExOPD | min reward, last 50 steps ({every}) | "
             f"mean KL(student ‖ teacher) (k1), last 50 steps ({every}) | skipped steps |",
             "|---|---|---|---|---|---|---|---|"]
    for w in ("hold", "a2c"):
        for arm in ("exopd18", "gate18"):
            runs = s.seeds(w, arm)
            mean_kl = lambda v: sum(v) / len(v)  # noqa: E731
            lines.append(f"| {WORLDS[w]} | {arm} | {len(runs)} | {_pct(s.values(w, arm))} | "
                         f"{said[w] if arm == 'gate18' else '-'} | "
                         f"{_pct([_tail(r, 'reward_mean') for r in runs.values()])} | "
                         f"{_num([_tail(r, 'kl_k1', how=mean_kl) for r in runs.values()])} | "
                         f"{sum(r.get('skipped_steps', 0) for r in runs.values())} |")
    return lines + [""]


def _num(values) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    m, h = mean_ci(values)
    return f"{m:.3f} ± {h:.3f}"


def paper_section() -> list[str]:
    return ["## Beside the paper and OPDVR", "",
            "| source | model | OPD | SG-OPD | OPDVR's gate |", "|---|---|---|---|---|",
            "| SG-OPD paper (arXiv 2606.09304), mean over benchmarks | - | - | +1.98 per sample, +7.50 per question over OPD | - |",
            "| OPDVR (arXiv 2608.24696), avg@16 | Qwen3-4B | 47.8 | 47.5 | 49.1 |",
            "| OPDVR (arXiv 2608.24696), avg@16 | Qwen3-1.7B (4B teacher) | 20.9 | 21.5 | 22.8 |", "",
            "The OPDVR numbers come from a reading note of that paper (docs/method.md §10), not checked against "
            "its PDF. The tiny world is a teaching model with planted failures, not a replication of those "
            "benchmarks: it can show *when* a per-rollout verdict can protect a student, not by how much on MATH.", ""]


def gate_wins(st: dict) -> list[str]:
    """Every gate setting that is higher than both OPD and GRPO on the same world and seeds after
    Holm's correction, and on seeds that did not choose it.

    Families: one of the main table's 24 comparisons of a gate with OPD or with GRPO, 3 gates x 4
    worlds x 2 references (a gate wins in a world when both of its comparisons survive, so a false
    win needs a false call in this family: at most ALPHA); then the fresh-seed arms of a2c_confirm
    in the family of their table. The threshold cells are not counted: their best was chosen on
    the seeds that measured it, and a2c_confirm is its test."""
    m, wins = st["worlds_main"], []
    verdicts = family_verdicts({(w, k, ref): diff(m.seeds(w, k), m.seeds(w, ref))
                                for w in WORLDS for k in GATES for ref in ("opd", "grpo")})
    for w in WORLDS:
        for k in GATES:
            if verdicts[(w, k, "opd")] == "higher" and verdicts[(w, k, "grpo")] == "higher":
                where = (f" (the gate with phased teacher sampling; minus PTS only, the gate's share, uncorrected: "
                         f"{_uncorrected(diff(m.seeds(w, k), m.seeds(w, 'pts_only')))})" if k == "sgopd" else "")
                wins.append(f"{METHODS[k]} on {WORLDS[w]}{where}")
    c = st["a2c_confirm"]
    if c.cells:
        confirmed = family_verdicts(confirm_family(c))
        for (arm,), _runs in c.cells.items():
            if arm not in ("opd", "grpo") and all(confirmed[(arm, r)] == "higher" for r in ("opd", "grpo")):
                wins.append(f"the confirmed cell ({arm}) on A2 complementary error, fresh seeds")
    return wins


def load_all(results_dir: Path = RESULTS_DIR) -> dict:
    """Every study file of STUDIES that exists, as Runs (an absent one is empty)."""
    return {n: load_runs(n, results_dir) if _has_study(n) else Runs(n) for n in STUDIES}


def findings_section(st: dict, start: dict) -> list[str]:
    """Per world: the method with the highest mean, said to be chosen on these seeds (so no
    verdict), and where (which skill) it differs from OPD; the studies' lines; then whether any
    gate beat both OPD and GRPO anywhere (gate_wins, corrected)."""
    m = st["worlds_main"]
    lines = ["## What was found", "",
             "Per world, the method with the highest mean of 8 is chosen on the same 5 seeds that measured it, so "
             "its lead is overstated (the winner's curse) and, without runs on fresh seeds, gets no verdict: its "
             "differences to OPD per skill are shown with uncorrected intervals only. Verdicts between methods "
             "are in the paired-difference tables below.", ""]
    for w, wname in WORLDS.items():
        ranked = sorted(METHODS, key=lambda k: -mean_ci(m.values(w, k))[0] if m.values(w, k) else 0)
        best = ranked[0]
        skills = ", ".join(f"{s} {_uncorrected(diff(m.seeds(w, best), m.seeds(w, 'opd'), s))}" for s in SKILLS)
        lines.append(f"* **{wname}**: highest mean {METHODS[best]} {_pct(m.values(w, best))} (chosen on these seeds; "
                     + (f"no verdict); minus OPD per skill, uncorrected: {skills}." if best != "opd" else "it is OPD itself)."))
    lines += _study_findings(st, start)
    wins = gate_wins(st)
    lines += ["", "* Gate settings ahead of both OPD and GRPO (higher than each after Holm's correction over the "
              "24 comparisons of the 3 gates with OPD and with GRPO in the 4 worlds, or on the fresh seeds of "
              "a2c_confirm): "
              + ("; ".join(wins) if wins else "**none, in any world**") + ".", ""]
    return lines


def _study_findings(st: dict, start: dict) -> list[str]:
    """One line each for the threshold ablation, phased teacher sampling and the stability claim."""
    m, t, p, s = st["worlds_main"], st["a2c_thresholds"], st["pts_a1g"], st["stability"]
    lines = []
    gates = {c: r for c, r in t.cells.items() if c[:2] != ("1", "1")}     # lambda_e = lambda_i = 1 is OPD
    if gates:
        cell, runs = max(gates.items(), key=lambda kv: mean_ci([x["avg"] for x in kv[1].values()])[0])
        line = (f"* **Thresholds** (A2 complementary error): the gate cell with the highest mean on seeds 0-1 is "
                f"lambda_e {cell[0]} / lambda_i {cell[1]}, a1 {cell[2]}: {_pct([x['avg'] for x in runs.values()])}, "
                f"minus OPD {_uncorrected(diff(runs, m.seeds('a2c', 'opd')))} (uncorrected; chosen on those seeds, "
                "so no verdict from them).")
        c = st["a2c_confirm"]
        if c.seeds("best"):
            said = confirm_said(c)
            line += (f" Re-run on fresh seeds (a2c_confirm, {len(c.seeds('best'))} seeds): minus OPD {said[('best', 'opd')]}, "
                     f"minus GRPO {said[('best', 'grpo')]}.")
        lines.append(line)
    if p.cells:
        begin = start["a1g"]["student"]["avg"]
        rescued = [name for name, ok in pts_rescued(st, begin).items() if ok]
        lines.append(f"* **Phased teacher sampling** (A1 graded, start {100 * begin:.1f}): settings whose final avg@8 "
                     f"interval lies above the start and that are higher than OPD (Holm over the {len(p.cells)} settings): "
                     f"{', '.join(rescued) or 'none'}.")
    if s.cells:
        said = family_said(stability_family(s))
        for w in ("hold", "a2c"):
            if s.seeds(w, "gate18"):
                lines.append(f"* **Stability** ({WORLDS[w]}): gate 1.8 / 1.0 minus ExOPD 1.8, both against the initial "
                             f"student: {said[w]}.")
    return lines


def write_worlds_report(results_dir: Path = RESULTS_DIR, docs_dir: Path = DOCS_DIR, partial: bool = False) -> Path:
    """docs/results.md from the worlds study's summaries. ReportError while a run is missing,
    unless `partial` (then its first lines say how much is missing)."""
    from .plan import worlds_start_points

    st = load_all(results_dir)
    missing = [name for r in st.values() for name in r.missing]
    if missing and not partial:
        raise ReportError(f"cannot write the report: {len(missing)} runs are missing (e.g. {', '.join(missing[:3])}); "
                          "run their studies (`python -m sgopd_lite sweep --study configs/studies/<name>.yaml`), "
                          "or pass --partial for a report that says so")
    start_path = Path(results_dir) / "worlds_main" / "start.json"
    start = json.loads(start_path.read_text()) if start_path.is_file() else worlds_start_points(results_dir)
    roles, roles_start = _load_roles(results_dir)
    prefix, horizon = _load_extra(PREFIX_STUDY, results_dir), _load_extra(HORIZON_STUDY, results_dir)
    evidence = _load_extra(EVIDENCE_STUDY, results_dir)
    channels, kinds = _read(Path(results_dir) / ROLES / "channels.json"), _read(Path(results_dir) / HORIZON_STUDY / "error_kinds.json")
    mix, mix_pilot = _load_extra(MIX_STUDY, results_dir), _load_extra(MIX_PILOT, results_dir)
    balance = _read(Path(results_dir) / MIX_STUDY / "balance.json")
    smol, smol_pilot = _load_extra(SMOL_STUDY, results_dir), _load_extra(SMOL_PILOT, results_dir)   # on a pretrained model
    smol_qlora = _load_extra(SMOL_QLORA, results_dir)
    smol_start = _read(Path(results_dir) / SMOL_STUDY / "start.json")
    smol_parts = (smol_start, _read(Path(results_dir) / SMOL_STUDY / "picture.json"),
                  _read(Path(results_dir) / SMOL_PILOT / "step_times.json"))
    more = {n: r for n, r in ((ROLES, roles), (PREFIX_STUDY, prefix), (HORIZON_STUDY, horizon),
                              (EVIDENCE_STUDY, evidence), (MIX_PILOT, mix_pilot), (MIX_STUDY, mix),
                              (SMOL_PILOT, smol_pilot), (SMOL_STUDY, smol), (SMOL_QLORA, smol_qlora)) if r.planned}
    lines = (header_section(st, start, more) + unseen_section(_read(Path(results_dir) / "unseen" / "start.json"))
             + findings_section(st, start) + main_table_section(st)
             + differences_section(st) + evidence_section(st) + thresholds_section(st) + pts_section(st)
             + stability_section(st)
             + (roles_section(roles, st["worlds_main"], roles_start, prefix, channels, evidence, horizon)
                if roles.planned else [])
             + (horizon_section(horizon, st["worlds_main"], roles, roles_start, kinds) if horizon.planned else [])
             + (mix_section(mix, mix_pilot, balance) if (mix.planned or mix_pilot.planned or balance) else [])
             + (smol_section(smol, smol_pilot, *smol_parts,
                             tiny_values({"worlds_main": st["worlds_main"], ROLES: roles, MIX_STUDY: mix}), smol_qlora)
                if (smol.planned or smol_pilot.planned or smol_start) else [])
             + paper_section())
    out = Path(docs_dir) / "results.md"
    out.write_text("\n".join(lines) + "\n")
    skills_figure(st, start, Path(docs_dir) / "figures")
    return out


SKILLS_FIGURE = ("a2c", ("opd", "opdvr", "gate_only", "grpo"))    # the README's figure: world, methods


def skills_figure(st: dict, start: dict, fig_dir: Path) -> Path | None:
    """figures/worlds_<world>_skills.png (the README's figure): accuracy per skill on one world
    (SKILLS_FIGURE) for OPD, two gates and GRPO, mean ± 95% interval over seeds, with the teacher
    and the student at the start. None, drawing nothing, without matplotlib or without the runs."""
    import importlib.util

    world, methods = SKILLS_FIGURE
    m = st["worlds_main"]
    if importlib.util.find_spec("matplotlib") is None or not all(m.seeds(world, k) for k in methods):
        return None
    from .. import viz

    cells = {METHODS[k]: {s: mean_ci(m.values(world, k, key=s)) for s in SKILLS} for k in methods}
    begin = {"student at the start": start[world]["student"]["per_skill"],
             "teacher": start[world]["teacher"]["per_skill"]}
    seeds = len(m.seeds(world, methods[0]))
    fig = viz.plot_skill_bars(cells, begin, title=f"{WORLDS[world]}: final avg@8 per skill, "
                              f"mean ± 95% interval over {seeds} seeds")
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = fig_dir / f"worlds_{world}_skills.png"
    fig.savefig(out, dpi=90, metadata={"Software": None})     # no version stamp: the same runs, the same file
    viz._plt().close(fig)
    return out


def _load_extra(name: str, results_dir: Path) -> Runs:
    """A study of the verifier-roles section (step_prefix, horizon) as Runs; empty without its file or folder."""
    if not (_has_study(name) and (Path(results_dir) / name).is_dir()):
        return Runs(name)
    return load_runs(name, results_dir)


def _read(path: Path) -> dict:
    """A committed measurement (JSON) of the report, {} while it is absent."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _load_roles(results_dir: Path):
    """The verifier-roles study's Runs and start points (empty while it has no folder)."""
    folder = Path(results_dir) / ROLES
    if not (_has_study(ROLES) and folder.is_dir()):
        return Runs(ROLES), {}
    start = folder / "start.json"
    return load_runs(ROLES, results_dir), (json.loads(start.read_text()) if start.is_file() else {})


def _has_study(name: str) -> bool:
    from .plan import STUDY_DIR

    return (STUDY_DIR / f"{name}.yaml").is_file()
