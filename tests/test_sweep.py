"""`python -m sgopd_lite sweep` and `sweep-report` (study/sweep.py, study/sweep_report.py), and
the override parsing they share with `train` (config.split_values, config._coerce).

Most tests replace the training of one run by a fake (`_fake_train`), so the machinery (grid,
names, skipping, failures, Ctrl-C, shards, the table) is checked in milliseconds; one test runs
the real thing on the committed tiny world with --jobs 2.
"""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from sgopd_lite.__main__ import main
from sgopd_lite.config import ConfigError, _coerce, load_config, split_values
from sgopd_lite.study import sweep as S
from sgopd_lite.study import sweep_report as SR

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
TINY = ["steps=2", "prompts_per_step=2", "group_size=2", "max_new_tokens=8", "eval_problems=4", "eval_n=2",
        "eval_every=0", "log_rollouts=0", "save_every=1"]


# ---------------------------------------------------------------- values, lists, ranges

@pytest.mark.parametrize("text, value", [
    ("1e-4", 1e-4), ("3.0e-4", 3e-4), ("-2E3", -2000.0), ("1.5", 1.5), ("7", 7), ("true", True),
    ("null", None), ("1:30", "1:30"), ("[tensorboard]", ["tensorboard"]), ("sign", "sign"),
])
def test_values_are_read_as_a_config_file_means_them(text, value):
    assert _coerce(text) == value and type(_coerce(text)) is type(value)


def test_train_reads_lr_1e_4_and_refuses_a_range_or_a_word_for_a_number():
    assert load_config(None, ["lr=1e-4"]).lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="seed=1:30.*grid axis.*sweep"):
        load_config(None, ["seed=1:30"])                  # YAML 1.1 would have read 90
    with pytest.raises(ConfigError, match="gate.lambda_i=0,1.*grid axis"):
        load_config(None, ["gate.lambda_i=0,1"])
    with pytest.raises(ConfigError, match="^lr: expected a number, got 'fast'"):
        load_config(None, ["lr=fast"])
    with pytest.raises(ConfigError, match="^steps: expected an integer, got 2.5"):
        load_config(None, ["steps=2.5"])


def test_split_values_lists_ranges_and_both():
    assert split_values("seed", "0:5") == ["0", "1", "2", "3", "4"]
    assert split_values("gate.a1_mode", "group,sign") == ["group", "sign"]
    assert split_values("seed", "0:2,7") == ["0", "1", "7"]
    assert split_values("lr", "1e-4,3e-4") == ["1e-4", "3e-4"]
    assert split_values("report_to", "[tensorboard,wandb]") == ["[tensorboard,wandb]"]   # one YAML list
    assert split_values("steps", "5") == ["5"]


@pytest.mark.parametrize("text, why", [
    ("a,,b", "malformed list"), ("a,", "malformed list"), (",a", "malformed list"),
    ("0:", "malformed range"), ("1.5:3", "malformed range"), ("1:2:3", "malformed range"),
    ("5:0", "empty range"), ("3:3", "empty range"), ("1,1.0", "the value .1.0. is given twice"),
])
def test_malformed_lists_and_ranges_are_named(text, why):
    with pytest.raises(ConfigError, match=f"k={re.escape(text)}: {why}"):
        split_values("k", text)


# ---------------------------------------------------------------- the grid

def test_a_grid_from_the_command_line(tmp_path):
    sw = S.from_command_line(None, ["steps=3", "gate.lambda_i=0,0.5,1.0", "gate.a1_mode=group,sign", "seed=0:2",
                                    "lr=1e-4"], tmp_path)
    assert sw.fixed == ["steps=3", "lr=1e-4"] and list(sw.axes) == ["gate.lambda_i", "gate.a1_mode", "seed"]
    planned = sw.plan()
    assert len(planned) == 3 * 2 * 2
    runs = [r for r, _ in planned]
    assert [r.seed for r in runs] == [0] * 6 + [1] * 6                       # seed-major
    assert runs[0].name == "gate.lambda_i=0,gate.a1_mode=group-s0"
    assert runs[5].name == "gate.lambda_i=1,gate.a1_mode=sign-s0"             # 1.0 is written 1
    assert len({r.name for r in runs}) == 12 and len({r.cell for r in runs}) == 6
    run, cfg = planned[3]
    assert (cfg.gate.lambda_i, cfg.gate.a1_mode, cfg.seed, cfg.steps) == (0.5, "sign", 0, 3)
    assert cfg.lr == pytest.approx(1e-4) and cfg.out_dir == str(tmp_path / "work" / run.name)


