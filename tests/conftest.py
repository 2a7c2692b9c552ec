"""Fixtures shared by the test files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# headless: tests that draw must never open a window (the book builder resets
# this for the notebook kernels it starts)
os.environ.setdefault("MPLBACKEND", "Agg")
# grids run in this process unless a test asks for worker processes (tests/test_grid.py)
os.environ.setdefault("KDMED_WORKERS", "1")
# the shared teacher outputs of the tests never mix with a build's (kdmed.teacher_views)
os.environ.setdefault("KDMED_TEACHER_CACHE", tempfile.mkdtemp(prefix="kdmed-test-teacher-views-"))


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the folder with ``_config.yml`` and ``src/kdmed``)."""
    from kdmed.utils import repo_root

    return repo_root()
