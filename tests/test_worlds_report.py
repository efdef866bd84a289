"""The worlds study's report (study/worlds_report.py, docs/results.md), on planted summaries:
it refuses while runs are missing unless asked for a partial report that says so, pairs by seed,
and names a gate that beats both OPD and GRPO only when the paired intervals say so."""

import json
import re

import numpy as np
import pytest

from sgopd_lite.data import SKILLS
from sgopd_lite.study import worlds_report as W
from sgopd_lite.study.plan import study


def _summary(name, base, gain=0.0, zeroed=0.0):
    """avg = base + gain, all of the gain on borrow (one skill of four)."""
    avg = base + gain
    per_skill = {s: {"avg": base + (len(SKILLS) * gain if s == "borrow" else 0.0), "problems": 64} for s in SKILLS}
    return {"name": name, "avg": avg, "pass": min(1.0, avg + 0.3), "per_skill": per_skill, "skipped_steps": 0,
            "evidence": {"teacher_wrong": 0.01, "wrong_zeroed": zeroed, "wrong_unchanged": 1 - zeroed,
                         "right_zeroed": 0.1, "frac_gated": 0.3, "frac_rollouts_no_evidence": 0.2},
            "curves": {"reward_mean": [[k, 0.5] for k in range(0, 200, 5)], "kl_k1": [[k, 0.1] for k in range(0, 200, 5)]},
            "seconds": 100.0, "machine": "test machine"}


def _plant(results, studies=("worlds_main",), gate_gain=0.0, skip=()):
    """Every run of the studies, avg 0.3 + seed noise; the gate-only method and the threshold cells
    with lambda_i = 0 gain `gate_gain` (all on borrow) over OPD and GRPO in A2 complementary."""
    rng = np.random.default_rng(0)
    for name in studies:
        sw = study(name, results)
        for run, _cfg in sw.plan():
            if run.name in skip:
                continue
            cell = dict(run.cell)
            gain = gate_gain if (cell.get("method") == "gate_only" and cell.get("setting") == "a2c") \
                or cell.get("gate.lambda_i") == "0" else 0.0
            base = 0.3 + 0.01 * run.seed + rng.normal(0, 0.002)
            path = sw.summary_path(run)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_summary(run.name, base, gain, zeroed=0.8 if gain else 0.0)))
    start = {w: {who: {"avg": 0.3, "pass": 0.5, "per_skill": {s: 0.3 for s in SKILLS}} for who in ("teacher", "student")}
             for w in W.WORLDS}
    (results / "worlds_main" / "start.json").write_text(json.dumps(start))


def test_a_missing_run_refuses_the_report_and_a_partial_one_says_so(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES, skip=("a2c-opd-s4",))
    with pytest.raises(W.ReportError, match="1 runs are missing.*a2c-opd-s4"):
        W.write_worlds_report(results, docs)
    assert not (docs / "results.md").exists()
    text = W.write_worlds_report(results, docs, partial=True).read_text()
    assert text.splitlines()[2].startswith("**Partial report: ")
    assert "| OPD | 4 |" in text                                   # the A2 complementary OPD cell: 4 seeds


def test_a_planted_gate_gain_is_found_per_skill_and_against_both_baselines(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES, gate_gain=0.1)
    text = W.write_worlds_report(results, docs).read_text()
    assert "Partial" not in text
    found = text.split("## What was found")[1].split("##")[0]
    assert "**A2 complementary error**: highest mean gate only (1.8 / 1.0) 4" in found
    a2c = found.split("**A2 complementary error**")[1].split("\n")[0]
    assert re.search(r"borrow \+(39\.\d|40\.\d) ± \d\.\d \(higher\)", a2c)
    assert re.search(r"carry [+-]0\.\d ± \d\.\d \(no clear difference\)", a2c)
    assert "gate only (1.8 / 1.0) on A2 complementary error" in found
    assert "lambda_e 1 / lambda_i 0, a1 sign, on A2 complementary error, seeds 0-1 (exploratory" in found
    assert "lambda_i 1, a1" not in found and "lambda_i 0.5" not in found     # no gain planted there
    # the evidence table shows the planted share of zeroed wrong-teacher pushes
    assert "| gate only (1.8 / 1.0) | 80.0 ± 0.0 |" in text.split("**A2 complementary error** (teacher wrong")[1]


def test_without_a_planted_gain_no_gate_is_said_to_win(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES)
    found = W.write_worlds_report(results, docs).read_text().split("## What was found")[1]
    assert "Gate settings ahead of both OPD and GRPO (paired 95% interval above zero): **none, in any world**" in found


def test_the_demo_opens_with_what_the_committed_study_found():
    """`make demo`'s first line (demo.FINDING) says whether any gate beat both OPD and GRPO; it
    must agree with the committed summaries that docs/results.md is written from."""
    from sgopd_lite import demo
    from sgopd_lite.study.plan import RESULTS_DIR

    if not (RESULTS_DIR / "worlds_main").is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    wins = W.gate_wins(W.load_all(RESULTS_DIR))
    assert demo.FINDING.startswith("No gate setting beat both OPD and GRPO") == (not wins), wins
    for win in wins:                                   # every winner is named on the demo's first line
        assert win.split(" on ")[0] in demo.FINDING, win
