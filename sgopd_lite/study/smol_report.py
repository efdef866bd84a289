"""docs/results.md, section "On a pretrained model": the tiny world's lesson re-run on SmolLM2-135M-
Instruct (configs/smol_a2c.yaml: every teacher SFT solution forgets its borrows, 90% of the
student's forget their carries; LoRA).

Reads, all committed under results/runs/:
  smol_a2c/start.json      the world at the start (study/smol_start.py)
  smol_a2c/picture.json    one real group at the borrow digit (study/smol_picture.py)
  smol_pilot/              the pilot's summaries (configs/studies/smol_pilot.yaml) and
  smol_pilot/step_times.json  each pilot arm's median seconds per step (`step_times`, below)
  smol_a2c/*-s*.json       the study's summaries (configs/studies/smol_a2c.yaml)
and the tiny world's A2 complementary runs of the same arms, to set the two side by side.

The verdicts: one family (FAMILY, as the study file lists it), paired over seeds, two-sided,
Holm-corrected, decides every comparison between arms; whether an arm's borrow fell below the
starting student's is read from its seeds' interval and the start's (uncorrected, outside the
family). Each tiny-world claim is read off the two (`claims`). While a study run is missing, the section says how many are in and
calls nothing.

    python -m sgopd_lite.study.smol_report times    # writes smol_pilot/step_times.json from runs/smol_pilot

May import: study.stats, data.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ..data import SKILLS
from .stats import _cell, family_said, holm_p, mean_ci, points as _points

NAME, PILOT, QLORA = "smol_a2c", "smol_pilot", "smol_qlora"
ARMS = {"opd": "OPD", "opdvr": "OPDVR's gate", "grpo": "GRPO", "teacher_probe": "teacher probe",
        "probe_balanced": "teacher probe, sign of a2"}
PILOT_ARMS = {**ARMS, "opd_qlora": "OPD, student in 4-bit (QLoRA)"}
TIMES = Path("results/runs/smol_pilot/step_times.json")
PHASES = ("time_rollout", "time_verify", "time_teacher", "time_update")


# --------------------------------------------------------------------------------------------
# Step times of the pilot's runs (their metrics.jsonl are not committed; this file is)
# --------------------------------------------------------------------------------------------

CONDITIONS = "one torch thread per process, one pilot run at a time beside one 1-thread worker of another study"


def step_times(work: Path, arms=tuple(PILOT_ARMS)) -> dict:
    """{arm: {"steps", "median_s", "phases": {phase: median s}}} from work/<arm>-s<seed>/metrics.jsonl:
    each logged step's seconds, summed over the phases the trainer times. ValueError naming the
    folder when one of `arms` has no timed step there (its run has not been made)."""
    out = {}
    for path in sorted(Path(work).glob("*-s*/metrics.jsonl")):
        arm = path.parent.name.rsplit("-s", 1)[0]
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if all(k in r for k in PHASES)]
        if rows:
            out[arm] = {"steps": len(rows), "median_s": round(statistics.median(sum(r[k] for k in PHASES) for r in rows), 1),
                        "phases": {k[5:]: round(statistics.median(r[k] for r in rows), 1) for k in PHASES}}
    absent = [a for a in arms if a not in out]
    if absent:
        raise ValueError(f"{work}: no timed steps of {', '.join(absent)} (expected {work}/<arm>-s<seed>/metrics.jsonl "
                         "from the pilot's runs: run configs/studies/smol_pilot.yaml first)")
    return out


# --------------------------------------------------------------------------------------------
# Reading summaries
# --------------------------------------------------------------------------------------------

def value(summary: dict, measure: str) -> float:
    """avg@n ('avg') or one skill's avg@n of a summary's final evaluation."""
    return summary["avg"] if measure == "avg" else summary["per_skill"][measure]["avg"]


def forgotten(summary: dict, kind: str = "borrow") -> float:
    """Share of the final evaluation's `kind` steps whose result is the forgotten one (NaN if not counted)."""
    return summary.get("final", {}).get(f"eval_slip_{kind}", float("nan"))


# The study's family, as configs/studies/smol_a2c.yaml states it before any run: (arm, reference,
# measure), each paired over seeds (arm - reference), two-sided, Holm-corrected together: the
# comparisons the claims below read, and no other, so that a handful of seeds can decide them.
FAMILY = (("opdvr", "opd", "borrow"), ("teacher_probe", "opd", "borrow"), ("probe_balanced", "opd", "borrow"),
          ("teacher_probe", "grpo", "avg"), ("probe_balanced", "grpo", "avg"))


