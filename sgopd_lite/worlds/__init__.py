"""The worlds a run can train on, one module each, and the one dispatch by name.

    base.py   World (what a run trains on), problem sets, the shared SFT batch
    tiny.py   a ~1M-parameter teacher / student pair trained here on CPU in minutes, with two
              knobs that break OPD's assumptions on purpose (style_gap: A1, teacher_noise: A2)
    smol.py   SmolLM2-135M-Instruct, offline, teacher and student after short cached fine-tunes
    hub.py    a pretrained pair from folders or the hub: the paper-scale Qwen pair by default

Every world module has the same small interface: `world_config(w)` (its config from a run's
`TrainConfig.world`), `load(cfg, verbose)` -> World, `model_pair(model_cfg)` -> ModelPair, and
`report(...)` (`python -m sgopd_lite world --size NAME --report`).

May import: its own modules (only inside functions, so that importing the package stays cheap),
models and data through them. models.py never imports a world.
"""

from __future__ import annotations

from .base import World

# size (TrainConfig.world.size, ModelConfig.size) -> the module of its world
WORLD_OF_SIZE = {"tiny": "tiny", "smol": "smol", "qwen": "hub", "custom": "hub"}
# world module -> the optional World fields it fills (read before any model loads, so that a
# method that needs one is refused early; a test checks this against the loaded worlds)
WORLD_PROVIDES = {"tiny": ("token_oracle", "step_checker"), "smol": ("step_checker",), "hub": ()}

__all__ = ["World", "WORLD_OF_SIZE", "WORLD_PROVIDES", "world_module", "load_world", "load_models", "report"]


def world_module(size: str):
    """The world module of a size: tiny -> worlds.tiny, smol -> worlds.smol, qwen/custom -> worlds.hub."""
    name = WORLD_OF_SIZE.get(size)
    if name == "tiny":
        from . import tiny as module
    elif name == "smol":
        from . import smol as module
    elif name == "hub":
        from . import hub as module
    else:
        raise ValueError(f"unknown world size {size!r}; expected one of {sorted(WORLD_OF_SIZE)}")
    return module


def load_world(cfg, verbose: bool = True) -> World:
    """Tokenizer, teacher, student and problem sets for `cfg.world` (cfg: TrainConfig).

    Explicit `world.teacher` / `world.student` paths replace the size's default models (smol,
    qwen); the tiny size refuses them (it builds its own pair).
    """
    from .base import unseen_set

    world = world_module(cfg.world.size).load(cfg, verbose=verbose)
    world.unseen_problems = unseen_set(cfg.world)
    return world


def load_models(cfg=None, tokenizer=None, verbose: bool = True, **tiny_kwargs):
    """The teacher / student pair of `cfg.size` (a models.ModelConfig) as a checked ModelPair:
    the size's default pair from its world, or the explicit paths of `cfg`.

    size "tiny" takes `load_tiny_pair` keywords (style_gap=, teacher_noise=, ...).
    """
    from ..models import ModelConfig

    cfg = cfg or ModelConfig()
    if cfg.size == "tiny":
        return world_module("tiny").model_pair(cfg, tokenizer, verbose, **tiny_kwargs)
    if tiny_kwargs:
        raise TypeError(f"load_models: {sorted(tiny_kwargs)} only apply to size='tiny'")
    return world_module(cfg.size).model_pair(cfg, tokenizer, verbose)


def report(size: str, **kwargs):
    """A world's report (`python -m sgopd_lite world --size SIZE --report`)."""
    return world_module(size).report(**kwargs)
