"""The layout of ``kdmed.data``: short single-job modules, no two-way imports, one image decoder, one owner per constant."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kdmed.data

PACKAGE = Path(kdmed.data.__file__).resolve().parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = ["kdmed", "data", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes inside ``if TYPE_CHECKING:`` blocks (never run, so no import edge)."""
    out = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING":
            out |= {id(sub) for sub in ast.walk(node)}
    return out


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> set[str]:
    """Modules of ``kdmed.data`` that ``module`` imports anywhere (module level or inside functions)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            # "from pkg import sub" imports the submodule; "from pkg import name" the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {r for r in map(_resolve, targets) if r and r != module}
    return found


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_is_short_and_says_its_job(module):
    source = MODULES[module].read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_LINES, f"{module} has more than {MAX_LINES} lines"
    doc = ast.get_docstring(ast.parse(source))
    assert doc and len(doc.splitlines()[0]) > 20, f"{module} has no docstring saying its job"


def test_no_module_imports_a_module_that_imports_it_back():
    graph = {m: imports(m) for m in MODULES}
    two_way = sorted((a, b) for a in graph for b in graph[a] if a in graph[b] and a < b)
    assert two_way == []


def test_the_cache_imports_no_dataset_module():
    # the contract (base) calls the cache; the cache reads datasets through that contract only.
    assert imports("kdmed.data.cache") == set()
    assert "kdmed.data.cache" not in imports("kdmed.data.folder")


def test_one_image_decoder():
    openers = [m for m, p in MODULES.items() if "Image.open(" in p.read_text(encoding="utf-8")]
    assert openers == ["kdmed.data.images"]


def test_one_owner_per_constant():
    """``SPLITS`` and the DR label spaces are defined once; other modules import them."""
    owners: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            else:
                targets = [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_"):
                    owners.setdefault(t.id, []).append(module)
    twice = {name: mods for name, mods in owners.items() if len(mods) > 1}
    assert twice == {}
    assert owners["SPLITS"] == ["kdmed.data._io"] and kdmed.data.SPLITS == ("train", "val", "test")
    assert owners["TASKS"] == ["kdmed.data.base"] and owners["DR_TASKS"] == ["kdmed.data.grades"]


def test_old_import_paths_keep_working():
    from kdmed.data import synthetic
    from kdmed.data.retina import DR_TASKS, GRADE_CLASSES, REFERABLE_CLASSES

    assert DR_TASKS == ("grade", "referable") and GRADE_CLASSES[4] == "grade 4" and REFERABLE_CLASSES == ["referable DR"]
    for name in ("SyntheticChest", "SyntheticFundus", "CHEXPERT_CLASSES", "FINDINGS", "FUNDUS_GRADE_MIX",
                 "INSTITUTIONS", "chexpert_frontal_labels", "render_chest", "render_fundus"):
        assert hasattr(synthetic, name), name
    assert kdmed.data.dataset_class("synthetic-chest") is synthetic.SyntheticChest
    assert kdmed.data.dataset_class("synthetic-fundus") is synthetic.SyntheticFundus
