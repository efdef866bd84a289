"""Phased teacher sampling (PTS): the schedule of the auxiliary loss weight (docs/method.md §6).

    w(k) = w0                                                 k <  K1     warm: teacher mixing on
    w(k) = w0 * 0.5 * (1 + cos(pi * (k - K1) / (K2 - K1)))    K1 <= k < K2   cosine decay
    w(k) = 0                                                  k >= K2     pure gated OPD

k counts optimizer steps from 0. With K1 == K2 the weight drops straight from w0 to 0.
While w(k) > 0, ceil(rho * B) prompts of a batch of B (at least one) also get M teacher
rollouts; the verifier keeps the correct ones and they enter L = L_SG + w(k) * L_CE.

The paper gives no values for w0, K1, K2, rho and M. The defaults below are this project's
starting point for the tiny world (a short cold-start phase, a quarter of the prompts); the
trainer's configs are the place to tune them.

May import: the standard library, numpy and torch (the ground floor: pure functions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PTSConfig:
    """Knobs of phased teacher sampling. `enabled=False` makes w(k) = 0 everywhere."""

    enabled: bool = True   # off: pure gated OPD from step 0
    w0: float = 1.0        # weight of L_CE during the warm phase
    k1: int = 50           # last warm step + 1 (steps 0 .. K1-1 use w0)
    k2: int = 150          # first step with w = 0 (cosine decay over K1 .. K2-1)
    rho: float = 0.25      # fraction of a batch's prompts that also get teacher rollouts
    m: int = 4             # teacher rollouts per chosen prompt (only the correct ones are kept)

    def __post_init__(self):
        if not (isinstance(self.w0, (int, float)) and 0 <= self.w0 < float("inf")):
            raise ValueError(f"PTSConfig.w0 must be a finite number >= 0, got {self.w0!r}")
        if not (isinstance(self.k1, int) and isinstance(self.k2, int) and 0 <= self.k1 <= self.k2):
            raise ValueError(f"PTSConfig needs integers 0 <= k1 <= k2, got k1={self.k1!r}, k2={self.k2!r}")
        if not 0 < self.rho <= 1:
            raise ValueError(f"PTSConfig.rho must be in (0, 1], got {self.rho!r}")
        if not (isinstance(self.m, int) and self.m >= 1):
            raise ValueError(f"PTSConfig.m must be an integer >= 1, got {self.m!r}")


def pts_weight(step, cfg: PTSConfig = PTSConfig()):
    """w(k) for one step (int -> float) or many (numpy array or torch tensor -> same kind).

    step: optimizer step(s) k >= 0.
    """
    if isinstance(step, (int, np.integer)):
        return float(_weights(np.asarray([int(step)]), cfg)[0])
    try:
        import torch
        if isinstance(step, torch.Tensor):
            return torch.as_tensor(_weights(step.detach().cpu().numpy(), cfg), dtype=torch.float32,
                                   device=step.device)
    except ImportError:  # pragma: no cover - torch is a dependency, but the schedule needs none
        pass
    return _weights(np.asarray(step), cfg)


def _weights(k: np.ndarray, cfg: PTSConfig) -> np.ndarray:
    if k.size and (not np.issubdtype(k.dtype, np.integer) and not np.all(k == np.floor(k))):
        raise ValueError("pts_weight expects whole optimizer steps")
    if k.size and k.min() < 0:
        raise ValueError(f"pts_weight expects steps >= 0, got {int(k.min())}")
    k = k.astype(np.float64)
    if not cfg.enabled:
        return np.zeros_like(k)
    span = max(cfg.k2 - cfg.k1, 1)  # unused when k1 == k2: no step falls in [k1, k2)
    decay = cfg.w0 * 0.5 * (1.0 + np.cos(np.pi * (k - cfg.k1) / span))
    return np.where(k < cfg.k1, cfg.w0, np.where(k < cfg.k2, decay, 0.0))


def teacher_prompt_count(step: int, batch_size: int, cfg: PTSConfig = PTSConfig()) -> int:
    """How many of a batch's B prompts get teacher rollouts at step k (docs/method.md §6).

    0 once w(k) = 0; otherwise ceil(rho * B), at least 1 and at most B.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if pts_weight(step, cfg) <= 0.0:
        return 0
    # rho * B in floating point can land just above an integer (0.3 * 10 = 3.0000000000000004):
    # round away that noise before the ceiling.
    return min(batch_size, max(1, math.ceil(round(cfg.rho * batch_size, 9))))
