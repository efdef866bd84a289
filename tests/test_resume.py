"""Which checkpoint a run resumes (train.check_resumable): only its own, and then exactly.

A checkpoint in out_dir is resumed when the configuration that wrote it (out_dir/config.json)
equals the new one, `steps` and the output fields of train.RESUME_IGNORES aside, and its run
fingerprint (process count, device, data file contents) equals this run's; anything else stops
before a model loads, unless the run asks to start over (`restart=True`, `train --restart`).
Other package versions only warn. A resumed or extended run equals an uninterrupted one, also
with two processes (each restores its own random states).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_world
from sgopd_lite import train as T
from sgopd_lite.__main__ import main
from sgopd_lite.config import ConfigError, TrainConfig, config_to_dict

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(steps=2, prompts_per_step=3, group_size=4, max_new_tokens=12, eval_every=0, eval_problems=2,
             eval_n=2, save_every=0, log_rollouts=1)


def _cfg(out, **kw):
    return TrainConfig(**{**SMALL, "out_dir": str(out), **kw})


def _weights(out):
    from safetensors.torch import load_file

    return load_file(out / "final" / "model.safetensors")


def _same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _old_run(out, **kw) -> TrainConfig:
    """An out_dir as a finished run leaves it, as far as the check reads it: config.json and a
    checkpoint file (the check never opens the checkpoint)."""
    cfg = _cfg(out, **kw)
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.pt").write_bytes(b"not read")
    (out / "config.json").write_text(json.dumps(config_to_dict(cfg), default=str))
    return cfg


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything tries to load the world's models."""
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the configuration was checked")
    monkeypatch.setattr(T, "load_world", refuse)


def test_another_configuration_is_refused_before_any_model_loads(tmp_path, no_model_loads):
    _old_run(tmp_path / "run", method="sgopd")
    with pytest.raises(ConfigError) as err:
        T.train(_cfg(tmp_path / "run", method="opd"), verbose=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "run") in msg
    assert "method ('sgopd' there, 'opd' now)" in msg and "gate.lambda_e (1.8 there, 1.0 now)" in msg
    assert "pts.enabled (True there, False now)" in msg
    assert "another out_dir" in msg and "--restart" in msg
    assert (tmp_path / "run" / "checkpoint" / "state.pt").read_bytes() == b"not read"   # left alone


def test_the_command_line_says_so_in_one_line_and_exits_2(tmp_path, capsys, no_model_loads):
    _old_run(tmp_path / "run", seed=0)
    assert main(["train", "--quiet", *[f"{k}={v}" for k, v in SMALL.items()], "seed=1",
                 f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed (0 there, 1 now)" in err and "Traceback" not in err


def test_steps_and_output_fields_may_change_anything_else_may_not(tmp_path):
    saved = config_to_dict(_cfg(tmp_path / "a"))
    same = _cfg(tmp_path / "b", steps=50, save_every=5, log_rollouts=0, report_to=["tensorboard"])
    assert T.config_differences(saved, same) == {}
    assert set(T.config_differences(saved, _cfg(tmp_path / "b", eval_problems=3))) == {"eval_problems"}
    assert set(T.config_differences(saved, _cfg(tmp_path / "b", world={"teacher_noise": 1.0}))) == {"world.teacher_noise"}
    # a field the old run's config.json does not have (added since) counts as its default
    older = {**saved, "world": {k: v for k, v in saved["world"].items() if k != "student_slip_kind"}}
    assert T.config_differences(older, _cfg(tmp_path / "b")) == {}
    assert set(T.config_differences(older, _cfg(tmp_path / "b", world={"student_slip_kind": "carry"}))) == \
        {"world.student_slip_kind"}


def test_a_checkpoint_without_its_config_is_refused(tmp_path, no_model_loads):
    _old_run(tmp_path / "run")
    (tmp_path / "run" / "config.json").unlink()
    with pytest.raises(ConfigError, match="without the config.json"):
        T.train(_cfg(tmp_path / "run"), verbose=False)


def test_restart_deletes_the_old_run_and_starts_over(tmp_path, char_tokenizer, monkeypatch, capsys):
    out = tmp_path / "run"
    T.train(_cfg(out, method="opd"), world=make_tiny_world(char_tokenizer), verbose=False)
    with pytest.raises(ConfigError, match="differing in method"):
        T.train(_cfg(out, method="gate_only"), world=make_tiny_world(char_tokenizer), verbose=False)
    history = T.train(_cfg(out, method="gate_only"), world=make_tiny_world(char_tokenizer), verbose=False,
                      restart=True)
    assert [m["step"] for m in history] == [0, 1]                  # from step 0, not the old step 2
    assert json.loads((out / "config.json").read_text())["method"] == "gate_only"
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert "frac_gated" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])

    # the same from the command line: --restart (the tiny world replaced by random-init models)
    monkeypatch.setattr(T, "load_world", lambda cfg, verbose=True: make_tiny_world(char_tokenizer))
    args = ["train", "--quiet", *[f"{k}={v}" for k, v in SMALL.items()], f"out_dir={out}", "method=opd"]
    assert main(args) == 2 and "method ('gate_only' there, 'opd' now)" in capsys.readouterr().err
    assert main(["--restart" if a == "--quiet" else a for a in args]) == 0
    assert json.loads((out / "config.json").read_text())["method"] == "opd"


