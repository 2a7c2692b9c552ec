"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# headless: tests that draw must never open a window (the book builder resets
# this for the notebook kernels it starts)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the folder with ``_config.yml`` and ``src/kdmed``)."""
    from kdmed.utils import repo_root

    return repo_root()
