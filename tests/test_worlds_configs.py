"""configs/worlds/: one config per world of the worlds study, at its protocol, so that an ablation
started from one of them trains exactly what the study trained for that world."""

from pathlib import Path

import pytest

from sgopd_lite.config import config_to_dict, load_config
from sgopd_lite.study.sweep import from_command_line, load_study
from sgopd_lite.study.worlds_report import WORLDS

ROOT = Path(__file__).resolve().parents[1]


def test_there_is_one_config_per_world_of_the_study():
    assert sorted(p.stem for p in (ROOT / "configs" / "worlds").glob("*.yaml")) == sorted(WORLDS)


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_a_world_config_with_method_and_seed_is_the_studys_run(world):
    study = from_command_line(None, [], None, base=load_study(ROOT / "configs" / "studies" / "worlds_main.yaml"))
    runs = {run.name: cfg for run, cfg in study.plan()}
    methods = {name.split("-")[1] for name in runs}
    assert len(methods) == 8
    for method in sorted(methods):
        for seed in (0, 3):
            mine = config_to_dict(load_config(ROOT / "configs" / "worlds" / f"{world}.yaml",
                                              [f"method={method}", f"seed={seed}"]))
            theirs = config_to_dict(runs[f"{world}-{method}-s{seed}"])
            mine.pop("out_dir"), theirs.pop("out_dir")
            assert mine == theirs, (world, method, seed)