def test_more_steps_continue_a_finished_run_and_fewer_are_refused(tmp_path, char_tokenizer):
    out = tmp_path / "run"
    T.train(_cfg(out, steps=2), world=make_tiny_world(char_tokenizer), verbose=False)
    more = T.train(_cfg(out, steps=3), world=make_tiny_world(char_tokenizer), verbose=False)
    assert [m["step"] for m in more] == [2]
    assert json.loads((out / "config.json").read_text())["steps"] == 3    # the file says what ran last
    with pytest.raises(ConfigError, match="at step 3, past steps=2"):
        T.train(_cfg(out, steps=2), world=make_tiny_world(char_tokenizer), verbose=False)


def _steps(out):
    """metrics.jsonl without the wall-clock numbers."""
    drop = ("time_", "eval_seconds", "eval_unseen_seconds")
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(drop)}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _training(record):
    return {k: v for k, v in record.items() if not k.startswith("eval_")}


def test_extending_a_finished_run_equals_one_uninterrupted_run(tmp_path, char_tokenizer):
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    T.train(_cfg(straight, steps=3), world=make_tiny_world(char_tokenizer), verbose=False)
    T.train(_cfg(extended, steps=2), world=make_tiny_world(char_tokenizer), verbose=False)   # evaluates at 2
    T.train(_cfg(extended, steps=3), world=make_tiny_world(char_tokenizer), verbose=False)
    _same_weights(_weights(straight), _weights(extended))
    a, b = _steps(straight), _steps(extended)
    assert [m["step"] for m in b] == [0, 1, 2]
    assert a[0] == b[0] and a[2] == b[2]               # the final evaluation too
    # step 1 closed the first run: its record keeps that run's evaluation, and nothing else differs
    assert "eval_avg@2" in b[1] and "eval_avg@2" not in a[1] and _training(b[1]) == a[1]


def test_evaluation_draws_from_a_copy_of_the_training_random_state(tmp_path, char_tokenizer):
    def run(name, **kw):
        T.train(_cfg(tmp_path / name, **kw), world=make_tiny_world(char_tokenizer), verbose=False)
        return _steps(tmp_path / name)

    final_only = run("final_only")
    every_step = run("every_step", eval_every=1)
    # evaluating after every step changes no training step, and the final evaluation is the same
    assert [_training(m) for m in every_step] == [_training(m) for m in final_only]
    assert every_step[-1] == final_only[-1] and "eval_avg@2" in every_step[0]
    # the old rule, kept for runs that must re-run exactly: with the final evaluation only, it
    # logs the same numbers (so runs that evaluated only at the end are unchanged by the new rule)
    assert run("shared", eval_rng="shared") == final_only


def test_a_changed_data_file_behind_the_same_path_is_refused(tmp_path, char_tokenizer, no_model_loads):
    from sgopd_lite.data import arithmetic_split, load_jsonl, save_jsonl

    data, out = tmp_path / "train.jsonl", tmp_path / "run"
    save_jsonl(arithmetic_split("train")[:32], data)
    world = make_tiny_world(char_tokenizer)
    world.train_problems = load_jsonl(data)
    T.train(_cfg(out, steps=1, world={"train_data": str(data)}), world=world, verbose=False)
    fingerprint = json.loads((out / "checkpoint" / "run.json").read_text())
    assert fingerprint["processes"] == 1 and fingerprint["device"] == "cpu"
    assert set(fingerprint["data"]) == {"train", "eval", "unseen"}   # the committed held-out splits included

    save_jsonl(arithmetic_split("train")[1:33], data)            # same path, other content
    with pytest.raises(ConfigError) as err:
        T.train(_cfg(out, steps=2, world={"train_data": str(data)}), verbose=False)
    msg = str(err.value)
    assert "\n" not in msg and f"train data file {data} (sha256 " in msg and "--restart" in msg


