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
    assert "**step gate** removed 100%" in text and "Its line verdicts do not see every harmful push" in text
    assert "**first-error gate** removed" not in text            # it removed none (planted 0)


def _channels(step_toward=50.0, other_share=-0.9):
    """A planted channels.json: OPD pushes 1000 toward the error at the borrow digit, the step gate
    `step_toward` (all on right digits in lines wrong elsewhere); the influence of OPD's push at
    'other' borrow digits is `other_share` of its total, the step gate keeps it, GRPO is near 0."""
    places = {"line right": 0.0, "line wrong elsewhere": 0.0, "after a wrong line": 0.0}

    def row(toward, away, where=None):
        by = dict(places)
        if where:
            by[where] = toward
        return {"toward": toward, "away": away, "toward_right_digit": toward, "toward_by_place": by,
                "right_by_place": {}, "net_toward": toward - away}

    roles = lambda other, total: {"total": total, "role: borrow digit, right": 0.0, "role: borrow digit, forgotten": 0.0,
                                  "role: borrow digit, other": other, "role: carry digit": 0.0,
                                  "role: other result characters": 0.0, "role: everything else": total - other}
    batch = {"rollouts": 512, "probes": 64, "methods": {"OPD": roles(other_share * 2000, -2000.0),
                                                        "step gate": roles(other_share * 2000, -1800.0),
                                                        "GRPO": roles(-10.0, -20.0)}}
    start = {"prompts": 64, "reward_mean": 0.5, "borrow_digits": {"right": 90, "forgot": 5, "other": 25},
             "pushes": {"OPD": row(1000.0, 0.0, "line right"), "step gate": row(step_toward, 0.0, "line wrong elsewhere"),
                        "GRPO": row(20.0, 40.0, "line right")}}
    return {"group": 8, "seed": 0, "students": {"start": start}, "influence": {"0": batch, "1": batch}}


def test_the_leak_section_says_what_a_gate_lets_through_and_what_moves_the_borrow():
    roles, main = _runs()
    text = "\n".join(roles_section(roles, main, START, None, _channels()))
    leak = text.split("### Why the step gates lost the borrow")[1]
    assert "**step gate** lets through 5.0% of OPD's push" in leak and "line wrong elsewhere" in leak
    assert "| OPD | -100.0 / -100.0 |" in leak                       # the influence, scaled to OPD's total
    assert "the largest single push on the borrow, for OPD, is" in leak and "(-90.0 / -90.0 of OPD's -100)" in leak
    assert "Every update of step gate (-90.0 / -90.0) still points toward" in leak and "GRPO's reads -1.0 / -1.0" in leak


def test_each_check_is_compared_with_the_arm_it_refines_in_one_holm_family():
    from sgopd_lite.study.roles_report import CHECK_ARMS, check_verdicts

    roles, main = _runs()
    rows = {**{k: main.seeds("a2c", k) for k in BASELINES}, **{k: roles.seeds("a2c", k) for k in ARMS}}
    rng = random.Random(1)
    checks = {"step_gate_prefix": {s: _summary(rng, 0.05) for s in range(5)},      # no change
              "oracle_local": {s: _summary(rng, 0.45) for s in range(5)}}         # keeps the borrow
    fam = check_verdicts(rows, checks)
    assert len(fam) == 2 * 3 * 5 + 2                                               # + the forgotten share vs the parent
    assert fam[("oracle_local", "oracle_gate", "borrow")][1] == "higher"
    assert fam[("step_gate_prefix", "step_gate", "borrow")][1] == "no clear difference"
    assert set(CHECK_ARMS) == set(checks)


def test_the_conclusion_of_the_checks_is_drawn_only_when_their_verdicts_support_it():
    from sgopd_lite.study.roles_report import leak_findings

    roles, main = _runs()
    rows = {**{k: main.seeds("a2c", k) for k in BASELINES}, **{k: roles.seeds("a2c", k) for k in ARMS}}
    rng = random.Random(2)
    kept = {"oracle_local": {s: _summary(rng, 0.25) for s in range(5)}}       # fewer forgotten, more borrow
    for x in kept["oracle_local"].values():
        x["final"]["eval_slip_borrow"] += rng.gauss(0, 0.02)
    said = "\n".join(leak_findings(rows, kept, {}, START))
    assert "**What this says.**" in said and "ended below its start (30.0 to" in said
    assert "GRPO ends at" in said
    same = {"oracle_local": {s: _summary(rng, 0.05) for s in range(5)}}        # no change: no conclusion
    assert "What this says" not in "\n".join(leak_findings(rows, same, {}, START))


def test_a_re_run_lends_its_adoption_and_evidence_only_where_it_reproduces_the_run():
    from sgopd_lite.study.roles_report import with_evidence

    roles, main = _runs()
    again = Runs("worlds_main_evidence")
    exact = {s: {**x, "final": {"eval_slip_borrow": 0.42}, "evidence": {"push_step_harm_share": 0.2}}
             for s, x in main.seeds("a2c", "opd").items()}
    exact[4] = {**exact[4], "avg": exact[4]["avg"] + 1e-6}                    # one that does not reproduce
    again.cells[("a2c", "opd")] = exact
    merged, used, compared = with_evidence(main, again)
    assert (used, compared) == (4, 5)
    assert [merged.seeds("a2c", "opd")[s]["final"]["eval_slip_borrow"] for s in range(4)] == [0.42] * 4
    assert "eval_slip_borrow" not in merged.seeds("a2c", "opd")[4]["final"] or \
        merged.seeds("a2c", "opd")[4]["final"]["eval_slip_borrow"] != 0.42
    assert "eval_slip_borrow" not in main.seeds("a2c", "opd")[0].get("final", {}) or \
        main.seeds("a2c", "opd")[0]["final"]["eval_slip_borrow"] != 0.42      # the original is untouched
    text = "\n".join(roles_section(roles, main, START, evidence=again))
    assert "4 of 5 re-runs reproduced" in text
