"""The mix study's section of docs/results.md on planted summaries: non-inferiority against both
references, Holm over a world x horizon, and the pilot's written rule."""

import math

import pytest

from sgopd_lite.data import SKILLS
from sgopd_lite.study import mix_report as M
from sgopd_lite.study.worlds_report import Runs


def _summary(avg_by_step: dict, seed: int) -> dict:
    evals = [[step, {key: value for key in M.MEASURES.values()}] for step, value in avg_by_step.items()]
    return {"avg": avg_by_step[max(avg_by_step)], "seed": seed, "evals": evals}


def _runs(levels: dict, seeds=range(5)) -> Runs:
    """levels: arm -> accuracy at both horizons (every measure alike), the same in every world;
    each (arm, seed) adds its own offset of up to 1 point so that differences have a spread."""
    runs = Runs("mix", planned=len(M.WORLDS) * len(levels) * len(seeds))
    for w in M.WORLDS:
        for i, (arm, level) in enumerate(levels.items()):
            runs.cells[(w, arm)] = {s: _summary({h: level + 0.0015 * ((s * s + 3 * i * s + i) % 7) for h in M.HORIZONS}, s)
                                    for s in seeds}
    return runs


def test_one_sided_p_tests_against_the_margin():
    assert M.one_sided_p([0.0, 0.01, -0.01, 0.0, 0.005], 0.05) < 0.001     # far above -5 points
    assert M.one_sided_p([-0.1, -0.11, -0.09, -0.1, -0.12], 0.05) > 0.99    # far below
    assert math.isnan(M.one_sided_p([0.0], 0.05))


def test_verdicts_hold_break_and_stay_unshown():
    runs = _runs({"opd": 0.40, "grpo": 0.42, "teacher_probe": 0.30, "probe_balanced": 0.42, "probe_reward": 0.43,
                  "hybrid_parity": 0.45, "staged": 0.38})
    fam = M.cell_family(runs, "a2c", 1000)
    assert len(fam) == len(M.ARMS) * len(M.MEASURES) * len(M.REFERENCES)
    assert M.verdict(fam, "teacher_probe")[0] == "breaks"            # 12 points under GRPO
    assert M.verdict(fam, "hybrid_parity")[0] == "holds"
    v, why = M.verdict(fam, "staged")                               # 4 points under GRPO: inside the margin, unproven
    assert v in ("not shown", "holds") and v != "breaks"
    text = "\n".join(M.mix_section(runs))
    assert "**Never worse?**" in text and "hybrid at gradient parity" in text
    assert "Still running" not in text


def test_a_partial_study_calls_nothing():
    runs = _runs({"opd": 0.4, "grpo": 0.4})
    runs.planned += 10
    runs.missing = ["a2c-staged-s0"]
    text = "\n".join(M.mix_section(runs))
    assert "Still running" in text and "**Never worse?**" not in text


def test_pilot_rule_takes_the_best_smallest_margin_and_the_first_within_a_point():
    pilot = Runs("mix_pilot", planned=len(M.WORLDS) * 7)
    avg = {"opd": 0.30, "grpo": 0.35, "teacher_probe": 0.33, "probe_sign": 0.345, "probe_route": 0.352,
           "probe_budget": 0.20, "probe_route_budget": 0.36}
    for w in M.WORLDS:
        for arm, a in avg.items():
            pilot.cells[(w, arm)] = {100: {"avg": a, "evals": []}}
    choice, scores = M.pilot_choice(pilot)
    assert scores["probe_route_budget"] == pytest.approx(0.01) and scores["probe_budget"] == pytest.approx(-0.15)
    assert choice == "probe_route"         # within 1 point of the best score (sign is not), and listed first
    pilot.missing = ["x"]
    assert M.pilot_choice(pilot) == (None, {})