def test_shards_are_disjoint_and_cover(tmp_path):
    sw = S.from_command_line(None, ["gate.lambda_i=0,0.5,1", "gate.a1_mode=group,sign", "seed=0:3"], tmp_path)
    names = [r.name for r, _ in sw.plan()]
    for n in (1, 2, 3, 4, 7, 18, 25):
        slices = [[r.name for r, _ in S.shard(sw.plan(), i, n)] for i in range(n)]
        flat = [x for s in slices for x in s]
        assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
        assert max(map(len, slices)) - min(map(len, slices)) <= 1                    # balanced
    assert S.parse_shard("2/4") == (2, 4) and S.parse_shard(None) == (0, 1)
    for bad in ("4/4", "1", "-1/3", "a/b"):
        with pytest.raises(ConfigError, match="--shard"):
            S.parse_shard(bad)


@pytest.mark.parametrize("args, message", [
    (["stepz=1,2"], "unknown key.*stepz"),
    (["gate.lambda_x=0,1"], "unknown key.*lambda_x"),
    (["seed=0:"], "malformed range"),
    (["gate.lambda_i=0,,1"], "malformed list"),
    (["seed=3:1"], "empty range"),
    (["steps=2"], "empty grid"),
    ([], "empty grid"),
    (["gate.lambda_i=0,1.5"], "cell gate.lambda_i=1.5: .*lambda_i"),         # out of range in one cell
    (["lr=1e-4,fast"], "cell lr=fast: lr: expected a number"),
    (["steps=1,2", "steps=3"], "steps is given twice"),
    (["out_dir=x", "seed=0:2"], "out_dir is set by the sweep"),
    (["--shard", "3/3", "seed=0:2"], "--shard 3/3"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_run(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(S, "train_and_summarize", _no_training)
    out = tmp_path / "sweep"
    assert main(["sweep", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sgopd_lite sweep: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()                                                   # nothing ran, nothing written


def _no_training(*a, **k):
    raise AssertionError("no run may start on bad input")


# ---------------------------------------------------------------- running, with a fake trainer

def _fake_train(cfg, verbose=False, **fields):
    """What train_and_summarize returns, without a model: avg grows with lambda_i, seed noise."""
    avg = 0.3 + 0.1 * cfg.gate.lambda_i + 0.01 * cfg.seed + (0.02 if cfg.gate.a1_mode == "sign" else 0.0)
    return {**fields, "method": cfg.method, "seed": cfg.seed, "steps": cfg.steps, "avg": avg,
            "pass": min(1.0, avg + 0.2), "n": cfg.eval_n, "per_skill": {"carry": {"avg": avg / 2, "problems": 2},
                                                                      "none": {"avg": avg, "problems": 2}},
            "curves": {}, "seconds": 0.1, "machine": "test", "finished": "now"}


GRID = ["gate.lambda_i=0,1", "gate.a1_mode=group,sign", "seed=0:3"]


def test_finished_runs_are_skipped_and_a_failed_run_is_recorded_while_the_others_go_on(tmp_path, monkeypatch, capsys):
    calls = []

    def flaky(cfg, verbose=False, **fields):
        calls.append(fields["name"])
        if cfg.gate.lambda_i == 0 and cfg.gate.a1_mode == "sign" and cfg.seed == 1:
            raise RuntimeError("out of memory (planted)")
        return _fake_train(cfg, verbose, **fields)

    monkeypatch.setattr(S, "train_and_summarize", flaky)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), *GRID]) == 1                     # one failed: exit 1
    assert len(calls) == 12
    bad = "gate.lambda_i=0,gate.a1_mode=sign-s1"
    rec = json.loads((out / "failed" / f"{bad}.json").read_text())
    assert "out of memory (planted)" in rec["error"] and "gate.lambda_i=0" in rec["overrides"]
    assert len(list(out.glob("*-s*.json"))) == 11 and not (out / f"{bad}.json").exists()
    text = capsys.readouterr().out
    assert f"{bad}: FAILED (RuntimeError: out of memory (planted))" in text and "11 of 12 runs finished; 1 failed" in text
    # the table says the sweep is incomplete and names the failed run
    assert "Incomplete: 11 of 12 runs finished**; 1 failed (" + bad in SR.sweep_table(out)[0][5]
    # again: only the failed run is retried; it succeeds and its record goes
    calls.clear()
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    assert main(["sweep", "--out", str(out), *GRID]) == 0
    assert not (out / "failed" / f"{bad}.json").exists() and (out / f"{bad}.json").is_file()
    s = json.loads((out / f"{bad}.json").read_text())
    assert s["cell"] == {"gate.lambda_i": "0", "gate.a1_mode": "sign"} and s["overrides"][-1] == "seed=1"


def test_ctrl_c_leaves_no_half_written_summary_and_the_next_run_resumes(tmp_path, monkeypatch, capsys):
    n = {"runs": 0}

    def interrupted(cfg, verbose=False, **fields):
        n["runs"] += 1
        if n["runs"] == 3:
            raise KeyboardInterrupt
        return _fake_train(cfg, verbose, **fields)

    monkeypatch.setattr(S, "train_and_summarize", interrupted)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), *GRID]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(list(out.glob("*-s*.json"))) == 2 and not list(out.rglob("*.tmp"))
    assert not (out / "failed").exists()                                      # Ctrl-C is not a failure
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    assert main(["sweep", "--out", str(out), *GRID]) == 0
    assert "10 of 12 runs to go" in capsys.readouterr().out


def test_a_folder_of_another_sweep_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), "steps=3", *GRID]) == 0
    assert main(["sweep", "--out", str(out), "steps=4", *GRID]) == 2
    assert "written with other overrides" in capsys.readouterr().err
    # a larger grid over the same fixed settings reuses what is done
    assert main(["sweep", "--out", str(out), "steps=3", "gate.lambda_i=0,0.5,1", "gate.a1_mode=group,sign",
                 "seed=0:3"]) == 0
    assert "6 of 18 runs to go" in capsys.readouterr().out


