"""Diabetic retinopathy fundus photographs: Kaggle EyePACS 2015 and APTOS 2019 (grades 0-4)."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kdmed.data import _io
from kdmed.data.grades import DR_TASKS, GRADE_CLASSES, REFERABLE_CLASSES, REFERABLE_FROM, grade_labels
from kdmed.data.subsets import split_by_patient
from kdmed.data.table import TableDataset

__all__ = ["APTOS", "DR_TASKS", "EyePACS", "GRADE_CLASSES", "REFERABLE_CLASSES", "REFERABLE_FROM"]


class _GradedFundus(TableDataset):
    """Shared loader for a CSV of (image id, DR grade) rows plus one image folder.

    ``task="grade"``: 5 classes "grade 0".."grade 4", one-hot (multiclass);
    ``task="referable"``: one class "referable DR" = grade >= 2 (binary).
    There is no official test split with labels, so train/val/test are carved from the
    labelled table by patient with ``split_fractions`` (default 0.7/0.1/0.2), shuffled
    with ``split_seed``. ``missing`` / ``check_files`` as for the chest loaders.
    """

    channels = 3
    identity_options = ("split_fractions", "split_seed")
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
        self._check_split(split)
        _io.check_choice(n, "task", task, DR_TASKS)
        fractions = _io.check_fractions(n, "split_fractions", split_fractions, len(_io.SPLITS))
        self._check_missing(missing)
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
        rows, paths = self._keep_present(
            rows, paths, split=split, missing=missing, check_files=check_files, progress=progress
        )

        labels, classes, kind = grade_labels(grades[rows], task)
        self._open(
            files=paths,
            options={"task": task, "split_fractions": fractions, "split_seed": int(split_seed)},
            missing=missing,
            check_files=check_files,
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

    def _row_identity(self) -> dict[str, Any]:
        ident = super()._row_identity()
        ident["split_fractions"] = list(ident["split_fractions"])  # a list, as the cache marker stores it
        return ident


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
