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


#: share of images in the official NIH test_list.txt (25,596 of 112,120)
NIH_TEST_FRACTION = 25_596 / 112_120


def label_only_root(name: str, directory: str | Path) -> Path:
    """A dataset root holding only the shipped label table, for label statistics without images.

    "chexpert": ``<directory>/CheXpert-v1.0-small/train.csv`` linked to the shipped table.
    "nih": ``Data_Entry_2017_v2020.csv`` linked, plus ``train_val_list.txt`` / ``test_list.txt``.
    The official NIH lists are not shipped, so they are written here by a patient-level
    split with the official test share; open the result with ``check_files=False``.
    """
    import os

    from kdmed.data.subsets import split_by_patient
    from kdmed.utils import atomic_write_text

    root = Path(directory) / name
    if name == "chexpert":
        link = root / "CheXpert-v1.0-small" / "train.csv"
        target = real_table_path("chexpert")
    elif name == "nih":
        link = root / "Data_Entry_2017_v2020.csv"
        target = real_table_path("nih")
        table = _read("nih")
        train_val, test = split_by_patient(table["Patient ID"].to_numpy(), [1 - NIH_TEST_FRACTION, NIH_TEST_FRACTION])
        atomic_write_text(root / "train_val_list.txt", "\n".join(table["Image Index"].iloc[train_val]) + "\n")
        atomic_write_text(root / "test_list.txt", "\n".join(table["Image Index"].iloc[test]) + "\n")
    else:
        raise ValueError(f"unknown real table {name!r}; expected one of {sorted(_FILES)}")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(target, link)
    return root
