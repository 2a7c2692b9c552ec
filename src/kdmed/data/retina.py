"""Diabetic retinopathy fundus photographs: Kaggle EyePACS 2015 and APTOS 2019 (grades 0-4)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kdmed.data import _io
from kdmed.data.base import ImageDataset
from kdmed.data.subsets import split_by_patient

GRADE_CLASSES = [f"grade {g}" for g in range(5)]
REFERABLE_CLASSES = ["referable DR"]
TASKS = ("grade", "referable")
#: referable diabetic retinopathy: moderate non-proliferative or worse
REFERABLE_FROM = 2


class _GradedFundus(ImageDataset):
    """Shared loader for a CSV of (image id, DR grade) rows plus one image folder.

    ``task="grade"``: 5 classes "grade 0".."grade 4", one-hot (multiclass);
    ``task="referable"``: one class "referable DR" = grade >= 2 (binary).
    There is no official test split with labels, so train/val/test are carved from the
    labelled table by patient with ``split_fractions`` (default 0.7/0.1/0.2), shuffled
    with ``split_seed``. ``missing`` / ``check_files`` as for the chest loaders.
    """

    channels = 3
    #: table file, id column, grade column, image folder and extension
    table_name: str
    id_column: str
    grade_column: str
    image_dir: str
    image_ext: str

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        image_size: int = 224,
        *,
        task: str = "grade",
        split_fractions: Sequence[float] = (0.7, 0.1, 0.2),
        split_seed: int = 0,
        missing: str = "raise",
        check_files: bool = True,
        progress: bool = True,
    ) -> None:
        n = self.name
        _io.check_choice(n, "split", split, _io.SPLITS)
        _io.check_choice(n, "task", task, TASKS)
        fractions = _io.check_fractions(n, "split_fractions", split_fractions, len(_io.SPLITS))
        _io.check_choice(n, "missing", missing, _io.MISSING_POLICIES)
        self.root = _io.require_root(n, root, f"{self.table_name} and {self.image_dir}/")
        self.csv_path = self.root / self.table_name
        df = _io.read_table(n, self.csv_path, [self.id_column, self.grade_column], dtype={self.id_column: str})
        _io.check_present(n, df, self.id_column, self.csv_path)
        _io.check_unique(n, df[self.id_column], self.csv_path, self.id_column)
        _io.check_plain_names(n, df[self.id_column], self.csv_path, self.id_column)
        grades = _io.numeric_column(n, df, self.grade_column, self.csv_path, range(5), allow_blank=False)
        grades = grades.astype(np.int64)
        patients = self._patient_ids(df[self.id_column])

        groups = split_by_patient(patients, fractions, seed=split_seed)
        rows = groups[_io.SPLITS.index(split)]
        _io.check_nonempty(n, len(rows), f"split {split!r} with split_fractions={fractions}")

        folder = self.root / self.image_dir
        paths = [str(folder / f"{i}{self.image_ext}") for i in df[self.id_column].iloc[rows]]
        self.skipped = 0
        if check_files:
            absent = _io.missing_mask(paths, progress, desc=f"{n}: checking images")
            self.skipped = _io.apply_missing_policy(n, absent, paths, missing, str(self.csv_path))
            rows, paths = rows[~absent], [p for p, a in zip(paths, absent) if not a]
            _io.check_nonempty(n, len(rows), f"split {split!r} after skipping {self.skipped} missing images")

        g = grades[rows]
        if task == "grade":
            labels = np.eye(5, dtype=np.float32)[g]
            classes, kind = GRADE_CLASSES, "multiclass"
        else:
            labels = (g >= REFERABLE_FROM).astype(np.float32)[:, None]
            classes, kind = REFERABLE_CLASSES, "binary"

        self.options = {
            "task": task,
            "split_fractions": fractions,
            "split_seed": int(split_seed),
            "missing": missing,
            "check_files": bool(check_files),
        }
        self._paths = np.asarray(paths, dtype=object)
        self._digest: str | None = None
        super().__init__(
            classes=classes,
            labels=labels,
            patient_ids=patients[rows],
            table=df.iloc[rows],
            task=kind,
            image_size=image_size,
            split=split,
        )

    def _patient_ids(self, ids: pd.Series) -> np.ndarray:
        """One id per row; rows of the same patient share it."""
        return ids.to_numpy().astype(str)

    def _load_uint8(self, source_row: int) -> np.ndarray:
        return _io.load_image(self.name, self._paths[source_row], "RGB", self.image_size)

    def cache_identity(self) -> dict[str, Any]:
        """Root, table, split and the options that choose rows (the task does not change pixels)."""
        if self._digest is None:
            self._digest = _io.paths_digest(self._paths)
        return {
            **super().cache_identity(),
            "root": str(Path(self.root).resolve()),
            "table": _io.file_identity(self.csv_path),
            "images": self._digest,
            "split_fractions": list(self.options["split_fractions"]),
            "split_seed": self.options["split_seed"],
        }


class EyePACS(_GradedFundus):
    """Kaggle Diabetic Retinopathy Detection 2015 (EyePACS), the labelled training set.

    ``root`` holds ``trainLabels.csv`` (columns ``image, level``; ``image`` like ``10_left``)
    and ``train/<image>.jpeg``. Patient id: the number before ``_left``/``_right``, so both
    eyes of a patient stay in the same split. See :class:`_GradedFundus` for tasks and splits.
    """

    name = "eyepacs"
    table_name = "trainLabels.csv"
    id_column = "image"
    grade_column = "level"
    image_dir = "train"
    image_ext = ".jpeg"

    def _patient_ids(self, ids: pd.Series) -> np.ndarray:
        pid = ids.str.extract(r"^(\d+)_(?:left|right)$", expand=False)
        bad = pid.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _io.DataError(
                f"{self.name}: {self.csv_path}, {_io.row_ref(i)}, column 'image': {ids.iloc[i]!r} is not of the "
                "form '<patient number>_left' or '<patient number>_right'"
            )
        return pid.to_numpy().astype(str)


class APTOS(_GradedFundus):
    """APTOS 2019 Blindness Detection, the labelled training set (3,662 images).

    ``root`` holds ``train.csv`` (columns ``id_code, diagnosis``) and
    ``train_images/<id_code>.png``. Patient id: ``id_code`` (APTOS gives no patient ids).
    See :class:`_GradedFundus` for tasks and splits.
    """

    name = "aptos"
    table_name = "train.csv"
    id_column = "id_code"
    grade_column = "diagnosis"
    image_dir = "train_images"
    image_ext = ".png"
