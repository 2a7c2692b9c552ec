"""The package's shape: no import circle, small modules, layers that point one way, one owner per constant."""

from __future__ import annotations

import ast

import pytest
from package_graph import constant_owners, import_graph, modules

#: modules may be a little longer than this; none may be much longer
MAX_LINES = 420


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


@pytest.mark.parametrize("name,path", sorted(modules().items()))
def test_every_module_is_small_and_says_its_job(name, path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_LINES, f"{name} has {len(text.splitlines())} lines"
    assert ast.get_docstring(ast.parse(text)), f"{name} has no module docstring"


def test_each_constant_has_one_owner():
    owners = constant_owners()
    # the same word in two rooms for two different things is allowed when listed here, with why
    allowed = {"TASKS": "multilabel/multiclass/binary (data) vs the loss module's check of the same names"}
    twice = {k: v for k, v in owners.items() if len(v) > 1 and k not in allowed}
    assert twice == {}
