"""docs/results.md's horizon check (study/horizon_report.py) on planted summaries."""

from sgopd_lite.data import SKILLS
from sgopd_lite.study.error_kinds import KINDS
from sgopd_lite.study.horizon_report import _said_order, consistency, horizon_section
from sgopd_lite.study.worlds_report import Runs


def _summary(avg_by_step: dict, none=0.5, final_avg=None):
    evals = [[step, {"eval_avg@8": a, **{f"eval_avg@8_{s}": (none if s == "none" else a) for s in SKILLS},
                     "eval_slip_borrow": 0.1}] for step, a in avg_by_step.items()]
    return {"avg": final_avg if final_avg is not None else avg_by_step[200], "evals": evals}


def _runs():
    horizon, main, roles = Runs("horizon"), Runs("worlds_main"), Runs("verifier_roles")
    grow = {"opd": 0.30, "grpo": 0.35, "teacher_probe": 0.40}
    for world in ("a2c", "hold"):
        for m, a in grow.items():
            horizon.cells[(world, m)] = {s: _summary({k: a + 0.01 * s + (k / 1000) * (0.3 if m == "opd" else 0.0)
                                                      for k in (200, 400, 600, 800, 1000)}) for s in (0, 1)}
            source = roles if m == "teacher_probe" else main
            source.cells[(world, m)] = {s: {"avg": horizon.cells[(world, m)][s]["evals"][0][1]["eval_avg@8"]}
                                        for s in (0, 1)}
    horizon.planned = 12
    return horizon, main, roles


START = {w: {"student": {"avg": 0.3, "per_skill": {s: 0.3 for s in SKILLS}, "slip": {"borrow": 0.01}}}
         for w in ("a2c", "hold")}


def test_the_step_200_evaluation_is_checked_against_the_200_step_runs():
    horizon, main, roles = _runs()
    assert consistency(horizon, main, roles) == (12, 12)
    main.cells[("a2c", "opd")][0]["avg"] += 0.01
    assert consistency(horizon, main, roles) == (11, 12)


def test_an_order_at_200_steps_is_said_to_hold_or_reverse_only_when_both_seeds_agree():
    assert _said_order([0.05, 0.02], [0.03, 0.01]) == "holds at 1000 in both seeds"
    assert _said_order([0.05, 0.02], [-0.03, -0.01]) == "reverses at 1000 in both seeds"
    assert _said_order([0.05, 0.02], [0.03, -0.01]) == "holds at 1000 in some seeds, not in others"
    assert _said_order([0.05], [0.03]) == "holds at 1000 in the one seed so far"
    assert _said_order([-0.0004, 0.02], [0.05, 0.03]) == "within 0.5 points in some seed: no order"
    assert _said_order([0.05, -0.02], [0.03, 0.01]) == "the seeds disagree at 200 steps"


def test_the_section_reads_every_evaluation_and_the_slow_learner_catching_up():
    horizon, main, roles = _runs()
    text = "\n".join(horizon_section(horizon, main, roles, START, {}))
    assert "### A2 complementary error, 1000 steps" in text and "### both hold, 1000 steps" in text
    assert "equals the study's final one in 12 of 12 runs" in text
    # OPD gains 0.3 per 1000 steps: behind the teacher probe at 200, ahead at 1000
    assert "teacher probe minus OPD (seed 0 / 1): avg@8 +4.0 / +4.0 at 200, -20.0 / -20.0 at 1000: reverses" in text


def test_why_none_falls_names_the_kind_of_line_that_grew():
    horizon, main, roles = _runs()
    prof = lambda avg, greedy, other: {"none": {"lines": 100, "avg": avg, "greedy": greedy,
                                                **{k: 0.0 for k in KINDS}, "right": 1 - other, "other result": other}}
    kinds = {"n": 8, "students": {"hold start": prof(0.67, 0.84, 0.1), "hold-grpo-s0 at 1000": prof(0.5, 0.7, 0.3),
                                  "hold-opd-s0 at 1000": prof(0.55, 0.75, 0.25)}}
    text = "\n".join(horizon_section(horizon, main, roles, START, kinds))
    assert "in 2 of 2 final students measured, GRPO's among them: GRPO never reads the teacher" in text
    assert "Greedy accuracy on `none` falls too in 2 of 2" in text
    assert "are *other result* (10.0% of lines at the start, 27.5% after)" in text