def study_family(runs) -> dict:
    """(arm, reference, measure) -> paired differences over seeds (arm - reference), for FAMILY."""
    fam = {}
    for arm, ref, m in FAMILY:
        a, b = runs.seeds(arm), runs.seeds(ref)
        fam[(arm, ref, m)] = [value(a[s], m) - value(b[s], m) for s in sorted(a) if s in b]
    return fam


def against_start(values: list[float], start_avg: float, start_half: float) -> tuple[float, float]:
    """(mean - start, half-width) of an arm's final value against the starting student's: the two
    are independent measurements, so the half-widths add in quadrature (a normal approximation;
    NaN half-width for fewer than 2 seeds, where no interval over seeds exists)."""
    m, h = mean_ci(values)
    if len(values) < 2:
        return m - start_avg, float("nan")
    return m - start_avg, (h ** 2 + start_half ** 2) ** 0.5


def _side(diff: float, half: float) -> int:
    """+1 clearly above, -1 clearly below, 0 the interval covers 0 (or there is none)."""
    if half != half:
        return 0
    return 1 if diff - half > 0 else (-1 if diff + half < 0 else 0)


def claims(runs, start: dict) -> list[tuple[str, str, str]]:
    """(the tiny world's claim, what SmolLM2 says, from what) once every run is in, else [].

    Against the start (claims 1-3: did the borrow fall below the starting student's?) an arm's
    seeds are compared with the start's own interval (`against_start`, uncorrected, outside the
    family); between arms (claims 2-5) the corrected family decides. A claim the numbers cannot
    decide says so ("the seeds cannot tell")."""
    if runs.missing or not runs.planned or sum(len(v) for v in runs.cells.values()) < runs.planned:
        return []
    fam = study_family(runs)
    said, p = family_said(fam), holm_p(fam)

    def side(key) -> int:                  # the corrected verdict: +1 higher, -1 lower, 0 neither or none
        d = fam[key]
        if not d or p[key] != p[key] or p[key] >= 0.05:
            return 0
        return 1 if sum(d) > 0 else -1

    b0 = start["world"]["student"]["per_skill"]["borrow"]

    def to_start(arm):
        vals = [value(x, "borrow") for x in runs.seeds(arm).values()]
        d, h = against_start(vals, b0["avg"], b0["half"])
        return _side(d, h), f"{ARMS[arm]}'s borrow {_points(vals)} against the start's {100 * b0['avg']:.1f} ± " \
                            f"{100 * b0['half']:.1f} ({100 * d:+.1f} ± {100 * h:.1f}, uncorrected)"

    lost, text = to_start("opd")
    out = [("OPD makes the student unlearn the skill its teacher gets wrong (the borrow)",
            {-1: "held", 1: "did not hold"}.get(lost, "the seeds cannot tell"), text)]
    gate_side, gate_text = to_start("opdvr")
    k = ("opdvr", "opd", "borrow")
    out.append(("a per-rollout gate (OPDVR's) does not protect it",
                "held" if gate_side == -1 and side(k) != 1 else
                ("did not hold" if side(k) == 1 and gate_side != -1 else "the seeds cannot tell"),
                f"{gate_text}; OPDVR's gate - OPD on the borrow: {said[k]}"))
    for arm, claim in (("teacher_probe", "acting on the teacher per prompt (the teacher probe) keeps it"),
                       ("probe_balanced", "the mixing study's balanced probe (sign of a2) keeps it too")):
        k = (arm, "opd", "borrow")
        kept, kept_text = to_start(arm)
        if side(k) == 1:
            verdict = "held" if kept != -1 else "held in part: above OPD, still below the start"
        elif side(k) == -1 or kept == -1:
            verdict = "did not hold"
        else:
            verdict = "moot: OPD did not clearly lose it" if lost != -1 else "the seeds cannot tell"
        out.append((claim, verdict, f"{ARMS[arm]} - OPD on the borrow: {said[k]}; {kept_text}"))
    k = ("teacher_probe", "grpo", "avg")
    d = fam[k]
    testable = bool(d) and p[k] == p[k]
    out.append(("the probe is not clearly above GRPO overall",
                ("did not hold" if side(k) == 1 else "held") if testable else "the seeds cannot tell",
                f"teacher probe - GRPO on avg@4: {said[k]}"))
    return out


