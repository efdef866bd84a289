"""Phased teacher sampling schedule (docs/method.md §6)."""

import math

import numpy as np
import pytest
import torch

from sgopd_lite.scheduler import PTSConfig, pts_weight, teacher_prompt_count


def test_three_phases_with_cosine_decay():
    cfg = PTSConfig(w0=0.8, k1=10, k2=30)
    assert pts_weight(0, cfg) == 0.8 and pts_weight(9, cfg) == 0.8       # warm
    assert pts_weight(10, cfg) == pytest.approx(0.8)                    # decay starts at w0
    assert pts_weight(20, cfg) == pytest.approx(0.4)                    # half-way: w0 / 2
    assert pts_weight(25, cfg) == pytest.approx(0.8 * 0.5 * (1 + math.cos(math.pi * 15 / 20)))
    assert pts_weight(30, cfg) == 0.0 and pts_weight(10_000, cfg) == 0.0  # pure gated OPD


def test_vectorised_forms_agree_with_scalar():
    cfg = PTSConfig(w0=1.0, k1=5, k2=17)
    steps = np.arange(25)
    arr = pts_weight(steps, cfg)
    ten = pts_weight(torch.arange(25), cfg)
    scalar = [pts_weight(int(k), cfg) for k in steps]
    assert isinstance(arr, np.ndarray) and isinstance(ten, torch.Tensor)
    np.testing.assert_allclose(arr, scalar)
    np.testing.assert_allclose(ten.numpy(), scalar, rtol=1e-6)
    assert np.all(np.diff(arr) <= 1e-12)                               # never increases


def test_k1_equal_k2_drops_straight_to_zero():
    cfg = PTSConfig(w0=0.5, k1=7, k2=7)
    assert pts_weight(6, cfg) == 0.5 and pts_weight(7, cfg) == 0.0


def test_disabled_is_zero_everywhere():
    assert not np.any(pts_weight(np.arange(100), PTSConfig(enabled=False)))


def test_teacher_prompt_count():
    cfg = PTSConfig(rho=0.3, k1=2, k2=4)
    assert teacher_prompt_count(0, 10, cfg) == 3       # ceil(0.3 * 10) despite 3.0000000000000004
    assert teacher_prompt_count(0, 1, cfg) == 1        # at least one
    assert teacher_prompt_count(3, 7, cfg) == 3        # decay phase, w > 0: ceil(2.1)
    assert teacher_prompt_count(4, 10, cfg) == 0       # w = 0: none
    assert teacher_prompt_count(0, 4, PTSConfig(rho=1.0)) == 4


@pytest.mark.parametrize("kwargs, field", [
    ({"k1": 10, "k2": 5}, "k1"), ({"rho": 0.0}, "rho"), ({"rho": 1.5}, "rho"),
    ({"w0": -1.0}, "w0"), ({"m": 0}, "m"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PTSConfig(**kwargs)


def test_negative_or_fractional_steps_are_errors():
    with pytest.raises(ValueError, match=">= 0"):
        pts_weight(-1)
    with pytest.raises(ValueError, match="whole"):
        pts_weight(np.array([0.5]))
