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
    times = S.step_times(tmp_path, arms=("opd", "opd_qlora"))
    assert times["opd"]["median_s"] == 20.0 and times["opd"]["steps"] == 3
    assert times["opd_qlora"]["phases"]["rollout"] == 20.0
    lines = "\n".join(S.pilot_lines(_runs({}, planned=6), {"conditions": "as measured", "arms": times}))
    assert "2.00x LoRA's step time" in lines and "(as measured;" in lines
    with pytest.raises(ValueError, match="grpo"):                  # a pilot arm not yet run: no partial table
        S.step_times(tmp_path)


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
    lose = [(0.20, 0.05, 0.30), (0.21, 0.06, 0.32), (0.19, 0.04, 0.31), (0.20, 0.05, 0.30), (0.22, 0.06, 0.31)]
    keep = [(0.30, 0.30, 0.30), (0.33, 0.29, 0.32), (0.29, 0.31, 0.31), (0.31, 0.28, 0.30), (0.30, 0.30, 0.33)]
    grpo = [(0.31, 0.31, 0.30), (0.32, 0.30, 0.32), (0.30, 0.30, 0.31), (0.30, 0.29, 0.30), (0.32, 0.31, 0.33)]
    gate = [(a, b + d, c) for (a, b, c), d in zip(lose, (0.01, -0.01, 0.02, 0.0, 0.01))]
    runs = _runs({"opd": lose, "opdvr": gate, "grpo": grpo, "teacher_probe": keep, "probe_balanced": keep})
    fam = S.study_family(runs)
    assert list(fam) == list(S.FAMILY) and all(len(d) == 5 for d in fam.values())
    assert fam[("teacher_probe", "opd", "borrow")] == pytest.approx([0.25, 0.23, 0.27, 0.23, 0.24])
    said = {c: v for c, v, _ in S.claims(runs, START)}
    assert said["OPD makes the student unlearn the skill its teacher gets wrong (the borrow)"] == "held"
    assert said["a per-rollout gate (OPDVR's) does not protect it"] == "held"
    assert said["acting on the teacher per prompt (the teacher probe) keeps it"] == "held"
    assert said["the probe is not clearly above GRPO overall"] == "held"       # tested, no clear difference

    # above OPD but still clearly below the start: only in part
    low = [(a, 0.12 + 0.01 * i, c) for i, (a, _, c) in enumerate(keep)]
    said = {c: v for c, v, _ in S.claims(_runs({"opd": lose, "opdvr": gate, "grpo": grpo, "teacher_probe": low,
                                                "probe_balanced": keep}), START)}
    assert said["acting on the teacher per prompt (the teacher probe) keeps it"] == \
        "held in part: above OPD, still below the start"

    # noisy seeds: no verdict either way
    noisy = [(0.3, 0.30, 0.3), (0.2, 0.02, 0.3), (0.25, 0.2, 0.3), (0.2, 0.01, 0.3), (0.3, 0.25, 0.3)]
    said = {c: v for c, v, _ in S.claims(_runs({"opd": lose, "opdvr": gate, "grpo": grpo, "teacher_probe": noisy,
                                                "probe_balanced": keep}), START)}
    assert said["acting on the teacher per prompt (the teacher probe) keeps it"] == "the seeds cannot tell"

    # identical differences cannot be tested: no "held" by default
    said = {c: v for c, v, _ in S.claims(_runs({"opd": lose, "opdvr": gate, "grpo": keep, "teacher_probe": keep,
                                                "probe_balanced": keep}), START)}
    assert said["the probe is not clearly above GRPO overall"] == "the seeds cannot tell"

    # one seed per arm: no interval, so nothing against the start is decided
    one = _runs({a: [rows[0]] for a, rows in {"opd": lose, "opdvr": gate, "grpo": grpo, "teacher_probe": keep,
                                               "probe_balanced": keep}.items()})
    said = {c: v for c, v, _ in S.claims(one, START)}
    assert said["OPD makes the student unlearn the skill its teacher gets wrong (the borrow)"] == "the seeds cannot tell"
    assert said["a per-rollout gate (OPDVR's) does not protect it"] == "the seeds cannot tell"


def test_the_picture_sentence_follows_the_numbers():
    rec = {"question": "10-5-4", "tokens": ["1", "0", "-", "5", "=", "5"], "teacher_wants": ["1"] * 6,
           "teacher_wrong": [False] * 5 + [True], "a2": [0.0] * 5 + [-4.2],
           "roles": {"GRPO": [0.6] * 6}, "reward": 1.0}
    pic = {"records": [rec], "group": 8, "seed": 0, "probe_m": 4, "probe_passes": 0}
    text = "\n".join(S.picture_lines(pic))
    assert "pushes that digit down (-4.20)" in text and "goes to the reward" in text
    rec["a2"][5], pic["probe_passes"] = 0.5, 3
    text = "\n".join(S.picture_lines(pic))
    assert "pushes it up (+0.50)" in text and "goes to the teacher" in text


def test_tiny_values_read_the_final_or_the_named_evaluation():
    wm = _runs({})
    wm.cells[("a2c", "opd")] = {0: _summary(0.26, 0.06, 0.42)}
    mix = _runs({})
    ev = {"eval_avg@8": 0.4, **{f"eval_avg@8_{k}": 0.1 * i for i, k in enumerate(SKILLS)}}
    mix.cells[("a2c", "probe_balanced")] = {0: {"evals": [[200, ev], [400, {}]]}}
    tiny = S.tiny_values({"worlds_main": wm, "mix": mix})
    assert tiny["opd"]["borrow"] == [0.06] and tiny["probe_balanced"]["avg"] == [0.4]
    assert tiny["probe_balanced"]["borrow"] == [0.1] and "grpo" not in tiny


def test_the_4bit_run_sits_beside_the_lora_run_of_its_seed():
    study = _runs({"opd": [(0.24, 0.07, 0.48)]})
    study.cells[("opd",)][0]["seconds"] = 2200.0
    qlora = Runs(S.QLORA, planned=1)
    assert "not run yet" in "\n".join(S.qlora_lines(qlora, study))
    qlora.cells[("opd_qlora",)] = {0: {**_summary(0.22, 0.08, 0.45), "seconds": 2400.0}}
    text = "\n".join(S.qlora_lines(qlora, study))
    assert "| LoRA, float32 base | 48.0 | 7.0 |" in text and "| QLoRA, 4-bit base | 45.0 | 8.0 |" in text
    assert "| 2400 |" in text and S.qlora_lines(Runs(S.QLORA), study) == []
