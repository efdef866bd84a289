"""Experiment trackers through accelerate: config checks, and a TensorBoard run read back."""

import importlib.util

import pytest

from conftest import make_tiny_world
from sgopd_lite.config import ConfigError, TrainConfig, flat_config, load_config
from sgopd_lite.train import Trainer


def _cfg(tmp_path, **kw):
    base = dict(method="gate_only", steps=2, prompts_per_step=2, group_size=2, max_new_tokens=8,
                eval_every=0, eval_problems=2, eval_n=2, save_every=0, log_rollouts=0,
                out_dir=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def test_report_to_defaults_to_nothing_and_rejects_unknown_trackers():
    assert TrainConfig().report_to == []
    with pytest.raises(ConfigError, match="report_to"):
        TrainConfig(report_to=["mlflow"])
    with pytest.raises(ConfigError, match="report_to"):
        load_config(None, ["report_to=3"])


def test_report_to_accepts_a_single_name_from_the_command_line():
    pytest.importorskip("tensorboard")
    assert load_config(None, ["report_to=tensorboard"]).report_to == ["tensorboard"]
    assert load_config(None, ["report_to=[tensorboard]"]).report_to == ["tensorboard"]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_missing_wandb_is_a_clear_config_error():
    # raised by the config itself, so before any model is loaded
    with pytest.raises(ConfigError, match="report_to.*'wandb' package"):
        TrainConfig(report_to=["wandb"])


def test_flat_config_has_scalar_values_only():
    flat = flat_config(TrainConfig(report_to=[]))
    assert flat["gate.lambda_e"] == 1.8 and flat["world.size"] == "tiny"
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in flat.values())


def test_tensorboard_run_writes_every_step_metric(tmp_path, char_tokenizer):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg(tmp_path, report_to=["tensorboard"])
    history = Trainer(cfg, world=make_tiny_world(char_tokenizer), verbose=False).run()
    events = sorted((tmp_path / "run" / "sgopd_lite").glob("events.out.tfevents.*"))
    assert events, list((tmp_path / "run").rglob("*"))
    acc = EventAccumulator(str(events[0].parent)).Reload()   # the scalars' event file(s)
    tags = set(acc.Tags()["scalars"])
    for key in ("reward_mean", "loss_pg", "grad_norm", "entropy", "kl_k3", "frac_consensus",
                "time_update", "eval_avg@2", "pts_w"):
        assert key in tags, (key, sorted(tags))
    steps = [e.step for e in acc.Scalars("loss_pg")]
    assert steps == [0, 1]
    assert acc.Scalars("reward_mean")[-1].value == pytest.approx(history[-1]["reward_mean"])
