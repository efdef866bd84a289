"""configs/accelerate/*.yaml read by accelerate's own loader and launcher, and the trainer's
refusal of backends it cannot run under. deepspeed itself need not be installed."""

import os
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from sgopd_lite.config import TrainConfig
from sgopd_lite.train import backend_problem

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"
EXPECTED = {   # file -> (distributed_type, ZeRO stage or FSDP version)
    "single_gpu.yaml": (DistributedType.NO, None),
    "multi_gpu.yaml": (DistributedType.MULTI_GPU, None),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 2),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, 3),
    "fsdp.yaml": (DistributedType.FSDP, 2),
}


def test_every_yaml_is_listed_here():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


def _launch_env(path: Path) -> tuple[dict, object]:
    """What `accelerate launch --config_file path` would put in the processes' environment."""
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "sgopd_lite", "train"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        # as accelerate's launch_command does before calling the DeepSpeed launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1], defaults
    return prepare_multi_gpu_env(args), defaults


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerate_and_gives_the_expected_backend(name, monkeypatch):
    monkeypatch.chdir(ROOT)                         # the DeepSpeed json paths are relative to the repo root
    dist_type, level = EXPECTED[name]
    cfg = load_config_from_file(str(CONFIGS / name))
    assert cfg.distributed_type == dist_type

    # every nested key is an option `accelerate launch` knows (it copies unknown ones silently)
    known = {a.dest for a in launch_command_parser()._actions}
    for key in cfg.deepspeed_config:
        assert key in known, key
    for key in cfg.fsdp_config:
        assert (key if key.startswith("fsdp_") else "fsdp_" + key) in known, key

    env, _ = _launch_env(CONFIGS / name)
    with mock.patch.dict(os.environ, env, clear=True):
        if dist_type == DistributedType.DEEPSPEED:
            plugin = DeepSpeedPlugin()              # reads the env the launcher sets, and the json
            assert plugin.zero_stage == level
            ds = plugin.deepspeed_config
            # no DataLoader is prepared, so DeepSpeed needs this as an integer
            assert isinstance(ds["train_micro_batch_size_per_gpu"], int)
            assert ds["gradient_accumulation_steps"] == 1
            assert ds["gradient_clipping"] == TrainConfig().grad_clip
            assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "false"
        elif dist_type == DistributedType.FSDP:
            plugin = FullyShardedDataParallelPlugin()
            assert plugin.fsdp_version == level
            assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
            assert plugin.cpu_ram_efficient_loading is False     # the teacher is never prepared
            assert plugin.reshard_after_forward is True


def _cfg(**kw):
    return TrainConfig(**{"prompts_per_step": 4, "group_size": 4, **kw})


@pytest.mark.parametrize("dist_type, stage, kw, refused", [
    ("NO", 0, dict(method="sgopd", micro_batch_size=2), None),
    ("MULTI_GPU", 0, dict(method="sgopd", micro_batch_size=2), None),
    ("DEEPSPEED", 2, dict(method="gate_only"), None),
    ("DEEPSPEED", 2, dict(method="gate_only", micro_batch_size=16), None),
    ("DEEPSPEED", 2, dict(method="gate_only", micro_batch_size=8), "micro_batch_size"),
    ("DEEPSPEED", 2, dict(method="sgopd"), "pts.enabled"),
    ("DEEPSPEED", 2, dict(method="sgopd", pts={"enabled": False}), None),
    ("DEEPSPEED", 2, dict(method="grpo"), None),
    ("DEEPSPEED", 3, dict(method="opd"), "DeepSpeed ZeRO-3"),
    ("FSDP", 0, dict(method="opd"), "FSDP"),
])
def test_backend_problem(dist_type, stage, kw, refused):
    problem = backend_problem(_cfg(**kw), DistributedType(dist_type), stage)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(refused), problem
