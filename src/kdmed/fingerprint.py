"""A fingerprint of the code that produces a run's numbers.

A stored result is valid only for the code that computed it. Every module of the
package counts (data generation and loading, models, losses, strategies, trainer,
metrics, the runner and the store) except :data:`PRESENTATION`: the modules that
only build configurations, read stored results, plot or render the book. A new
module counts unless it is added there.

A module's hash is the SHA-256 of its syntax tree (:func:`ast.dump`, no line
numbers) with every docstring removed, so comments, docstrings and formatting do
not invalidate results while any change of code does. The fingerprint hashes the
sorted ``{module: hash}`` table; results store the table too, so a stale result
can say which modules changed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path
from typing import Mapping

#: modules (dotted names, or packages ending in ".") that never change a stored number
PRESENTATION = (
    "kdmed",  # the package's __init__: its version string and the numerics switch (kdmed.numerics counts)
    "kdmed.analysis",
    "kdmed.benchreport",
    "kdmed.book.",
    "kdmed.claims",
    "kdmed.cli",
    "kdmed.experiments",
    "kdmed.fingerprint",
    "kdmed.inference",
    "kdmed.page",
    "kdmed.grid",  # schedules runs; each run's numbers do not depend on where or when it runs (a test)
    "kdmed.paper",
    "kdmed.plots",
    "kdmed.profiles",
    "kdmed.progress",
    "kdmed.replicates",  # a cache of bootstrap replicates for the book; no run reads it
    "kdmed.roles",
    "kdmed.study",
)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(source: str, filename: str = "<source>") -> str:
    """SHA-256 (hex) of the syntax tree of ``source`` without docstrings."""
    tree = _strip_docstrings(ast.parse(source, filename=filename))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode("utf-8")).hexdigest()


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _presentation(name: str, excluded: tuple[str, ...]) -> bool:
    return any(name == e.rstrip(".") or (e.endswith(".") and name.startswith(e)) for e in excluded)


def module_hashes(root: str | Path | None = None, package: str = "kdmed",
                  excluded: tuple[str, ...] = PRESENTATION) -> dict[str, str]:
    """``{module: hash}`` of every numbers-producing module of the package in ``root``."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent
    table = {}
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        name = _module_name(package, root, path)
        if not _presentation(name, excluded):
            table[name] = source_hash(path.read_text(encoding="utf-8"), str(path))
    return table


def fingerprint_of(table: Mapping[str, str]) -> str:
    """The fingerprint (16 hex digits) of a ``{module: hash}`` table."""
    text = "\n".join(f"{k} {v}" for k, v in sorted(table.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def code_state() -> tuple[str, tuple[tuple[str, str], ...]]:
    """This installation's fingerprint and module table (computed once per process)."""
    table = module_hashes()
    return fingerprint_of(table), tuple(sorted(table.items()))


def changed_modules(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Modules added, removed or changed between two tables, sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
