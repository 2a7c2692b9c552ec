"""The real CheXpert and NIH label tables shipped inside the ``torchxrayvision`` wheel.

They carry no images, only the official label tables: CheXpert-v1.0-small
``train.csv`` (223,414 rows) and NIH ``Data_Entry_2017_v2020.csv`` (112,120 rows).
The book uses them for real label statistics in every profile, and the
synthetic datasets draw their label vectors from them.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import pandas as pd

_FILES = {
    "chexpert": "chexpert_train.csv.gz",
    "nih": "Data_Entry_2017_v2020.csv.gz",
}


def real_table_path(name: str) -> Path:
    """Path of the shipped label table ``name`` ("chexpert" or "nih")."""
    if name not in _FILES:
        raise ValueError(f"unknown real table {name!r}; expected one of {sorted(_FILES)}")
    try:
        base = resources.files("torchxrayvision") / "data"
    except ModuleNotFoundError as err:
        raise FileNotFoundError(
            "the real label tables come with the torchxrayvision package; install it with "
            "`pip install torchxrayvision==1.5.7`"
        ) from err
    path = Path(str(base / _FILES[name]))
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed torchxrayvision package")
    return path


@functools.lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    return pd.read_csv(real_table_path(name))


def real_table(name: str) -> pd.DataFrame:
    """A copy of the shipped table ``name``, exactly as the CSV has it."""
    return _read(name).copy()