# The tiny world's A2 complementary runs of the same arms: (study, cell, step or None for the final)
TINY = {"opd": ("worlds_main", ("a2c", "opd"), None), "opdvr": ("worlds_main", ("a2c", "opdvr"), None),
        "grpo": ("worlds_main", ("a2c", "grpo"), None), "teacher_probe": ("verifier_roles", ("a2c", "teacher_probe"), None),
        "probe_balanced": ("mix", ("a2c", "probe_balanced"), 200)}


def tiny_values(studies: dict) -> dict:
    """{arm: {measure: [value per seed]}} of the tiny world's A2 complementary runs at 200 steps
    (studies: name -> worlds_report.Runs; the mix study's arm is read at its step-200 evaluation)."""
    out = {}
    for arm, (name, cell, step) in TINY.items():
        runs = studies.get(name)
        got = list(runs.seeds(*cell).values()) if runs is not None else []
        if step is None:
            vals = {m: [value(x, m) for x in got] for m in (*SKILLS, "avg")}
        else:
            evs = [dict(x.get("evals", [])).get(step) for x in got]
            evs = [e for e in evs if e]
            vals = {m: [e["eval_avg@8" if m == "avg" else f"eval_avg@8_{m}"] for e in evs] for m in (*SKILLS, "avg")}
        if vals["avg"]:
            out[arm] = vals
    return out


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------

def _skill_row(label: str, per_skill: dict, avg: float | None = None, slip: float | None = None) -> str:
    cells = [f"{100 * per_skill[s]['avg']:.1f} ± {100 * per_skill[s].get('half', 0.0):.1f}" for s in SKILLS]
    extra = [f"{100 * avg:.1f}" if avg is not None else "-", f"{100 * slip:.0f}%" if slip is not None else "-"]
    return f"| {label} | " + " | ".join(cells + extra) + " |"


def start_lines(start: dict) -> list[str]:
    if not start:
        return []
    w = start["world"]
    lines = [f"**The world at the start** (`python -m sgopd_lite.study.smol_start`, seed {start['seed']}; "
             f"{start['problems']} eval_skills problems x {start['n']} samples, avg@{start['n']} in points ± 95% "
             "interval over problems; forgotten: the share of sampled borrow steps whose result is the "
             "forgotten-borrow one):", "",
             "| model | " + " | ".join(SKILLS) + " | avg | forgotten borrows |", "|---|" + "---|" * (len(SKILLS) + 2)]
    for role in ("teacher", "student"):
        lines.append(_skill_row(role, w[role]["per_skill"], w[role]["avg"], w[role]["slip"]["borrow"]))
    t, u = w["teacher"]["per_skill"], w["student"]["per_skill"]

    def apart(low, high, skill):        # low's interval lies wholly below high's
        return low[skill]["avg"] + low[skill]["half"] < high[skill]["avg"] - high[skill]["half"]

    if apart(t, u, "borrow") and apart(u, t, "carry"):
        said = ("The teacher is clearly below the student on the borrow and clearly above it on the carry (the "
                "intervals do not overlap): the world is what it must be before any method runs.")
    else:
        said = "**The intervals overlap: this world is not yet the planted one** (change the recipe, not the target)."
    return lines + ["", said, ""]