def test_a_study_file_with_a_named_axis_and_a_name_template(tmp_path, monkeypatch):
    study = tmp_path / "s.yaml"
    study.write_text("""
out: out/grid
work: work
name: "{setting}-{method}-le{gate.lambda_e}-s{seed}"
fields: {group: grid}
overrides: {steps: 3, lr: 1e-4}
grid:
  setting:
    hold: {world.style_gap: 0.0, world.teacher_noise: 0.0}
    both: {world.style_gap: 1.0, world.teacher_noise: 1.0}
  method: [opd, sgopd]
  gate.lambda_e: [1.0, 1.4]
  seed: "0:2"
""")
    sw = S.load_study(study, root=tmp_path)
    assert sw.out == tmp_path / "out" / "grid" and sw.work == tmp_path / "work" and sw.named_axes == {"setting"}
    planned = sw.plan()
    names = [r.name for r, _ in planned]
    assert len(names) == 2 * 2 * 2 * 2 and names[0] == "hold-opd-le1-s0" and names[-1] == "both-sgopd-le1.4-s1"
    cfg = dict((r.name, c) for r, c in planned)["both-sgopd-le1.4-s1"]
    assert (cfg.world.style_gap, cfg.world.teacher_noise, cfg.lr, cfg.out_dir) == (1.0, 1.0, 1e-4, str(tmp_path / "work" / "both-sgopd-le1.4-s1"))
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    assert S.run_sweep(sw) == 0
    s = json.loads((sw.out / "hold-opd-le1-s0.json").read_text())
    assert s["group"] == "grid" and s["setting"] == "hold" and s["method"] == "opd"


# ---------------------------------------------------------------- the table

