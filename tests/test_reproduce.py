"""`make reproduce`: the first study's plan and its report generator (docs/results_first_study.md),
and REPRODUCE, every study file both reports read.

The generator must refuse missing or partial runs instead of printing a table with holes; with
every run present it writes the tables, the paired differences and the figures. On the committed
summaries, `make reproduce` must find nothing to do.
"""

import json
import re
import math

import numpy as np
import pytest

from sgopd_lite.study import plan as R
from sgopd_lite.study import report as Rep


def test_plan_covers_every_cell_and_the_grid():
    runs = R.plan()
    main = [r for r in runs if r.group == "main"]
    grid = [r for r in runs if r.group == "grid"]
    assert len(main) == len(R.SETTINGS) * len(R.METHODS) * R.SEEDS == 100
    assert len(grid) == len(R.GRID_LAMBDA_E) * len(R.GRID_LAMBDA_I) * R.GRID_SEEDS >= 27
    assert len({r.name for r in runs}) == len(runs)                    # names are unique
    assert {r.setting for r in grid} == {"both"} and R.SEEDS >= 5 and R.GRID_SEEDS >= 3
    # seed-major: the first 20 runs cover every main cell once
    assert {(r.setting, r.method) for r in runs[:20]} == {(s, m) for s in R.SETTINGS for m in R.METHODS}


def test_smol_runs_use_the_smol_config(tmp_path):
    specs = R.smol_plan()
    assert [s.method for s in specs] == ["opd", "sgopd"] and {s.group for s in specs} == {"smol"}
    assert specs[0].summary_path(tmp_path) == tmp_path / "smol" / "smol-opd-s0.json"
    opd, sg = (s.train_config(tmp_path) for s in specs)
    assert opd.world.size == sg.world.size == "smol"
    assert not opd.pts.enabled and sg.pts.enabled and sg.gate.lambda_e > 1.0 == opd.gate.lambda_e
    assert sg.pts.k2 <= sg.steps and opd.out_dir == str(tmp_path / "smol-opd-s0")


def test_run_spec_builds_a_valid_config(tmp_path):
    cfg = R.RunSpec("both", "sgopd", 2, 1.4, 0.5).train_config(tmp_path, steps=7)
    assert (cfg.world.style_gap, cfg.world.teacher_noise) == (1.0, 1.0)
    assert (cfg.gate.lambda_e, cfg.gate.lambda_i, cfg.seed, cfg.steps) == (1.4, 0.5, 2, 7)
    assert cfg.pts.enabled
    exo = R.RunSpec("hold", "exopd", 0).train_config(tmp_path)
    assert exo.gate.lambda_e == exo.gate.lambda_i == 1.25 and not exo.pts.enabled


def test_mean_ci_matches_the_t_interval():
    m, h = Rep.mean_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert m == pytest.approx(0.3)
    assert h == pytest.approx(2.776 * np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) / math.sqrt(5), rel=1e-4)
    assert Rep.mean_ci([0.7]) == (0.7, 0.0)


def test_one_seed_gets_no_verdict_however_large_the_difference():
    from sgopd_lite.study.stats import _said, _verdict
    assert _verdict([0.2]) == "one seed: no verdict"          # was "higher": no interval, no claim
    assert _said([0.0]).endswith("(one seed: no verdict)")
    assert _verdict([0.2, 0.21]) == "higher" and _verdict([-0.2, -0.21]) == "lower"
    assert _verdict([0.2, -0.2]) == "no clear difference"


def _fake_summary(spec, rng):
    # SG-OPD is made 5 points better than OPD in every setting, the rest noise
    base = 0.4 + (0.05 if spec.method == "sgopd" else 0.0) + rng.normal(0, 0.01)
    curve = [[k, base * k / 20] for k in range(0, 20, 5)]
    fracs = {f: [[k, 0.25] for k in range(0, 20, 5)] for f in
             ("frac_consensus", "frac_conflict_i", "frac_conflict_ii", "frac_neutral")}
    return {"name": spec.name, "group": spec.group, "setting": spec.setting, "method": spec.method,
            "seed": spec.seed, "lambda_e": 1.8 if spec.lambda_e is None else spec.lambda_e,
            "lambda_i": 1.0 if spec.lambda_i is None else spec.lambda_i,
            "steps": 20, "lr": 3e-4, "loss_type": "sampled", "avg": base, "pass": min(1.0, base + 0.3), "n": 8, "eval_problems": 256,
            "skipped_steps": 0, "curves": {"reward_mean": curve, "kl_k1": curve, **fracs},
            "seconds": 60.0, "machine": "test machine", "finished": "2026-11-26 00:00:00"}


