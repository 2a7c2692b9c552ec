"""CheXpert v1.0 (Stanford), read from the official folder and CSVs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from kdmed.data import _io
from kdmed.data.subsets import split_by_patient
from kdmed.data.table import TableDataset

#: the 14 observations, in the order of the official CSV
CLASSES = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
#: the official folder names (downsampled copy first: preferred when both are present)
FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")
VIEWS = ("frontal", "lateral")
_UNCERTAIN_VALUE = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}


class CheXpert(TableDataset):
    """CheXpert v1.0 chest radiographs with the 14 observations (multi-label, grey).

    ``root`` holds ``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/`` (the small copy is used
    when both are there), each with ``train.csv`` and ``valid.csv``; the CSV ``Path``
    column starts with that folder name, so image paths resolve relative to ``root``.

    Splits:

    * ``"train"`` / ``"val"``: ``train.csv`` divided by patient (``val_fraction`` of the
      patients, shuffled with ``split_seed``, go to ``"val"``), so no patient is in both;
      the division is made before the view filter, so it does not depend on ``views``;
    * ``"test"``: ``valid.csv``, the official validation set (the usual public test set,
      its labels come from radiologists rather than the report labeller).

    Labels: 1 positive, 0 negative, blank -> 0; uncertain (-1) -> 0 with
    ``uncertain="zeros"`` (default, the authors' group's "U-Zeros"), 1 with ``"ones"``, NaN
    (masked) with ``"ignore"``; ``uncertain_overrides={"Edema": "ones", ...}`` sets the
    policy per class. ``views`` keeps frontal and/or lateral images (``Frontal/Lateral``
    column). Patient id: the ``patientNNNNN`` component of ``Path``.

    ``check_files=True`` (default) stats every listed image once at open time; missing
    images raise (``missing="raise"``) or are dropped with a warning (``missing="skip"``,
    their count in ``.skipped``). ``check_files=False`` skips that pass (label-only use).
    """

    name = "chexpert"
    channels = 1
    identity_options = ("views", "val_fraction", "split_seed")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        image_size: int = 224,
        *,
        uncertain: str = "zeros",
        uncertain_overrides: Mapping[str, str] | None = None,
        views: str | Sequence[str] = ("frontal",),
        val_fraction: float = 0.05,
        split_seed: int = 0,
        missing: str = "raise",
        check_files: bool = True,
        progress: bool = True,
    ) -> None:
        n = self.name
        self._check_split(split)
        _io.check_choice(n, "uncertain", uncertain, UNCERTAIN_POLICIES)
        overrides = self._check_overrides(uncertain_overrides)
        views = self._check_views(views)
        val_fraction = _io.check_fraction(n, "val_fraction", val_fraction)
        self._check_missing(missing)

        self.root, folder = self._find_root(root)
        self.csv_path = self.root / folder / ("valid.csv" if split == "test" else "train.csv")
        df = _io.read_table(n, self.csv_path, ["Path", "Frontal/Lateral", *CLASSES], dtype={"Path": str})

        _io.check_present(n, df, "Path", self.csv_path)
        _io.check_unique(n, df["Path"], self.csv_path, "Path")
        values = np.stack(
            [_io.numeric_column(n, df, c, self.csv_path, (-1.0, 0.0, 1.0), allow_blank=True) for c in CLASSES], axis=1
        )
        rel_all = _io.safe_relpaths(n, df["Path"], self.csv_path, "Path")
        patients = df["Path"].str.extract(r"(?:^|/)(patient\d+)(?:/|$)", expand=False)
        if patients.isna().any():
            i = int(np.flatnonzero(patients.isna().to_numpy())[0])
            raise _io.DataError(
                f"{n}: {self.csv_path}, {_io.row_ref(i)}, column 'Path': {df['Path'].iloc[i]!r} has no "
                "'patientNNNNN' folder to take the patient id from"
            )
        view = df["Frontal/Lateral"].str.lower()
        bad_view = ~view.isin(VIEWS).to_numpy()
        if bad_view.any():
            i = int(np.flatnonzero(bad_view)[0])
            raise _io.DataError(
                f"{n}: {self.csv_path}, {_io.row_ref(i)}, column 'Frontal/Lateral': value "
                f"{df['Frontal/Lateral'].iloc[i]!r} is not allowed (expected 'Frontal' or 'Lateral')"
            )

        if split == "test":
            rows = np.arange(len(df))
        else:
            groups = split_by_patient(patients.to_numpy(), [1.0 - val_fraction, val_fraction], seed=split_seed)
            rows = groups[0] if split == "train" else groups[1]
        rows = rows[np.isin(view.to_numpy()[rows], views)]
        held_out = "" if split == "test" else f", val_fraction={val_fraction} of {patients.nunique()} patients"
        _io.check_nonempty(n, len(rows), f"split {split!r} of {self.csv_path}{held_out}, views={views},")

        prefix = os.path.join(str(self.root), "")  # rel paths are checked relative, so plain concatenation is safe
        paths = [prefix + rel_all[i] for i in rows]
        rows, paths = self._keep_present(
            rows, paths, split=split, missing=missing, check_files=check_files, progress=progress
        )

        labels = values[rows]
        for j, cls in enumerate(CLASSES):
            col = labels[:, j]
            col[col == -1.0] = _UNCERTAIN_VALUE[overrides.get(cls, uncertain)]
        blank = np.isnan(values[rows])
        labels[blank] = 0.0

        options = {
            "uncertain": uncertain,
            "uncertain_overrides": dict(sorted(overrides.items())),
            "views": views,
            "val_fraction": val_fraction,
            "split_seed": int(split_seed),
        }
        self._open(
            files=paths,
            options=options,
            missing=missing,
            check_files=check_files,
            classes=CLASSES,
            labels=labels,
            patient_ids=patients.to_numpy()[rows].astype(str),
            table=df.iloc[rows],
            task="multilabel",
            image_size=image_size,
            split=split,
        )

    # ------------------------------------------------------------------ option checks
    def _find_root(self, root) -> tuple[Path, str]:
        """The dataset root (parent of the CheXpert folder) and the folder's name."""
        expected = f"{FOLDERS[0]}/ or {FOLDERS[1]}/ (the unpacked CheXpert download with train.csv and valid.csv)"
        path = _io.require_root(self.name, root, expected)
        if path.name in FOLDERS and (path / "train.csv").is_file():
            return path.parent, path.name  # given the CheXpert folder itself; its CSV paths start with its name
        for folder in FOLDERS:
            if (path / folder).is_dir():
                return path, folder
        raise _io.MissingDataError(
            f"{self.name}: {path} holds neither {FOLDERS[0]}/ nor {FOLDERS[1]}/; expected one of them "
            "(the unpacked CheXpert download with train.csv and valid.csv)"
        )

    def _check_overrides(self, overrides: Mapping[str, str] | None) -> dict[str, str]:
        if overrides is None:
            return {}
        if not isinstance(overrides, Mapping):
            raise _io.DataError(
                f"{self.name}: uncertain_overrides must map class names to policies, got {type(overrides).__name__}"
            )
        for cls, policy in overrides.items():
            _io.check_choice(self.name, "uncertain_overrides key", cls, CLASSES)
            _io.check_choice(self.name, f"uncertain_overrides[{cls!r}]", policy, UNCERTAIN_POLICIES)
        return dict(overrides)

    def _check_views(self, views: str | Sequence[str]) -> tuple[str, ...]:
        views = (views,) if isinstance(views, str) else tuple(views)
        if not views:
            raise _io.DataError(f"{self.name}: views=() selects nothing; expected some of {VIEWS}")
        for v in views:
            _io.check_choice(self.name, "views", v, VIEWS)
        return tuple(v for v in VIEWS if v in views)
