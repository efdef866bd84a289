"""docs/results.md's "Where must the verifier act?" (study/roles_report.py) on planted summaries."""

import random

from sgopd_lite.data import SKILLS
from sgopd_lite.study.roles_report import ARMS, BASELINES, family_verdicts, roles_section
from sgopd_lite.study.worlds_report import Runs


def _summary(rng, borrow, noise=0.02):
    skills = {"carry": 0.4, "borrow": borrow, "both": 0.1, "none": 0.5}
    per = {s: {"avg": v + rng.gauss(0, noise), "problems": 64} for s, v in skills.items()}
    return {"avg": sum(v["avg"] for v in per.values()) / 4, "per_skill": per,
            "final": {"eval_slip_borrow": 0.5 - borrow, "eval_slip_carry": 0.2},
            "evidence": {"push_oracle_harm_share": 0.03, "push_oracle_harm_zeroed": 0.7, "push_step_harm_zeroed": 0.0}}


def _runs(seeds=5, missing=()):
    rng = random.Random(0)
    main, roles = Runs("worlds_main"), Runs("verifier_roles")
    for world in ("a2c", "a2s", "hold"):
        for m in BASELINES:
            main.cells[(world, m)] = {s: _summary(rng, 0.3 if m == "grpo" else 0.05) for s in range(seeds)}
        for a in ARMS:
            borrow = 0.4 if a == "teacher_probe" else 0.05
            roles.cells[(world, a)] = {s: _summary(rng, borrow) for s in range(seeds)}
    roles.planned = 3 * len(ARMS) * seeds
    roles.missing = list(missing)
    return roles, main


START = {w: {r: {"avg": 0.3, "per_skill": {s: 0.3 for s in SKILLS}, "slip": {"carry": 0.1, "borrow": 0.2}}
             for r in ("student", "teacher")} for w in ("a2c", "a2s", "hold")}


def test_a_clear_gain_survives_holm_and_noise_does_not():
    roles, main = _runs()
    rows = {**{k: main.seeds("a2c", k) for k in BASELINES}, **{k: roles.seeds("a2c", k) for k in ARMS}}
    fam = family_verdicts(rows, "opd")
    assert len(fam) == len(ARMS) * 5
    assert fam[("teacher_probe", "borrow")][1] == "higher" and "Holm p" in fam[("teacher_probe", "borrow")][0]
    assert all(v[1] == "no clear difference" for k, v in fam.items() if k[0] != "teacher_probe" and k[1] == "carry")


def test_one_seed_gives_no_verdict():
    roles, main = _runs(seeds=1)
    rows = {**{k: main.seeds("a2c", k) for k in BASELINES}, **{k: roles.seeds("a2c", k) for k in ARMS}}
    assert {v[1] for v in family_verdicts(rows, "opd").values()} == {"one seed: no verdict"}


def test_a_running_study_says_so_and_draws_no_conclusion():
    roles, main = _runs(missing=["a2c-hybrid-s4"])
    text = "\n".join(roles_section(roles, main, START))
    assert "Still running" in text and "What kept the borrow" not in text


def test_the_finished_study_names_what_protected_the_borrow():
    roles, main = _runs()
    text = "\n".join(roles_section(roles, main, START))
    assert "Still running" not in text
    found = text.split("### What kept the borrow, and what it cost")[1]
    assert "**teacher probe**" in found and "**step gate**" not in found
    assert "oracle gate (a bound, not a method)" in found


def test_a_gate_that_removed_the_pushes_and_lost_the_skill_anyway_is_named():
    roles, main = _runs()
    for s in roles.cells[("a2c", "step_gate")].values():
        s["evidence"]["push_step_harm_zeroed"] = 1.0
    text = "\n".join(roles_section(roles, main, START)).split("### What kept the borrow")[1]
    assert "**step gate** removed 100%" in text and "where the error still came in" in text
    assert "**first-error gate** removed" not in text            # it removed none (planted 0)