def pilot_lines(pilot, times: dict, start: dict | None = None) -> list[str]:
    if pilot is None or not pilot.planned:
        return []
    done = sum(len(v) for v in pilot.cells.values())
    lines = [f"**The pilot** (configs/studies/smol_pilot.yaml, seed 100, one seed: {done} of {pilot.planned} runs).", ""]
    opd = list(pilot.seeds("opd").values())
    if opd:
        s = opd[0]
        n = s["n"]
        lines += [f"OPD, avg@{n} per skill in points over the whole skill-balanced split, at each evaluation "
                  "(one seed, no interval):", "", "| step | " + " | ".join(SKILLS) + " | avg | forgotten borrows |",
                  "|---|" + "---|" * (len(SKILLS) + 2)]
        if start:                       # the starting student, measured alike (its own seed)
            u = start["world"]["student"]
            lines.append(f"| 0 (the start, seed {start['seed']}) | " + " | ".join(
                f"{100 * u['per_skill'][k]['avg']:.1f}" for k in SKILLS) + f" | {100 * u['avg']:.1f} | "
                f"{100 * u['slip']['borrow']:.0f}% |")
        for step, ev in s.get("evals", []):
            slip = ev.get("eval_slip_borrow")
            lines.append(f"| {step} | " + " | ".join(f"{100 * ev[f'eval_avg@{n}_{k}']:.1f}" for k in SKILLS)
                         + f" | {100 * ev[f'eval_avg@{n}']:.1f} | " + (f"{100 * slip:.0f}%" if slip is not None else "-") + " |")
        lines.append("")
    arms = times.get("arms", {})
    if arms:
        lines += [f"Median seconds per training step ({times['conditions']}; *scoring* is the student's and the "
                  "teacher's log-probs of the rollouts (GRPO: the student's alone) and, for the probes, the teacher's "
                  "probe samples; *update* includes the mixed methods' second backward pass that logs each route's "
                  "gradient norm):", "", "| arm | steps timed | s / step | rollout | verify | scoring | update |",
                  "|---|---|---|---|---|---|---|"]
        for arm, label in PILOT_ARMS.items():
            if arm in arms:
                t = arms[arm]
                ph = t["phases"]
                lines.append(f"| {label} | {t['steps']} | {t['median_s']:.1f} | {ph['rollout']:.1f} | {ph['verify']:.1f} "
                             f"| {ph['teacher']:.1f} | {ph['update']:.1f} |")
        if "opd" in arms and "opd_qlora" in arms:
            lines += ["", f"The 4-bit student trains (QLoRA on the CPU backend of bitsandbytes): "
                      f"{arms['opd_qlora']['median_s'] / arms['opd']['median_s']:.2f}x LoRA's step time."]
        lines.append("")
    return lines


def tiny_lines(tiny: dict) -> list[str]:
    if not tiny:
        return []
    lines = ["**Beside the tiny world** (A2 complementary error, the same arms at 200 steps x 16 prompts x 8 "
             "rollouts, final avg@8 in points, mean ± 95% interval over seeds; the balanced probe read at the "
             "mix study's step-200 evaluation):", "",
             "| arm | seeds | " + " | ".join(SKILLS) + " | avg |", "|---|---|" + "---|" * (len(SKILLS) + 1)]
    for arm, label in ARMS.items():
        if arm in tiny:
            v = tiny[arm]
            lines.append(f"| {label} | {len(v['avg'])} | " + " | ".join(_points(v[m]) for m in (*SKILLS, "avg")) + " |")
    return lines + [""]


def study_lines(runs, start: dict) -> list[str]:
    if runs is None or not runs.planned:
        return ["The study (configs/studies/smol_a2c.yaml) has not started.", ""]
    done = sum(len(v) for v in runs.cells.values())
    seeds = max((len(v) for v in runs.cells.values()), default=0)
    lines = [f"**The study** (configs/studies/smol_a2c.yaml: {done} of {runs.planned} runs in).", ""]
    if not done:
        return lines
    some = next(iter(next(iter(runs.cells.values())).values()))
    n = some["n"]
    lines += [f"Final avg@{n} per skill in points, mean ± 95% interval over the seeds in so far "
              f"({seeds} at most); forgotten: the share of sampled borrow steps with the forgotten result.", "",
              "| arm | seeds | " + " | ".join(SKILLS) + " | avg | forgotten borrows |", "|---|---|" + "---|" * (len(SKILLS) + 2)]
    for arm, label in ARMS.items():
        got = list(runs.seeds(arm).values())
        if got:
            cells = [_points([value(s, k) for s in got]) for k in (*SKILLS, "avg")]
            slips = [forgotten(s) for s in got]
            slip = f"{100 * sum(slips) / len(slips):.0f}%" if all(x == x for x in slips) else "-"
            lines.append(f"| {label} | {len(got)} | " + " | ".join(cells) + f" | {slip} |")
    lines.append("")
    said = claims(runs, start)
    if not said:
        return lines + ["No verdict until every run is in.", ""]
    fam = study_family(runs)
    text = family_said(fam)
    lines += [f"Paired differences over the seeds, points, Holm-corrected over the study's family of {len(fam)} "
              "comparisons (written in its study file before it ran):", "",
              "| comparison | measure | difference |", "|---|---|---|"]
    for arm, ref, m in FAMILY:
        lines.append(f"| {ARMS[arm]} - {ARMS[ref]} | {m} | {text[(arm, ref, m)]} |")
    lines += ["", "**Claim by claim** (the tiny world's findings on A2 complementary error, read on SmolLM2):", "",
              "| the tiny world found | on SmolLM2 | from |", "|---|---|---|"]
    lines += [f"| {c} | {v} | {why} |" for c, v, why in said]
    return lines + [""]