def test_sweep_report_has_intervals_paired_differences_skills_and_a_heatmap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), "eval_n=4", *GRID]) == 0
    capsys.readouterr()
    assert main(["sweep-report", str(out), "--baseline", "gate.lambda_i=0"]) == 0
    text = (out / "report.md").read_text()
    assert text in capsys.readouterr().out
    assert "| gate.lambda_i | gate.a1_mode | seeds | avg@4 | pass@4 | avg@4 carry | avg@4 none |" in text
    assert "| 1 | sign | 3 | 43.0 ± 2.5 |" in text                          # 0.42 + 0.01 seed, t(2) = 4.303
    # the planted gain is the same on every seed: a zero-width interval, which gets no verdict
    assert "+10.0 ± 0.0 (identical on every seed: no verdict)" in text and text.count("baseline | baseline") == 2
    assert "Family: one column of differences (2 comparisons for each metric), corrected together." in text
    assert (out / "heatmap.png").stat().st_size > 1000
    assert main(["sweep-report", str(out)]) == 0 and "±" in capsys.readouterr().out   # no baseline: intervals too
    assert main(["sweep-report", str(out), "--baseline", "gate.lambda_i=3"]) == 2
    assert "levels ['0', '1']" in capsys.readouterr().err
    assert main(["sweep-report", str(tmp_path / "nothing")]) == 2


def test_sweep_report_corrects_each_column_of_differences_as_one_family(tmp_path, monkeypatch):
    from sgopd_lite.study.sweep_report import sweep_table

    def noisy(cfg, verbose=False, **fields):
        # lambda_i = 1 gains 3 points (sign mode) or nothing (group), with noise that differs by cell
        rng = np.random.default_rng([cfg.seed, int(cfg.gate.lambda_i), cfg.gate.a1_mode == "sign"])
        gain = 0.03 * cfg.gate.lambda_i * (cfg.gate.a1_mode == "sign")
        return {**_fake_train(cfg, verbose, **fields), "avg": 0.3 + gain + rng.normal(0, 0.004)}

    monkeypatch.setattr(S, "train_and_summarize", noisy)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), "eval_n=4", "gate.lambda_i=0,1", "gate.a1_mode=group,sign", "seed=0:5"]) == 0
    lines, _, _ = sweep_table(out, ["gate.lambda_i=0"])
    rows = {tuple(line.split(" | ")[:2]): line for line in lines if line.startswith("| 1 |")}
    assert re.search(r"\| \+[23]\.\d ± \d\.\d \(Holm p [\d.e-]+: higher\) \|", rows[("| 1", "sign")])
    assert re.search(r"\| [+-]0\.\d ± \d\.\d \(Holm p [\d.e-]+: no clear difference\) \|", rows[("| 1", "group")])


# ---------------------------------------------------------------- the real thing

