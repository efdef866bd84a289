"""The package's data, shipped inside the wheel, and where a run's outputs go.

    arith_*.jsonl   the committed arithmetic splits: eval, train, eval_skills, eval_unseen (`python -m sgopd_lite data`)
    tiny/           the seven committed tiny-world models (tiny/README.md)

`asset_dir()` finds this folder through `importlib.resources`, so a built wheel installed
anywhere finds its data. Outputs never go next to the data: `project_dir()` is the repository
(results/, docs/, configs/) when the current folder is inside a checkout, else the current
folder, and runs write under it.

May import: the standard library only.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset_dir() -> Path:
    """This folder, as a path on disk (the package is installed as files, never zipped)."""
    return Path(str(files(__name__)))


def asset_path(*parts: str) -> Path:
    """A file or folder of the package data, e.g. asset_path("tiny")."""
    return asset_dir().joinpath(*parts)


def project_dir(start: Path | None = None) -> Path:
    """The sgopd_lite checkout holding the current folder (the nearest folder, going up, whose
    pyproject.toml names the project), else the current folder itself."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "sgopd_lite"' in pyproject.read_text(errors="replace"):
            return folder
    return here
