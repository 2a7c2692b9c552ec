"""The layout of ``kdmed.data``: short single-job modules, no two-way imports, one image decoder, one owner per constant."""

from __future__ import annotations

import ast

import pytest
from package_graph import constant_owners, import_graph, modules

import kdmed.data

MAX_LINES = 400
MODULES = modules("kdmed.data")
GRAPH = import_graph("kdmed.data")


def imports(module: str) -> set[str]:
    """Modules of ``kdmed.data`` that ``module`` imports anywhere (module level or inside functions)."""
    return GRAPH[module]


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
    owners = constant_owners("kdmed.data")
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