def test_sweep_2x2_with_two_jobs_then_a_no_op_then_the_table(tmp_path, capsys):
    """The acceptance run: a 2 x 2 grid x 2 seeds on the committed tiny world with --jobs 2,
    the same command again (nothing to do, no model loaded), then the table with intervals."""
    out = tmp_path / "sw"
    args = ["sweep", "--config", str(CONFIG), "--out", str(out), "--jobs", "2", *TINY,
            "gate.lambda_i=0,1", "gate.a1_mode=group,sign", "seed=0:2"]
    assert main(args) == 0
    assert len(list(out.glob("*-s*.json"))) == 8
    s = json.loads((out / "gate.lambda_i=1,gate.a1_mode=sign-s1.json").read_text())
    assert s["steps"] == 2 and s["n"] == 2 and 0.0 <= s["avg"] <= s["pass"] <= 1.0 and s["per_skill"]
    assert s["curves"]["reward_mean"][0][0] == 0 and "machine" in s and "eval_avg@2" in s["final"]
    assert s["curves"]["grad_norm"][0][0] == 0 and s["curves"]["grad_norm"][0][1] > 0   # a real run logs it
    assert (out / "work" / "gate.lambda_i=1,gate.a1_mode=sign-s1" / "checkpoint" / "state.pt").is_file()
    capsys.readouterr()
    t = time.perf_counter()
    assert main(args) == 0
    assert time.perf_counter() - t < 30 and "0 of 8 runs to go" in capsys.readouterr().out
    assert main(["sweep-report", str(out), "--baseline", "gate.lambda_i=1", "gate.a1_mode=group"]) == 0
    table = capsys.readouterr().out
    assert table.count(" ± ") >= 8 and "(paired)" in table and (out / "report.md").is_file()


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, capsys):
    from sgopd_lite.train import train

    sw = S.from_command_line(str(CONFIG), [*TINY, "gate.lambda_i=0,1"], tmp_path / "sw")
    (run, cfg), _ = sw.plan()
    train(cfg, verbose=False, stop_after=1)                                   # stopped after step 1 of 2
    capsys.readouterr()
    assert S.run_sweep(sw, verbose=True) == 0
    assert f"resumed from {cfg.out_dir}/checkpoint at step 1" in capsys.readouterr().out
    s = json.loads(sw.summary_path(run).read_text())
    steps = [json.loads(x)["step"] for x in (tmp_path / "sw" / "work" / run.name / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1] and s["curves"]["reward_mean"][0][0] == 0


# ---------------------------------------------------------------- make reproduce as study files

def test_the_study_files_are_the_plan_run_for_run(tmp_path):
    """configs/studies/{main,grid,smol}.yaml give every run of study/plan.py the same name, summary
    path and TrainConfig, so the committed summaries in results/runs/ are their finished runs."""
    from sgopd_lite.config import config_to_dict
    from sgopd_lite.study import plan as R

    specs = {r.name: r for r in R.plan() + R.smol_plan()}
    for name in R.STUDIES:
        sw = R.study(name, tmp_path / "results", tmp_path / "work")
        for run, cfg in sw.plan():
            spec = specs.pop(run.name)
            assert sw.summary_path(run) == spec.summary_path(tmp_path / "results")
            assert config_to_dict(cfg) == config_to_dict(spec.train_config(tmp_path / "work"))
    assert not specs


def test_make_reproduce_on_the_committed_summaries_has_nothing_to_do(monkeypatch, capsys):
    """`sweep --study` over results/runs/ as committed: nothing to run, nothing written."""
    from sgopd_lite.study import plan as R

    from sgopd_lite.study import worlds_report as W

    monkeypatch.setattr(S, "train_and_summarize", _no_training)
    for name in R.STUDIES + W.STUDIES:
        sw = S.load_study(R.STUDY_DIR / f"{name}.yaml")
        if not sw.out.is_dir():
            pytest.skip("no committed summaries here (an installed package)")
        before = sorted(p.name for p in sw.out.iterdir())
        assert main(["sweep", "--study", str(R.STUDY_DIR / f"{name}.yaml"), "--jobs", "2"]) == 0
        assert f"0 of {len(sw.plan())} runs to go" in capsys.readouterr().out
        assert sorted(p.name for p in sw.out.iterdir()) == before


def test_two_shards_of_one_command_make_the_whole_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)
    out = tmp_path / "sw"
    assert main(["sweep", "--out", str(out), "--shard", "0/2", *GRID]) == 0
    first = {p.name for p in out.glob("*-s*.json")}
    assert len(first) == 6 and "6 of 6 runs to go in shard 0/2" in capsys.readouterr().out
    assert main(["sweep", "--out", str(out), "--shard", "1/2", *GRID]) == 0
    assert len(list(out.glob("*-s*.json"))) == 12
    assert main(["sweep", "--out", str(out), *GRID]) == 0 and "0 of 12 runs to go" in capsys.readouterr().out


# ---------------------------------------------------------------- curves in summaries

def test_curves_keep_the_gradient_norm_and_the_probe_fallback_when_a_run_logged_them():
    history = [{"step": k, "reward_mean": 0.1 * k, "grad_norm": 1.0 + k, "probe_frac_fallback": 0.25,
                "loss_pg": 0.3} for k in range(11)]
    curves = S.curves_of(history)
    assert curves["grad_norm"] == [[0, 1.0], [5, 6.0], [10, 11.0]]                  # every CURVE_EVERY steps
    assert curves["probe_frac_fallback"] == [[0, 0.25], [5, 0.25], [10, 0.25]]
    assert "loss_pg" not in curves                                                # only CURVE_KEYS
    assert set(S.curves_of([{"step": k, "reward_mean": 0.0} for k in range(6)])) == {"reward_mean"}


