"""What a chapter publishes besides its figures: its tables as CSV downloads and the command that rebuilds it.

The book builder sets ``KDMED_TABLES_DIR`` for the chapters it runs and copies that
folder into the book, so a chapter's markdown links its tables as
``{download}`name.csv <tables/<chapter>/name.csv>``` (check-html verifies the links).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from kdmed.utils import atomic_path, repo_root

TABLES_ENV = "KDMED_TABLES_DIR"


def tables_dir(profile: str) -> Path:
    """Where the chapters of ``profile`` write their tables: ``$KDMED_TABLES_DIR`` or ``_build/tables/<profile>``."""
    env = os.environ.get(TABLES_ENV)
    return Path(env) if env else repo_root() / "_build" / "tables" / profile


def save_table(table: pd.DataFrame, chapter: str, name: str, profile: str) -> Path:
    """Write ``table`` (index included when it is named) as ``<tables dir>/<chapter>/<name>.csv``; return the path."""
    path = tables_dir(profile) / chapter / f"{name}.csv"
    keep_index = any(n is not None for n in table.index.names)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=keep_index)
    return path


def save_figure(fig: Any, chapter: str, name: str, profile: str) -> Path:
    """Write ``fig`` as ``<tables dir>/<chapter>/<name>.png`` (a page other than the chapter's can show it)."""
    path = tables_dir(profile) / chapter / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def reproduce_command(profile: str, chapter: str, overrides: Mapping[str, Any]) -> str:
    """The command that rebuilds ``chapter`` of ``profile`` with ``overrides`` (study parameters)."""
    import yaml

    params = " ".join(f"{k}={yaml.safe_dump(list(v) if isinstance(v, tuple) else v, default_flow_style=True).strip()}"
                      .replace(" ", "") for k, v in overrides.items())
    cmd = f"make book PROFILE={profile} CHAPTERS={chapter}"
    return cmd + (f' PARAMS="{params}"' if params else "")
