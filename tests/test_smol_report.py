"""docs/results.md, "On a pretrained model" (study/smol_report.py): the pilot's step times, the
start table's check, the family and the claim-by-claim verdicts, on hand-made summaries."""

import json

import pytest

from sgopd_lite.data import SKILLS
from sgopd_lite.study import smol_report as S
from sgopd_lite.study.worlds_report import Runs


def _summary(avg, borrow, carry, slip=0.1):
    per = {k: {"avg": v, "problems": 64} for k, v in zip(SKILLS, (carry, borrow, 0.05, 0.4))}
    return {"avg": avg, "n": 4, "per_skill": per, "final": {"eval_slip_borrow": slip}}


def _runs(table: dict, planned: int | None = None) -> Runs:
    """table: arm -> list of (avg, borrow, carry) per seed."""
    runs = Runs(S.NAME)
    for arm, rows in table.items():
        runs.cells[(arm,)] = {seed: _summary(*row) for seed, row in enumerate(rows)}
    runs.planned = planned if planned is not None else sum(len(v) for v in table.values())
    return runs


START = {"seed": 0, "problems": 256, "n": 4, "world": {
    "teacher": {"avg": 0.25, "slip": {"borrow": 0.28},
                "per_skill": {"carry": {"avg": 0.55, "half": 0.09}, "borrow": {"avg": 0.03, "half": 0.03},
                              "both": {"avg": 0.05, "half": 0.03}, "none": {"avg": 0.37, "half": 0.09}}},
    "student": {"avg": 0.18, "slip": {"borrow": 0.01},
                "per_skill": {"carry": {"avg": 0.0, "half": 0.0}, "borrow": {"avg": 0.26, "half": 0.07},
                              "both": {"avg": 0.03, "half": 0.04}, "none": {"avg": 0.45, "half": 0.1}}}}}


def test_step_times_are_medians_of_the_phase_sums(tmp_path):
    for arm, secs in {"opd": (10, 30, 20), "opd_qlora": (20, 60, 40)}.items():
        d = tmp_path / f"{arm}-s100"
        d.mkdir()
        rows = [{"step": i + 1, "time_rollout": t / 2, "time_verify": 0.0, "time_teacher": t / 4, "time_update": t / 4}
                for i, t in enumerate(secs)]
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    times = S.step_times(tmp_path)
    assert times["opd"]["median_s"] == 20.0 and times["opd"]["steps"] == 3
    assert times["opd_qlora"]["phases"]["rollout"] == 20.0
    lines = "\n".join(S.pilot_lines(_runs({}, planned=6), times))
    assert "2.00x LoRA's step time" in lines


def test_the_start_table_says_when_the_world_is_not_the_planted_one():
    good = "\n".join(S.start_lines(START))
    assert "what it must be" in good and "| teacher | 55.0 ± 9.0 | 3.0 ± 3.0" in good
    bad = json.loads(json.dumps(START))
    bad["world"]["teacher"]["per_skill"]["borrow"]["avg"] = 0.22      # overlaps the student's 26 ± 7
    assert "not yet the planted one" in "\n".join(S.start_lines(bad))


def test_no_verdict_while_a_run_is_missing():
    runs = _runs({"opd": [(0.2, 0.05, 0.3)] * 3}, planned=15)
    assert S.claims(runs, START) == []
    text = "\n".join(S.study_lines(runs, START))
    assert "3 of 15 runs in" in text and "No verdict until every run is in" in text


def test_the_claims_follow_the_corrected_family():
    lose = [(0.20, 0.05, 0.30), (0.21, 0.06, 0.32), (0.19, 0.04, 0.31)]          # OPD loses the borrow
    keep = [(0.30, 0.30, 0.30), (0.31, 0.29, 0.32), (0.30, 0.31, 0.31)]          # the probe keeps it
    runs = _runs({"opd": lose, "opdvr": [(a, b + 0.01, c) for a, b, c in lose], "grpo": keep,
                  "teacher_probe": keep, "probe_balanced": keep})
    fam = S.study_family(runs)
    assert list(fam) == list(S.FAMILY) and all(len(d) == 3 for d in fam.values())
    assert fam[("grpo", "opd", "borrow")] == pytest.approx([0.25, 0.23, 0.27])
    said = {c: v for c, v, _ in S.claims(runs, START)}
    assert said["OPD makes the student unlearn the skill its teacher gets wrong (the borrow)"] == "held"
    assert said["a per-rollout gate (OPDVR's) does not protect it"] == "held"
    assert said["acting on the teacher per prompt (the teacher probe) keeps it"] == "held"
    assert said["the probe is not clearly above GRPO overall"] == "held"
    noisy = _runs({"opd": lose, "opdvr": lose, "grpo": keep, "probe_balanced": keep,
                   "teacher_probe": [(0.3, 0.30, 0.3), (0.2, 0.02, 0.3), (0.25, 0.2, 0.3)]})
    said = {c: v for c, v, _ in S.claims(noisy, START)}
    assert said["acting on the teacher per prompt (the teacher probe) keeps it"] == "the seeds cannot tell"


def test_tiny_values_read_the_final_or_the_named_evaluation():
    wm = _runs({})
    wm.cells[("a2c", "opd")] = {0: _summary(0.26, 0.06, 0.42)}
    mix = _runs({})
    ev = {"eval_avg@8": 0.4, **{f"eval_avg@8_{k}": 0.1 * i for i, k in enumerate(SKILLS)}}
    mix.cells[("a2c", "probe_balanced")] = {0: {"evals": [[200, ev], [400, {}]]}}
    tiny = S.tiny_values({"worlds_main": wm, "mix": mix})
    assert tiny["opd"]["borrow"] == [0.06] and tiny["probe_balanced"]["avg"] == [0.4]
    assert tiny["probe_balanced"]["borrow"] == [0.1] and "grpo" not in tiny