# ---------------------------------------------------------------- per-token evidence in summaries

def _evidence_step(step, positions, teacher_wrong, wrong_zeroed, right_zeroed, gated):
    m = {"step": step, "evidence_positions": positions, "evidence_teacher_wrong": teacher_wrong,
         "frac_gated": gated, "frac_rollouts_no_evidence": 0.5}
    for who, z in (("wrong", wrong_zeroed), ("right", right_zeroed)):
        m.update({f"evidence_{who}_{e}": 0.0 for e in S.EFFECTS})
        m.update({f"evidence_{who}_zeroed": z, f"evidence_{who}_unchanged": 1 - z,
                  f"evidence_{who}_a2_mean": -1.0 if who == "wrong" else 0.5, f"evidence_{who}_adv_mean": 0.0})
    return m


def test_evidence_is_pooled_over_steps_by_position_count():
    # step 0: 100 positions, 10 wrong, all zeroed; step 1: 300 positions, 30 wrong, none zeroed
    history = [_evidence_step(0, 100.0, 0.1, 1.0, 0.0, 0.2), _evidence_step(1, 300.0, 0.1, 0.0, 0.5, 0.4),
               {"step": 2, "eval_avg@8": 0.3}]                       # the eval step logs no evidence
    ev = S.evidence_totals(history)
    assert ev["positions"] == 400 and ev["teacher_wrong"] == pytest.approx(0.1)
    assert ev["wrong_zeroed"] == pytest.approx(10 / 40)               # not the mean of shares (0.5)
    assert ev["right_zeroed"] == pytest.approx(0.5 * 270 / 360)
    assert ev["wrong_unchanged"] == pytest.approx(30 / 40) and ev["wrong_a2_mean"] == pytest.approx(-1.0)
    assert ev["frac_gated"] == pytest.approx(0.3) and ev["frac_rollouts_no_evidence"] == pytest.approx(0.5)
    assert S.evidence_totals([{"step": 0, "reward_mean": 0.1}]) == {}   # GRPO: no evidence logged


def test_refresh_adds_evidence_from_the_run_folders_and_keeps_the_accuracy(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "train_and_summarize", _fake_train)        # its summaries carry no evidence
    out = tmp_path / "sw"
    grid = ["gate.lambda_i=0,1", "seed=0:2"]
    assert main(["sweep", "--out", str(out), *grid]) == 0
    names = sorted(p.stem for p in out.glob("*-s*.json"))
    for name in names[:3]:                                            # three runs left their metrics
        (out / "work" / name).mkdir(parents=True)
        (out / "work" / name / "metrics.jsonl").write_text(
            "\n".join(json.dumps(_evidence_step(k, 50.0, 0.2, 0.5, 0.0, 0.1)) for k in range(3)) + "\n")
    before = {n: json.loads((out / f"{n}.json").read_text()) for n in names}
    assert main(["sweep", "--out", str(out), "--refresh", *grid]) == 0
    said = capsys.readouterr().out
    assert "refreshed 3 summaries" in said and names[3] in said
    after = {n: json.loads((out / f"{n}.json").read_text()) for n in names}
    for n in names[:3]:
        assert after[n]["evidence"]["wrong_zeroed"] == pytest.approx(0.5)
        assert after[n]["curves"]["frac_gated"] == [[0, 0.1]]
        assert after[n]["avg"] == before[n]["avg"] and after[n]["per_skill"] == before[n]["per_skill"]
    assert after[names[3]] == before[names[3]]


def test_the_worlds_report_regenerates_docs_results_md_identically(tmp_path):
    """docs/results.md is what `python -m sgopd_lite report` writes from the committed summaries."""
    from sgopd_lite.study import worlds_report as W
    from sgopd_lite.study.plan import DOCS_DIR, RESULTS_DIR

    if not (RESULTS_DIR / "worlds_main").is_dir():
        pytest.skip("no committed summaries here (an installed package)")
    out = W.write_worlds_report(RESULTS_DIR, tmp_path)
    assert out.read_text() == (DOCS_DIR / "results.md").read_text()