def _write_all(results_dir, seeds=2, grid_seeds=2):
    rng = np.random.default_rng(0)
    for spec in R.plan(seeds, grid_seeds):
        path = spec.summary_path(results_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_fake_summary(spec, rng)))
    start = {s: {"teacher": {"avg": 0.9, "pass": 1.0}, "student": {"avg": 0.3, "pass": 0.7}} for s in R.SETTINGS}
    (results_dir / "start.json").write_text(json.dumps(start))
    _write_smol(results_dir)


def _write_smol(results_dir):
    """Fake smol summaries with the protocol of configs/smol_cpu.yaml."""
    from sgopd_lite.config import load_config

    steps = load_config(R.SMOL_CONFIG).steps
    for i, spec in enumerate(R.smol_plan()):
        s = _fake_summary(spec, np.random.default_rng(i))
        s.update(steps=steps, n=4, eval_problems=64, avg=0.21 + 0.02 * i, machine="smol machine")
        spec.summary_path(results_dir).parent.mkdir(parents=True, exist_ok=True)
        spec.summary_path(results_dir).write_text(json.dumps(s))
    start = {"eval_problems": 64, "n": 4, "machine": "smol machine",
             "teacher": {"avg": 0.55, "pass": 0.85}, "student": {"avg": 0.15, "pass": 0.4}}
    (results_dir / "smol" / "start.json").write_text(json.dumps(start))


