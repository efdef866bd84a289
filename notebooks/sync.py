"""Pair every notebook source `notebooks/NN_*.py` (jupytext percent format, the reviewed copy)
with its `.ipynb` and strip the `.ipynb` of outputs: what `make notebooks` runs.

    python notebooks/sync.py            # sync all, then clear outputs of the .ipynb files
    python notebooks/sync.py --check    # exit 1 if any pair is out of sync or holds outputs

`jupytext --sync` takes the more recently edited of the two files as the source, so an edit made
in Jupyter (which saves both) or in the .py both survive; cell ids of an existing .ipynb are kept,
so the committed .ipynb only changes where a cell changed. The .ipynb exists for Colab and
GitHub's viewer and is committed without outputs (tests/test_notebooks.py checks both).

`REPO_URL` below is the one place the project's repository is written: sync copies it into
every notebook's Colab install cell and into the Colab badges of notebooks/README.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
FORMATS = "ipynb,py:percent"

# The project's public repository. A placeholder until the project is published: while it holds
# "/OWNER/", every notebook's install cell stops in Colab and says what to set.
REPO_URL = "https://github.com/OWNER/sgopd_lite"
BRANCH = "main"

_URL_LINE = re.compile(r'^REPO_URL = "[^"]*"', re.M)
_BADGES = re.compile(r"<!-- colab badges.*?<!-- end colab badges -->", re.S)


def colab_url(notebook: str) -> str:
    """Colab's address of a committed notebook (name without suffix) of REPO_URL."""
    repo = REPO_URL.removeprefix("https://github.com/").removesuffix(".git")
    return f"https://colab.research.google.com/github/{repo}/blob/{BRANCH}/notebooks/{notebook}.ipynb"


def badges() -> str:
    """The Colab badge block of notebooks/README.md, written from REPO_URL."""
    rows = [f"| [{py.stem}]({py.stem}.py) | [![Open in Colab](https://colab.research.google.com/assets/"
            f"colab-badge.svg)]({colab_url(py.stem)}) |" for py in sources()]
    return ("<!-- colab badges: written by notebooks/sync.py from its REPO_URL (make notebooks) -->\n"
            "| notebook | Colab |\n|---|---|\n" + "\n".join(rows) + "\n<!-- end colab badges -->")


def repo_url_problems() -> list[str]:
    """Where a notebook's install cell or the README's badges do not carry REPO_URL."""
    problems = [f"{py.name}: its install cell must set REPO_URL = {REPO_URL!r} (make notebooks)"
                for py in sources() if _URL_LINE.findall(py.read_text()) != [f'REPO_URL = "{REPO_URL}"']]
    if _BADGES.findall((HERE / "README.md").read_text()) != [badges()]:
        problems.append("README.md: the Colab badges do not match REPO_URL (make notebooks)")
    return problems


def write_repo_url() -> None:
    """Copy REPO_URL into every notebook source and the README's badge block."""
    for py in sources():
        text = py.read_text()
        new = _URL_LINE.sub(f'REPO_URL = "{REPO_URL}"', text)
        if new != text:
            py.write_text(new)
    readme = HERE / "README.md"
    text = readme.read_text()
    new = _BADGES.sub(lambda _: badges(), text)
    if new != text:
        readme.write_text(new)


def sources() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def cell_sources(nb) -> list[tuple[str, str, tuple]]:
    """What must agree between the two files: type, text and tags of every cell."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


def out_of_sync(py: Path) -> str | None:
    """A message if `py` and its .ipynb differ (or the .ipynb is missing), else None."""
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.is_file():
        return f"{ipynb.name} is missing"
    a, b = cell_sources(jupytext.read(py)), cell_sources(nbformat.read(ipynb, as_version=4))
    if a == b:
        return None
    if len(a) != len(b):
        return f"{py.name} has {len(a)} cells, {ipynb.name} has {len(b)}"
    first = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"cell {first} differs between {py.name} and {ipynb.name}"


def has_outputs(ipynb: Path) -> bool:
    nb = nbformat.read(ipynb, as_version=4)
    return any(c.get("outputs") or c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code")


def clear_outputs(ipynb: Path) -> bool:
    """Remove outputs and execution counts; returns True if the file changed."""
    nb = nbformat.read(ipynb, as_version=4)
    changed = False
    for c in nb.cells:
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None):
            c.outputs, c.execution_count = [], None
            changed = True
    if changed:
        nbformat.write(nb, ipynb)
    return changed


def main(argv: list[str]) -> int:
    if "--check" in argv:
        problems = repo_url_problems() + [msg for py in sources() if (msg := out_of_sync(py))]
        problems += [f"{py.with_suffix('.ipynb').name} holds outputs" for py in sources()
                     if py.with_suffix(".ipynb").is_file() and has_outputs(py.with_suffix(".ipynb"))]
        for msg in problems:
            print(msg)
        return 1 if problems else 0
    write_repo_url()
    for py in sources():
        ipynb = py.with_suffix(".ipynb")
        args = ["--set-formats", FORMATS] if not ipynb.is_file() else ["--sync"]
        subprocess.run([sys.executable, "-m", "jupytext", *args, str(py)], check=True)
        if clear_outputs(ipynb):
            print(f"cleared outputs of {ipynb.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
