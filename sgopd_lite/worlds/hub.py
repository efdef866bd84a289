"""The hub world: a pretrained pair read with `from_pretrained`, the paper-scale Qwen pair by
default (size "qwen", GPU) or any two folders / hub ids (size "custom", or `world.teacher` /
`world.student` on any size but tiny).

Nothing is built here and tests never download anything: the user fetches the models (or sets
HF_HUB_OFFLINE=1 to make sure nothing is downloaded).

May import: worlds.base, models (generic loading). Never another world.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import ModelConfig, ModelPair, load_models
from .base import World, model_config, problem_sets

NAME = "hub"

# Hub ids of the paper-scale pair (size = "qwen"). Documented here, never downloaded by tests.
QWEN_TEACHER = "Qwen/Qwen2.5-Math-1.5B-Instruct"   # 1.5B, 28 layers, 151,936 embedding rows
QWEN_STUDENT = "Qwen/Qwen2.5-0.5B-Instruct"        # 0.5B, 24 layers, 151,936 embedding rows


@dataclass(frozen=True)
class HubWorldConfig:
    """Which pretrained pair a run trains on (from `TrainConfig.world`)."""

    teacher: str = QWEN_TEACHER   # path or hub id
    student: str = QWEN_STUDENT   # path or hub id


def world_config(w) -> HubWorldConfig:
    """The hub world's config from a `TrainConfig.world` section (its paths, else the Qwen pair)."""
    return HubWorldConfig(teacher=w.teacher or QWEN_TEACHER, student=w.student or QWEN_STUDENT)


def model_pair(cfg: ModelConfig, tokenizer=None, verbose: bool = True) -> ModelPair:
    """The pair of `cfg` as a ModelPair: its explicit paths, else (size "qwen") the Qwen pair."""
    teacher, student = cfg.teacher, cfg.student
    if cfg.size == "qwen":
        teacher, student = teacher or QWEN_TEACHER, student or QWEN_STUDENT
    return load_models(cfg, tokenizer, verbose, teacher_path=teacher, student_path=student)


def load(cfg, verbose: bool = True) -> World:
    """The World of a run (`cfg`: TrainConfig) whose models come from folders or the hub."""
    train, held_out = problem_sets(cfg.world)
    pair = model_pair(model_config(cfg.world), verbose=verbose)
    return World(pair.tokenizer, pair.teacher, pair.student, train, held_out, vocab_size=pair.vocab_size)


def report(teacher: str = QWEN_TEACHER, student: str = QWEN_STUDENT, verbose: bool = True) -> list[dict]:
    """The pair this world loads by default (nothing is downloaded or evaluated here)."""
    rows = [{"role": "teacher", "model": teacher}, {"role": "student", "model": student}]
    if verbose:
        for row in rows:
            print(f"hub {row['role']}: {row['model']} (read with from_pretrained; the Qwen pair needs a GPU "
                  "and a download: docs/gpu_plan.md)", flush=True)
    return rows
