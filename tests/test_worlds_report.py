"""The worlds study's report (study/worlds_report.py, docs/results.md), on planted summaries:
it refuses while runs are missing unless asked for a partial report that says so, pairs by seed,
names a gate that beats both OPD and GRPO only when the corrected comparisons say so, gives a
method or cell chosen on its own seeds no verdict from them, and labels what its columns measure.
(The correction itself, and its rate under pure noise, are tested in test_stats.py.)"""

import json
import re

import numpy as np
import pytest

from sgopd_lite.data import SKILLS
from sgopd_lite.study import worlds_report as W
from sgopd_lite.study.plan import study


def _summary(name, base, gain=0.0, zeroed=0.0, method=None):
    """avg = base + gain, all of the gain on borrow (one skill of four)."""
    avg = base + gain
    per_skill = {s: {"avg": base + (len(SKILLS) * gain if s == "borrow" else 0.0), "problems": 64} for s in SKILLS}
    return {"name": name, "method": method, "avg": avg, "pass": min(1.0, avg + 0.3), "per_skill": per_skill, "skipped_steps": 0,
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
            path.write_text(json.dumps(_summary(run.name, base, gain, zeroed=0.8 if gain else 0.0,
                                                method=cell.get("method"))))
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
    found = text.split("## What was found")[1].split("\n## ")[0]
    # the best method of a world is chosen on the seeds that measured it: named, no verdict
    assert "**A2 complementary error**: highest mean gate only (1.8 / 1.0) 4" in found
    a2c = found.split("**A2 complementary error**")[1].split("\n")[0]
    assert "(chosen on these seeds; no verdict)" in a2c and "higher" not in a2c
    assert re.search(r"borrow \+(39\.\d|40\.\d) ± \d\.\d[,.]", a2c)
    # ... while the corrected tables do give it one, and the headline names it
    differences = text.split("## Paired differences")[1].split("\n## ")[0]
    gate_row = next(line for line in differences.splitlines() if line.startswith("| gate only (1.8 / 1.0) |"))
    assert gate_row.split(" | ")[-1].endswith(": higher) |")
    assert "gate only (1.8 / 1.0) on A2 complementary error" in found
    # the best threshold cell (a gain planted on seeds 0-1 only) gets no verdict from those seeds;
    # its verdict comes from the fresh seeds of a2c_confirm, where nothing was planted
    thresholds = found.split("* **Thresholds**")[1].split("\n")[0]
    assert re.search(r"is lambda_e 1(\.8)? / lambda_i 0, a1 (sign|group)", thresholds)
    assert "so no verdict from them" in thresholds and "higher" not in thresholds.split("Re-run")[0]
    assert re.search(r"Re-run on fresh seeds \(a2c_confirm, 3 seeds\): minus OPD [+-]\d\.\d ± \d\.\d "
                     r"\(Holm p [\d.e-]+: no clear difference\)", thresholds)
    assert "lambda_i 0, a1" not in found.split("Gate settings ahead")[1]     # not a win: chosen on its seeds
    # the evidence table shows the planted share of zeroed pushes where the teacher's top token is wrong
    assert "| gate only (1.8 / 1.0) | 80.0 ± 0.0 |" in text.split("**A2 complementary error** (teacher's top token wrong")[1]


def test_without_a_planted_gain_no_gate_is_said_to_win(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES)
    found = W.write_worlds_report(results, docs).read_text().split("## What was found")[1]
    assert "Gate settings ahead of both OPD and GRPO (higher than each after Holm's correction" in found
    assert "**none, in any world**" in found


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
    # "on A2 complementary error ... every gate ends below GRPO": the corrected verdicts of that world
    said = W.world_said(W.load_all(RESULTS_DIR)["worlds_main"], "a2c")
    assert "every gate ends below GRPO" in demo.FINDING
    assert all(said[(k, "grpo")].endswith(": lower)") for k in W.GATES), said


def test_the_demo_states_what_the_verifier_roles_study_found():
    """demo.FINDING's sentence on where else the verifier can act quotes the verifier-roles study
    on A2 complementary error (verifier_roles beside worlds_main's baselines, the families of
    docs/results.md): every number and Holm verdict it prints is computed here from the committed
    summaries, and so are its words "no place tried is clearly ahead of GRPO" and "lose the borrow
    like OPD"."""
    from sgopd_lite import demo
    from sgopd_lite.config import ProbeConfig
    from sgopd_lite.study import roles_report as R
    from sgopd_lite.study.plan import RESULTS_DIR

    if not (RESULTS_DIR / R.NAME).is_dir() or not (RESULTS_DIR / "worlds_main").is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    main, roles = W.load_runs("worlds_main", RESULTS_DIR), W.load_runs(R.NAME, RESULTS_DIR)
    assert not roles.missing, roles.missing[:4]
    rows = {**{k: main.seeds("a2c", k) for k in R.BASELINES}, **{k: roles.seeds("a2c", k) for k in R.ARMS}}
    vs_opd, vs_grpo = R.family_verdicts(rows, "opd"), R.family_verdicts(rows, "grpo")
    probe = [s["per_skill"]["borrow"]["avg"] for s in rows["teacher_probe"].values()]
    opd = [s["per_skill"]["borrow"]["avg"] for s in rows["opd"].values()]
    said = demo.FINDING.split("Acting on the teacher instead")[1]
    assert f"{ProbeConfig().m} verified teacher samples per prompt" in said
    assert f"borrow {W._pct(probe)} (OPD {100 * np.mean(opd):.1f})" in said
    assert f"minus OPD {vs_opd[('teacher_probe', 'borrow')][0]}, overall {vs_opd[('teacher_probe', 'avg')][0]}" in said
    assert vs_opd[("teacher_probe", "borrow")][1] == vs_opd[("teacher_probe", "avg")][1] == "higher"
    assert f"minus GRPO {vs_grpo[('teacher_probe', 'avg')][0]}" in said
    # "no place tried is clearly ahead of GRPO": no arm of the study, and (above) no gate
    assert "no place tried is clearly ahead of GRPO" in said
    assert "GRPO where fewer than 2 are right" in said and ProbeConfig().threshold * ProbeConfig().m == 2
    # where it does not hold: A2 shared error against GRPO, the 1000-step seeds (docs/results.md's own words)
    a2s = {**{k: main.seeds("a2s", k) for k in R.BASELINES}, **{k: roles.seeds("a2s", k) for k in R.ARMS}}
    assert f"on A2 shared error the probe ends below GRPO, {R.family_verdicts(a2s, 'grpo')[('teacher_probe', 'avg')][0]}" in said
    from sgopd_lite.study.plan import DOCS_DIR
    assert "GRPO's borrow ends above its in every seed" in (DOCS_DIR / "results.md").read_text()
    assert "passes the probe's in both" in said
    assert "lose the borrow like OPD" in said and "hybrid's result depends on a coefficient" in said
    assert [a for a in R.ARMS if vs_grpo[(a, "avg")][1] == "higher"] == []
    # "lose the borrow like OPD": not clearly above OPD on the borrow, and below the start's borrow
    start = json.loads((RESULTS_DIR / R.NAME / "start.json").read_text())["a2c"]["student"]["per_skill"]["borrow"]
    lost = said.split(" lose the borrow like OPD")[0].split(". ")[-1].lower()   # the methods named
    for arm, name in (("step_gate", "step gate"), ("first_error_gate", "first-error gate"), ("oracle_gate", "oracle gate")):
        assert f"the {name}" in lost, (name, lost)
        assert vs_opd[(arm, "borrow")][1] == "no clear difference", (arm, vs_opd[(arm, "borrow")])
        assert max(s["per_skill"]["borrow"]["avg"] for s in rows[arm].values()) < start, arm


def test_the_columns_say_what_they_measure(tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES)
    for path in results.glob("worlds_main/*-exopd-s*.json"):     # ExOPD's runs logged the old count
        s = json.loads(path.read_text())
        s["evidence"]["frac_gated"] = 1.0
        path.write_text(json.dumps(s))
    text = W.write_worlds_report(results, docs).read_text()
    evidence = text.split("## What each gate did")[1].split("\n## ")[0]
    assert "the price" not in text and "right: zeroed (" not in text
    assert "| top wrong: zeroed |" in evidence and "| top right: zeroed |" in evidence
    assert "is not a cost of the gate" in evidence
    # ExOPD scales every token alike: nothing is gated
    exopd = [line for line in evidence.splitlines() if line.startswith("| ExOPD 1.25 |")]
    assert len(exopd) == 4 and all(line.split(" | ")[-2] == "0.0 ± 0.0" for line in exopd)
    # the stability table says how often its curves were read
    assert "| min reward, last 50 steps (every 5th step) |" in text
    # the header names the command that re-runs the studies beside the one that rewrites this page
    assert "`make reproduce` re-runs the studies" in text.split("\n## ")[0]


def test_a_rescue_needs_the_final_interval_above_the_start_and_a_corrected_win_over_opd():
    from sgopd_lite.study import measured

    opd = {s: {"avg": v} for s, v in enumerate([0.060, 0.062, 0.064])}
    pts = W.Runs("pts_a1g", {("default",): {s: {"avg": v + 0.008} for s, v in enumerate([0.056, 0.062, 0.068])},
                             ("flat",): {s: {"avg": v + 0.02} for s, v in enumerate([0.062, 0.063, 0.064])}})
    st = {"worlds_main": W.Runs("worlds_main", {("a1g", "opd"): opd}), "pts_a1g": pts,
          "start": {"a1g": {"student": {"avg": 0.069}}}}
    # default: mean 7.0 over a start of 6.9, and above OPD, but its interval reaches far below the start
    assert W.pts_rescued(st, 0.069) == {"default": False, "flat": True}
    lines, rescued = measured.pts_rows(st)
    assert rescued == ["flat"]


def test_every_number_the_readme_quotes_from_the_worlds_study_is_in_docs_results_md():
    """README's "What it found" (the worlds study) quotes docs/results.md: each interval, p-value
    and start value it prints must be found there, and each interval with the p-value it is
    quoted with, so the two cannot drift apart."""
    from sgopd_lite.study.plan import DOCS_DIR, REPO_DIR

    readme = REPO_DIR / "README.md"
    if not readme.is_file():
        pytest.skip("no README here (an installed package)")
    section = readme.read_text().split("## What it found")[1].split("**The first study**")[0]
    results = (DOCS_DIR / "results.md").read_text()
    quoted = re.findall(r"[+-]?\d+\.\d ± \d+\.\d|Holm p [\d.]+\d", section)
    assert len(quoted) > 15, quoted
    assert [q for q in quoted if q not in results] == []
    pairs = re.findall(r"([+-]?\d+\.\d ± \d+\.\d) \((Holm p [\d.]+\d)\)", section)
    assert len(pairs) > 8, pairs
    assert [p for p in pairs if f"{p[0]} ({p[1]}:" not in results] == []
    for start in ("54.9", "6.9", "2.7"):                   # values of the start table it quotes
        assert re.search(rf"(?<![\d.]){re.escape(start)}(?!\d)", section) and f"| {start} |" in results


def test_the_skill_bars_draw_each_mean_its_interval_and_the_start_marks():
    """viz.plot_skill_bars on hand-made cells: a bar per method and skill at the mean, an error bar
    spanning mean ± half-width, and one mark per start point and skill (all in points)."""
    pytest.importorskip("matplotlib")
    from sgopd_lite import viz

    cells = {"OPD": {"carry": (0.40, 0.05), "borrow": (0.06, 0.02)},
             "GRPO": {"carry": (0.35, 0.03), "borrow": (0.32, 0.07)}}
    start = {"student at the start": {"carry": 0.03, "borrow": 0.55}}
    fig = viz.plot_skill_bars(cells, start)
    from matplotlib.container import BarContainer

    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [round(b.get_height(), 6) for c in bars for b in c] == [40.0, 6.0, 35.0, 32.0]
    # GRPO's bars sit right of OPD's in each skill's group
    assert [b.get_x() for b in bars[0]] < [b.get_x() for b in bars[1]]
    spans = [sorted(seg[:, 1]) for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    assert np.allclose(spans, [[35, 45], [4, 8], [32, 38], [25, 39]])
    marks = next(coll for coll in ax.collections if coll.get_label() == "student at the start")
    assert np.allclose([seg[:, 1] for seg in marks.get_segments()], [[3, 3], [55, 55]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["student at the start", "OPD", "GRPO"]
    viz._plt().close(fig)


def test_the_report_draws_the_readme_figure_from_the_summaries_and_the_same_runs_give_the_same_file(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    results, docs = tmp_path / "results", tmp_path / "docs"
    docs.mkdir()
    _plant(results, studies=W.STUDIES)
    from sgopd_lite import viz

    real_plot, drawn = viz.plot_skill_bars, []
    monkeypatch.setattr(viz, "plot_skill_bars", lambda cells, start, **kw: drawn.append((cells, start))
                        or real_plot(cells, start, **kw))
    W.write_worlds_report(results, docs)
    # the means and intervals come from the A2 complementary summaries, skill by skill
    cells, start = drawn[0]
    assert list(cells) == ["OPD", "OPDVR's gate", "gate only (1.8 / 1.0)", "GRPO"] and list(start) == [
        "student at the start", "teacher"]
    opd = W.load_runs("worlds_main", results).values("a2c", "opd", key="borrow")
    assert len(opd) == 5 and cells["OPD"]["borrow"] == W.mean_ci(opd)
    figure = docs / "figures" / "worlds_a2c_skills.png"
    first = figure.read_bytes()
    assert first.startswith(b"\x89PNG") and len(first) < 100_000
    W.write_worlds_report(results, docs)
    assert figure.read_bytes() == first
    # without matplotlib the page is still written, the figure is not
    figure.unlink()
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert W.write_worlds_report(results, docs).is_file() and not figure.exists()


def test_readme_fits_in_8_kib_and_each_method_it_praises_says_where_it_does_not_hold():
    """A method the README praises ("keeps" a skill) is quoted with the report's own 'Where this
    does not hold' numbers for it (its A2 shared error verdicts against GRPO and the 1000-step
    seeds), in the same bullet."""
    from sgopd_lite.study.plan import DOCS_DIR, REPO_DIR

    readme = REPO_DIR / "README.md"
    if not readme.is_file():
        pytest.skip("no README here (an installed package)")
    assert len(readme.read_bytes()) <= 8192
    section = readme.read_text().split("## What it found")[1].split("**The first study**")[0]
    bullets = [" ".join(b.split()) for b in section.split("\n* ")[1:]]
    results = (DOCS_DIR / "results.md").read_text()
    limits = dict(re.findall(r"^\* \*\*(.+?)\*\* ends with more of the borrow than OPD.*Where this does not hold: (.*)$",
                             results, flags=re.M))
    assert "teacher probe" in limits and "A2 shared error" in limits["teacher probe"] and "1000 steps" in limits["teacher probe"]
    praised = [(arm, b) for arm in limits for b in bullets if re.search(rf"\b{re.escape(arm)}\b.*\bkeeps\b", b, flags=re.I)]
    assert praised, "the README no longer praises any arm: update this test"
    for arm, bullet in praised:
        numbers = re.findall(r"[+-]?\d+\.\d ± \d+\.\d \(Holm p [\d.]+\d", limits[arm].split("at 1000 steps")[0])
        seeds = re.findall(r"\d+\.\d(?: / \d+\.\d)+", limits[arm].split("at 1000 steps")[1])
        quoted = [n for n in numbers if n.split(" (")[0] in bullet and n.split("(")[1] in bullet]
        assert quoted, (arm, numbers)      # at least its overall A2-shared verdict against GRPO
        assert numbers[0].split(" (")[0] in bullet, (arm, numbers[0])
        assert all(s in bullet for s in seeds), (arm, seeds)