def test_report_refuses_missing_runs(tmp_path):
    _write_all(tmp_path)
    victim = R.plan(2, 2)[7]
    victim.summary_path(tmp_path).unlink()
    with pytest.raises(Rep.ReportError, match=rf"1 of {len(R.plan(2, 2))} runs missing.*{victim.name}"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    assert not (tmp_path / "docs" / "results_first_study.md").exists()


def test_report_refuses_partial_or_corrupt_runs(tmp_path):
    _write_all(tmp_path)
    spec = R.plan(2, 2)[3]
    spec.summary_path(tmp_path).write_text('{"name": "cut off')              # interrupted write
    with pytest.raises(Rep.ReportError, match="unreadable"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    s = _fake_summary(spec, np.random.default_rng(1))
    s["avg"] = float("nan")
    spec.summary_path(tmp_path).write_text(json.dumps(s))                      # a run without a score
    with pytest.raises(Rep.ReportError, match="no finite avg"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    _write_all(tmp_path)
    s = _fake_summary(spec, np.random.default_rng(1))
    s["steps"] = 5                                                             # another protocol
    spec.summary_path(tmp_path).write_text(json.dumps(s))
    with pytest.raises(Rep.ReportError, match="ran 5 steps, the plan says 20"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    _write_all(tmp_path)
    (tmp_path / "start.json").unlink()
    with pytest.raises(Rep.ReportError, match="start.json"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    # the SmolLM2 part is part of the report too
    _write_all(tmp_path)
    R.smol_plan()[1].summary_path(tmp_path).unlink()
    with pytest.raises(Rep.ReportError, match=rf"1 of 2 runs missing.*{R.smol_plan()[1].name}"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    _write_all(tmp_path)
    (tmp_path / "smol" / "start.json").unlink()
    with pytest.raises(Rep.ReportError, match="smol/start.json"):
        Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    assert not (tmp_path / "docs" / "results_first_study.md").exists()


def test_report_with_every_run_has_tables_differences_and_figures(tmp_path):
    _write_all(tmp_path)
    out = Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20)
    text = out.read_text()
    for name in R.SETTING_NAMES.values():
        assert name in text
    assert "| SG-OPD | avg@8 |" in text and "(higher)" in text       # the planted +5 points are found
    found = [float(x) for x in re.findall(r"SG-OPD - OPD = ([+-][0-9.]+) ", text)]
    assert len(found) == len(R.SETTINGS) and all(3.0 < x < 7.0 for x in found)   # about +5 points
    assert "test machine" in text and "nan" not in text.lower()
    # the SmolLM2 section: start points and both runs, with the honest one-seed caveat
    assert "## A pretrained pair: SmolLM2" in text and "smol machine" in text
    assert "| teacher | 55.0 | 85.0 |" in text and "| student at the start | 15.0 | 40.0 |" in text
    assert "| OPD, seed 0 | 21.0 |" in text and "| SG-OPD, seed 0 | 23.0 |" in text
    assert "no interval can be given" in text
    # where the gain comes from: both parts against OPD, and the gate on top of PTS
    assert text.count("Where from: gate only - OPD = ") == len(R.SETTINGS) and "SG-OPD - PTS only = +" in text
    assert "ends below its own starting student" in text and "in: no setting." in text   # fake finals > start
    for fig in ("ablation_heatmap.png", "curves_reward_mean.png", "curves_kl_k1.png", "gate_fractions.png"):
        assert (tmp_path / "docs" / "figures" / fig).stat().st_size > 1000


def test_pending_skips_finished_runs(tmp_path):
    runs = R.plan(1, 1)
    _write_all(tmp_path, 1, 1)
    runs[0].summary_path(tmp_path).unlink()
    assert R.pending(runs, tmp_path) == [runs[0]]


def test_cli_report_exits_2_with_one_line_when_runs_are_missing(tmp_path, capsys):
    from sgopd_lite.__main__ import main

    assert main(["report", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "runs missing" in err and "make reproduce" in err and "Traceback" not in err


def test_reproduce_runs_a_slice_writes_summaries_and_resumes(tmp_path, monkeypatch):
    # a 2-step, 4-problem version of the real protocol on the committed tiny world
    monkeypatch.setattr(R, "EVAL_PROBLEMS", 4)
    monkeypatch.setattr(R, "EVAL_N", 2)
    results, work = tmp_path / "results", tmp_path / "work"
    small = ["eval_problems=4", "eval_n=2"]                  # the study files' protocol, made small
    done = R.reproduce(jobs=1, limit=1, results_dir=results, work_dir=work, steps=2, seeds=1, grid_seeds=1,
                       overrides=small)
    assert done == 1
    first = R.plan(1, 1)[0]
    s = json.loads(first.summary_path(results).read_text())
    assert s["name"] == first.name and s["steps"] == 2 and 0.0 <= s["avg"] <= s["pass"] <= 1.0
    assert s["curves"]["reward_mean"][0][0] == 0 and "frac_consensus" in s["curves"]
    assert set(json.loads((results / "start.json").read_text())) == set(R.SETTINGS)
    # a second invocation skips the finished run and takes the next one
    R.reproduce(jobs=1, limit=1, results_dir=results, work_dir=work, steps=2, seeds=1, grid_seeds=1, overrides=small)
    assert len(R.pending(R.plan(1, 1), results)) == len(R.plan(1, 1)) - 2
    assert json.loads(first.summary_path(results).read_text())["finished"] == s["finished"]


def test_report_names_settings_where_opd_falls_below_its_start(tmp_path):
    _write_all(tmp_path)
    start = json.loads((tmp_path / "start.json").read_text())
    start["a1"]["student"]["avg"] = 0.9                  # the fake OPD finals are about 0.4
    (tmp_path / "start.json").write_text(json.dumps(start))
    text = Rep.write_report(tmp_path, tmp_path / "docs", seeds=2, grid_seeds=2, steps=20).read_text()
    assert f"in: {R.SETTING_NAMES['a1']} (90.0 -> " in text


def test_full_history_keeps_the_steps_before_a_resume(tmp_path):
    """A resumed run's train() returns only the steps after the checkpoint; the summary's curves
    must still start at step 0 (the metrics log), with the newest entry of each step."""
    lines = [{"step": k, "reward_mean": 0.1} for k in range(10)] + [{"step": k, "reward_mean": 0.9} for k in (8, 9)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    returned = [{"step": k, "reward_mean": 0.5} for k in range(6, 10)]
    full = R.full_history(tmp_path, returned)
    assert [m["step"] for m in full] == list(range(10))
    assert [m["reward_mean"] for m in full] == [0.1] * 6 + [0.5] * 4
    assert R.full_history(tmp_path / "nowhere", returned) == returned


# ---------------------------------------------------------------- make reproduce: every study file

HORIZON_RUNS = 12     # configs/studies/horizon.yaml: 2 worlds x 3 methods x 2 seeds


def _training_is_forbidden(*args, **kwargs):
    raise AssertionError("this test must not train")


@pytest.mark.parametrize("name", R.REPRODUCE)
def test_make_reproduce_has_nothing_left_to_do_on_the_committed_summaries(name, monkeypatch):
    """Every study of REPRODUCE, on results/runs/ as committed (read only): its start points are
    there and every planned run is done, so `make reproduce` trains nothing (nor measures: the
    measurements of the saved students are committed too)."""
    from sgopd_lite.study import sweep as S

    from sgopd_lite.study import channels, error_kinds

    from sgopd_lite.study import unseen

    monkeypatch.setattr(S, "train_and_summarize", _training_is_forbidden)
    monkeypatch.setattr(channels, "main", _training_is_forbidden)
    monkeypatch.setattr(error_kinds, "main", _training_is_forbidden)
    monkeypatch.setattr(unseen, "main", _training_is_forbidden)
    if not (R.RESULTS_DIR / "main").is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    sw = R.study(name)
    planned = sw.plan()
    done = [S.is_done(sw, run) for run, _ in planned]    # ConfigError if one was written with other overrides
    if name in R.IN_PROGRESS:            # still being committed: its summaries must be its own, no more
        assert sw.out.is_dir() or not any(done)
        return
    if name == "horizon":
        assert len(planned) == HORIZON_RUNS
    assert all(done), f"{name}: {done.count(False)} of {len(planned)} runs missing"
    if name in R.START_POINTS:
        path = R.RESULTS_DIR / R.START_POINTS[name]
        assert path.is_file()
        assert R.study_start_points(name) == json.loads(path.read_text())   # read from the cache, not computed
    before = sorted(p.name for p in sw.out.iterdir())
    assert R.reproduce(studies=(name,)) == 0                                # nothing run, nothing written
    assert sorted(p.name for p in sw.out.iterdir()) == before


def test_reproduce_covers_every_study_file_and_both_reports():
    from sgopd_lite.study import roles_report, worlds_report

    files = {p.stem for p in R.STUDY_DIR.glob("*.yaml")}
    assert set(R.REPRODUCE) == files and len(R.REPRODUCE) == len(files)
    assert set(R.STUDIES) | set(worlds_report.STUDIES) | {roles_report.NAME} <= set(R.REPRODUCE)
    assert set(R.START_POINTS) <= set(R.REPRODUCE) and set(R.ONE_PROCESS) <= set(R.REPRODUCE)
    assert set(R.IN_PROGRESS) <= set(R.REPRODUCE)


def test_smoke_overrides_apply_to_every_study_and_keep_its_own_seeds():
    # a value equal to the study file's own adds nothing (the committed summaries stay valid)
    assert R._study_overrides("main", 200, 5) == [] and R._study_overrides("horizon", 1000, 2) == []
    assert R._study_overrides("smol", 40, 1) == []                       # steps from configs/smol_cpu.yaml
    assert R._study_overrides("horizon", 2, 1, ["eval_n=2"]) == ["eval_n=2", "steps=2", "seed=0:1"]
    assert R._study_overrides("a2c_confirm", None, 2) == ["seed=100:102"]   # its fresh seeds, not 0-1
    sw = R.study("a2c_confirm", overrides=R._study_overrides("a2c_confirm", 2, 1))
    assert {cfg.seed for _, cfg in sw.plan()} == {100} and {cfg.steps for _, cfg in sw.plan()} == {2}


def test_reproduce_measures_the_saved_students_only_where_a_measurement_is_missing(tmp_path, monkeypatch):
    from sgopd_lite.study import channels, error_kinds

    called = {}
    monkeypatch.setattr(channels, "main", lambda argv: called.setdefault("channels", argv))
    monkeypatch.setattr(error_kinds, "main", lambda argv: called.setdefault("error_kinds", argv))
    (tmp_path / "verifier_roles").mkdir()
    (tmp_path / "verifier_roles" / "channels.json").write_text("{}")             # already measured
    for run in ("hold-opd-s0", "hold-grpo-s0", "a2c-opd-s0"):
        (tmp_path / "work" / "horizon" / run).mkdir(parents=True)
    R.measure_saved_students(tmp_path, tmp_path / "work")
    assert "channels" not in called
    argv = called["error_kinds"]
    assert [p.split("/")[-1] for p in argv[:-2]] == ["hold-grpo-s0", "hold-opd-s0"]          # the hold runs only
    assert argv[-2:] == ["--out", str(tmp_path / "horizon" / "error_kinds.json")]


def test_reproduce_measures_the_smol_world_only_where_a_measurement_is_missing(tmp_path, monkeypatch):
    from sgopd_lite.study import smol_picture, smol_report
    from sgopd_lite.study import sweep as sweep_module

    called = []
    monkeypatch.setattr(smol_picture, "main", lambda argv: called.append(("picture", argv)))
    monkeypatch.setattr(smol_report, "main", lambda argv: called.append(("times", argv)))
    R.measure_smol(tmp_path, tmp_path / "work")                                 # no pilot run yet: no times
    assert [c[0] for c in called] == ["picture"]
    argv = called[0][1]
    assert argv[argv.index("--figure") + 1] == str(R.DOCS_DIR / "figures" / "smol_a2c_borrow.png")
    called.clear()
    (tmp_path / "smol_a2c").mkdir()
    (tmp_path / "smol_a2c" / "picture.json").write_text("{}")                   # already measured
    monkeypatch.setattr(sweep_module, "is_done", lambda sw, run: True)           # every pilot run is in
    R.measure_smol(tmp_path, tmp_path / "work")
    assert [c[0] for c in called] == ["times"]
    argv = called[0][1]
    assert argv[0] == "times" and argv[argv.index("--work") + 1] == str(tmp_path / "work" / "smol_pilot")
    assert argv[argv.index("--out") + 1] == str(tmp_path / "smol_pilot" / "step_times.json")