def qlora_lines(qlora, runs) -> list[str]:
    """The 4-bit student's OPD run beside the LoRA one of the same seed (configs/studies/smol_qlora.yaml)."""
    if qlora is None or not qlora.planned:
        return []
    got = qlora.seeds("opd_qlora")
    if not got:
        return ["**The 4-bit student** (configs/studies/smol_qlora.yaml): not run yet.", ""]
    seed, q = next(iter(got.items()))
    lora = (runs.seeds("opd").get(seed) if runs is not None else None)
    lines = [f"**The 4-bit student** (configs/studies/smol_qlora.yaml): OPD, seed {seed}, the student's base weights "
             "in 4-bit (QLoRA on bitsandbytes' CPU backend) beside the study's LoRA run of the same seed; one seed, a "
             "check that the path trains, not a comparison:", "",
             "| student | " + " | ".join(SKILLS) + " | avg | seconds |", "|---|" + "---|" * (len(SKILLS) + 2)]
    for label, x in (("LoRA, float32 base", lora), ("QLoRA, 4-bit base", q)):
        if x is not None:
            lines.append(f"| {label} | " + " | ".join(f"{100 * value(x, k):.1f}" for k in SKILLS)
                         + f" | {100 * x['avg']:.1f} | {x['seconds']:.0f} |")
    return lines + [""]


def picture_lines(picture: dict) -> list[str]:
    if not picture.get("records"):
        return []
    right = picture["records"][0]
    t = next(t for t, f in enumerate(right["teacher_wrong"]) if f)
    a2 = right["a2"][t]
    push = "pushes that digit down" if a2 < 0 else ("pushes it up" if a2 > 0 else "leaves it")
    rows = "; ".join(f"{k} {v[t] + 0.0:+.2f}" for k, v in right["roles"].items())
    trusted = picture["probe_passes"] / picture["probe_m"] >= 0.5
    return [f"**On real text** (`python -m sgopd_lite.study.smol_picture`, one group of {picture['group']} rollouts "
            f"of the starting student on `{right['question']}`, seed {picture['seed']}): in a correct rollout the "
            f"teacher would write {right['teacher_wants'][t]!r} where the student rightly wrote "
            f"{right['tokens'][t]!r}, the result digit of a borrow step. OPD {push} ({a2:+.2f}); the advantage "
            f"there under {rows}. The probe sampled the teacher {picture['probe_m']} times on this prompt and it was "
            f"right {picture['probe_passes']} times, so the prompt goes to "
            + ("the teacher." if trusted else "the reward."), "",
            "![SmolLM2 at the borrow digit](figures/smol_a2c_borrow.png)", ""]


def smol_section(runs, pilot, start: dict, picture: dict, times: dict, tiny: dict | None = None,
                 qlora=None) -> list[str]:
    """The section's lines (runs, pilot, qlora: worlds_report.Runs of the study, its pilot and the
    4-bit run; tiny: `tiny_values`)."""
    lines = ["## On a pretrained model", "",
             "The same question on SmolLM2-135M-Instruct, offline on the CPU (configs/smol_a2c.yaml): the teacher "
             "and the student are its own short full fine-tunes, the teacher's on solutions that forget every "
             "borrow, the student's on solutions that forget 90% of carries; the RL run trains LoRA adapters "
             "(r = 16) on the student. Training prompts and fine-tuning data both come from the train split, so "
             "the skill-balanced evaluation problems are held out from both.", ""]
    return (lines + start_lines(start) + picture_lines(picture) + pilot_lines(pilot, times, start) + study_lines(runs, start)
            + qlora_lines(qlora, runs)
            + tiny_lines(tiny or {}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the smol study's measurements")
    ap.add_argument("what", choices=["times"])
    ap.add_argument("--work", default="runs/smol_pilot")
    ap.add_argument("--out", default=str(TIMES))
    ap.add_argument("--conditions", default=CONDITIONS, help="how the pilot ran (threads, what ran beside it)")
    args = ap.parse_args(argv)
    times = {"conditions": args.conditions, "arms": step_times(Path(args.work))}
    Path(args.out).write_text(json.dumps(times, indent=1, sort_keys=True) + "\n")
    print(json.dumps(times, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
