"""A built wheel carries what it needs: installed into an empty folder, with an empty model
cache and no checkout anywhere near, `python -m sgopd_lite eval --model tiny-student` runs from
another folder on the committed splits and tiny models (package data, sgopd_lite/assets/).

The wheel is built offline from a copy of the sources (`pip wheel --no-deps
--no-build-isolation`, with the setuptools of this environment: the `dev` extra names it), so
no build folder lands in the checkout. About 10 s; marked `wheel`, which `make test` selects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.wheel


def _pip(*args, cwd=None):
    out = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"pip {args[0]} failed:\n{out.stdout}\n{out.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder, wheel path): the wheel built from a copy of the sources, installed with --target."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (the dev extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "sgopd_lite", src / "sgopd_lite", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _pip("wheel", "--no-build-isolation", "-w", str(tmp / "dist"), str(src))
    wheel = next((tmp / "dist").glob("sgopd_lite-*.whl"))
    _pip("install", "--target", str(tmp / "site"), str(wheel))
    return tmp / "site", wheel


def test_the_wheel_holds_the_splits_and_the_tiny_models(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sgopd_lite/assets/arith_eval.jsonl", "sgopd_lite/assets/arith_train.jsonl"} <= names
    committed = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sgopd_lite" / "assets" / "tiny").rglob("*")
                 if p.is_file()}
    assert committed and committed <= names, sorted(committed - names)[:5]


def test_installed_wheel_evaluates_the_tiny_student_from_another_folder(installed, tmp_path):
    site, _ = installed
    elsewhere, cache = tmp_path / "elsewhere", tmp_path / "empty-cache"
    elsewhere.mkdir()
    cache.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "SGOPD_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    where = subprocess.run([sys.executable, "-c", "import sgopd_lite; print(sgopd_lite.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    out = subprocess.run([sys.executable, "-m", "sgopd_lite", "eval", "--model", "tiny-student", "--n", "2",
                          "--limit", "4", "--json", "result.json"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "| tiny-student | eval | 4 |" in out.stdout
    assert (elsewhere / "result.json").is_file()          # outputs go under the current folder
    assert not any(cache.iterdir()), "nothing may be built: the tiny models are package data"


def test_outputs_go_to_the_checkout_or_the_current_folder(tmp_path):
    from sgopd_lite.assets import asset_dir, project_dir

    assert project_dir(ROOT / "notebooks") == ROOT
    assert project_dir(tmp_path) == tmp_path.resolve()
    assert (asset_dir() / "arith_eval.jsonl").is_file() and asset_dir().parent.name == "sgopd_lite"
