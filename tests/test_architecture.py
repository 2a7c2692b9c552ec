"""The package's shape: no import circle, small modules, layers that point one way, one owner per constant."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "kdmed"
#: modules may be a little longer than this; none may be much longer
MAX_LINES = 420


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path, modules: set[str], package: str) -> set[str]:
    """kdmed modules ``path`` imports at module level or inside functions (absolute and relative)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never imported when the code runs
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != "kdmed":
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """``{module: kdmed modules it imports}`` for every module of the package."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(path, set(mods), package) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "active"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # a package's __init__ importing its own submodules is how a package exports: not a circle
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "active":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    assert _cycles(import_graph()) == []
    # the check finds one when there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_layers_point_one_way():
    graph = import_graph()
    assert graph["kdmed.distributed"] == set()  # a leaf of process-group helpers
    assert graph["kdmed.numerics"] == set() and graph["kdmed.fingerprint"] == set()
    lower = {"kdmed.config", "kdmed.store", "kdmed.runner", "kdmed.grid", "kdmed.train", "kdmed.strategies"}
    upper = {"kdmed.study", "kdmed.experiments", "kdmed.analysis", "kdmed.claims", "kdmed.book", "kdmed.plots"}
    for low in lower:
        assert not graph[low] & upper, (low, graph[low] & upper)
    assert "kdmed.runner" not in graph["kdmed.store"] and "kdmed.store" not in graph["kdmed.config"]


@pytest.mark.parametrize("name,path", sorted(_modules().items()))
def test_every_module_is_small_and_says_its_job(name, path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{name} has {len(text.splitlines())} lines"
    assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring"


def test_each_constant_has_one_owner():
    owners: dict[str, list[str]] = {}
    for name, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_"):
                    owners.setdefault(t.id, []).append(name)
    # the same word in two rooms for two different things is allowed when listed here, with why
    allowed = {"TASKS": "multilabel/multiclass/binary (data) vs the loss module's check of the same names"}
    twice = {k: v for k, v in owners.items() if len(v) > 1 and k not in allowed}
    assert twice == {}
