"""Shared fixtures. The default suite is offline and CPU-only."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def char_tokenizer():
    from sgopd_lite.worlds.tiny import build_tokenizer
    return build_tokenizer()


def make_tiny_world(tokenizer, n_eval=4, seed=0):
    """A random-init teacher/student pair (seconds to build; not trained): for plumbing tests."""
    from sgopd_lite.data import arithmetic_split
    from sgopd_lite.worlds.tiny import NetConfig, make_model
    from sgopd_lite.train import World

    teacher = make_model(NetConfig(hidden=32, layers=2, heads=2, mlp=64), tokenizer, seed=seed)
    student = make_model(NetConfig(hidden=32, layers=1, heads=2, mlp=64), tokenizer, seed=seed + 1)
    return World(tokenizer, teacher.eval().requires_grad_(False), student,
                 arithmetic_split("train"), arithmetic_split("eval")[:n_eval])


@pytest.fixture
def tiny_world(char_tokenizer):
    return make_tiny_world(char_tokenizer)
