"""The package's import graph, read from the source with `ast` (nothing is imported):

* no import circle anywhere, counting EVERY import statement of every module: module level,
  inside functions, under `if TYPE_CHECKING:`. (An import inside a function hides a circle from
  a test that merely imports every module; this one does not.)
* models.py, the generic loading, imports no world module (no module whose name contains
  "world"), so a world may build on it and never the other way round;
* every module opens with a docstring.

An edge is an import statement naming a module of the package: `from . import tiny` in
sgopd_lite/worlds/__init__.py is an edge to sgopd_lite.worlds.tiny, `from ..models import X`
an edge to sgopd_lite.models. (Python also runs a package's __init__ before a submodule; that
implicit step is not an import statement and is not counted.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "sgopd_lite"
PACKAGE = PACKAGE_DIR.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imports_of(name: str, path: Path, modules=MODULES) -> set[str]:
    """Modules of the package that `name`'s import statements (anywhere in the file) name."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]        # the package `from .` means
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # `from pkg import sub` names the submodule when there is one, else pkg itself
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                       for alias in node.names]
        else:
            continue
        for target in targets:
            # `import sgopd_lite.worlds.tiny` or `from sgopd_lite.x.y import z`: the longest known module
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (a list of modules, first = last), or None."""
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_the_graph_sees_imports_inside_functions_and_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""p"""\n')
    (pkg / "a.py").write_text('"""a"""\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n')
    (pkg / "b.py").write_text('"""b"""\ndef f():\n    from .sub import c\n')
    (pkg / "sub" / "__init__.py").write_text('"""s"""\n')
    (pkg / "sub" / "c.py").write_text('"""c"""\ndef g():\n    import pkg.a\n')
    mods = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py",
            "pkg.sub": pkg / "sub" / "__init__.py", "pkg.sub.c": pkg / "sub" / "c.py"}
    graph = {n: imports_of(n, p, mods) for n, p in mods.items()}
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_circle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_no_import_circle_in_the_package():
    assert f"{PACKAGE}.worlds.tiny" in GRAPH and GRAPH[f"{PACKAGE}.worlds"], "the graph must see the worlds"
    circle = find_circle(GRAPH)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_models_imports_no_world():
    worlds = sorted(m for m in GRAPH[f"{PACKAGE}.models"] if "world" in m)
    assert not worlds, f"models.py (generic loading) imports world modules: {worlds}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_opens_with_a_docstring(name):
    assert ast.get_docstring(ast.parse(MODULES[name].read_text())), f"{name} has no module docstring"
