"""Reading ``src/kdmed`` as text, for the tests of the package's shape: its modules, their
imports (with the standard library's ``ast``) and the owners of its constants."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "kdmed"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(prefix: str = "kdmed") -> dict[str, Path]:
    """``{dotted name: file}`` for every module of the package whose name starts with ``prefix``."""
    found = {_module_name(p): p for p in sorted(SRC.rglob("*.py")) if "__pycache__" not in p.parts}
    return {k: v for k, v in found.items() if k == prefix or k.startswith(prefix + ".")}


def _imports(path: Path, known: set[str], package: str) -> set[str]:
    """kdmed modules ``path`` imports at module level or inside functions (absolute and relative);
    ``if TYPE_CHECKING:`` blocks never run, so they make no edge."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            # "from pkg import sub" imports the submodule; "from pkg import name" the package
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != "kdmed":
                found.add(name)
    return found


def import_graph(prefix: str = "kdmed") -> dict[str, set[str]]:
    """``{module: modules under prefix it imports}`` for every module under ``prefix``."""
    everything = modules()
    graph = {}
    for name, path in modules(prefix).items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        inside = {m for m in _imports(path, set(everything), package) if m == prefix or m.startswith(prefix + ".")}
        graph[name] = inside - {name}
    return graph


def constant_owners(prefix: str = "kdmed") -> dict[str, list[str]]:
    """``{PUBLIC_CONSTANT: modules that assign it at top level}`` under ``prefix``."""
    owners: dict[str, list[str]] = {}
    for name, path in modules(prefix).items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_"):
                    owners.setdefault(t.id, []).append(name)
    return owners