def test_other_package_versions_only_warn(tmp_path, char_tokenizer, monkeypatch):
    import sgopd_lite

    out = tmp_path / "run"
    T.train(_cfg(out, steps=1), world=make_tiny_world(char_tokenizer), verbose=False)
    monkeypatch.setattr(sgopd_lite, "__version__", "9.9.9")
    with pytest.warns(UserWarning, match=r"other package versions \(sgopd_lite .* there, 9\.9\.9 now\)"):
        more = T.train(_cfg(out, steps=2), world=make_tiny_world(char_tokenizer), verbose=False)
    assert [m["step"] for m in more] == [1]


def test_two_processes_resume_each_its_own_random_states(tmp_path, no_model_loads):
    """Two CPU processes (torchrun, gloo): stopped after 2 steps and resumed, the run takes the
    same third step as the uninterrupted one; then one process may not resume it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
           str(ROOT / "tests" / "dist_resume_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)   # a hang fails
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["saved_torch_rng"] != results[1]["saved_torch_rng"]   # each saved its own
    for r in results:
        assert r["world_size"] == 2
        assert r["weights_max_abs_diff"] == 0.0, r
        assert r["resumed"] == r["straight"] and r["resumed"][0]["step"] == 2

    from sgopd_lite.config import config_from_dict

    saved = json.loads((tmp_path / "resumed" / "config.json").read_text())
    with pytest.raises(ConfigError, match=r"processes \(2 there, 1 now\)"):
        T.train(config_from_dict({**saved, "steps": 4}), verbose=False)


# A process killed with SIGKILL in the middle of a step (after sampling its rollouts, before the
# update), on the committed tiny world, through the command line.
_KILLER = """
import os, signal, sys
from sgopd_lite import train as T
from sgopd_lite.__main__ import main
collect = T.Trainer.collect
def collect_then_die(self, k):
    batch = collect(self, k)
    if k == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return batch
T.Trainer.collect = collect_then_die
sys.exit(main(sys.argv[1:]))
"""
RUN = ["steps=5", "method=sgopd", "pts.k1=1", "pts.k2=3", "pts.m=2", "prompts_per_step=2", "group_size=4",
       "max_new_tokens=40", "eval_every=2", "eval_problems=2", "eval_n=2", "save_every=2", "log_rollouts=1"]


def _train(out, *extra, quiet=True, script=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    head = ["-c", script] if script else ["-m", "sgopd_lite"]
    flags = ["--quiet"] if quiet else []
    return subprocess.run([sys.executable, *head, "train", *flags, *RUN, *extra, f"out_dir={out}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def _log(out):
    drop = ("time_", "eval_seconds", "eval_unseen_seconds")
    return [{k: v for k, v in json.loads(line).items() if not k.startswith(drop)}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_run_killed_mid_step_refuses_another_config_and_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert _train(straight).returncode == 0

    proc = _train(killed, script=_KILLER)
    assert proc.returncode == -signal.SIGKILL
    assert [m["step"] for m in _log(killed)] == [0, 1, 2]          # step 2 logged after the checkpoint at 2
    assert not (killed / "final").exists()

    other = _train(killed, "seed=1")                               # another run may not continue it
    assert other.returncode == 2 and "seed (0 there, 1 now)" in other.stderr

    proc = _train(killed, quiet=False)                             # the same run resumes it
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"resumed from {killed / 'checkpoint'} at step 2" in proc.stdout
    assert _log(killed) == _log(straight)                          # every step's metrics, evaluations too
    a, b = load_file(straight / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_out_dir_names_the_method_and_seed_when_asked():
    from sgopd_lite.config import ConfigError, TrainConfig, load_config

    assert TrainConfig(method="hybrid", seed=3, out_dir="runs/x/{method}-s{seed}").out_dir == "runs/x/hybrid-s3"
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    assert load_config(str(tiny), ["method=opd"]).out_dir == "runs/tiny/opd"
    with pytest.raises(ConfigError, match="out_dir"):
        TrainConfig(out_dir="runs/{lr}")
