"""The dataset contract every loader (real or synthetic) follows.

An :class:`ImageDataset` is a table of images plus a label matrix aligned with it:

* ``classes``: list of class names, in a fixed documented order;
* ``labels``: float32 ``[N, C]``; NaN marks an unknown/masked label; multiclass
  tasks are one-hot, binary tasks ``[N, 1]``;
* ``patient_ids``: ``[N]`` (str or int), used for leak-free splits and bootstraps;
* ``table``: the source table's rows (its own columns kept), row-aligned with ``labels``;
* ``task``: ``"multilabel"``, ``"multiclass"`` or ``"binary"``.

``ds[i]`` returns ``(image, target)``: float32 tensors ``[3, H, W]`` in ``[0, 1]``
(grey images repeated over 3 channels) and ``[C]``. Normalisation (ImageNet
mean/std) and augmentation are applied by the training loader, on the device.

Training never decodes files per epoch: :meth:`ImageDataset.image_array`
returns every image once as a uint8 ``[N, channels, H, W]`` array, built (with a
progress bar) and memory-mapped by :mod:`kdmed.data.cache`.

A subclass implements :meth:`_load_uint8` (one source row → uint8 ``[channels, H, W]``)
and :meth:`cache_identity` (what identifies its files for the cache key).
"""

from __future__ import annotations

import abc
import copy
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

TASKS = ("multilabel", "multiclass", "binary")


class ImageDataset(abc.ABC):
    """Base class; see the module docstring for the contract."""

    #: registry name, e.g. "chexpert"
    name: str = "base"
    #: 1 for grey (chest X-ray), 3 for colour (fundus)
    channels: int = 1

    def __init__(
        self,
        *,
        classes: Sequence[str],
        labels: np.ndarray,
        patient_ids: np.ndarray,
        table: pd.DataFrame,
        task: str,
        image_size: int,
        split: str,
    ) -> None:
        labels = np.asarray(labels, dtype=np.float32)
        if labels.ndim != 2 or labels.shape[1] != len(classes):
            raise ValueError(f"{self.name}: labels shape {labels.shape} does not match {len(classes)} classes")
        if not (len(labels) == len(patient_ids) == len(table)):
            raise ValueError(
                f"{self.name}: labels ({len(labels)}), patient_ids ({len(patient_ids)}) and "
                f"table ({len(table)}) must have the same number of rows"
            )
        if task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {task!r}")
        if int(image_size) <= 0:
            raise ValueError(f"{self.name}: image_size must be a positive integer, got {image_size!r}")
        self.classes = list(classes)
        self.labels = labels
        self.patient_ids = np.asarray(patient_ids)
        self.table = table.reset_index(drop=True)
        self.task = task
        self.image_size = int(image_size)
        self.split = split
        # row i of this (possibly subset) dataset is row _rows[i] of the source table
        self._rows = np.arange(len(labels))

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _load_uint8(self, source_row: int) -> np.ndarray:
        """Return one image as uint8 ``[channels, image_size, image_size]``."""

    def cache_identity(self) -> dict[str, Any]:
        """Everything that identifies this dataset's pixels (for the image-cache key)."""
        return {"name": self.name, "split": self.split, "image_size": self.image_size}

    # ------------------------------------------------------------------ contract
    def __len__(self) -> int:
        return len(self.labels)

    def load_uint8(self, i: int) -> np.ndarray:
        return self._load_uint8(int(self._rows[i]))

    def __getitem__(self, i: int):
        import torch

        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} images")
        img = torch.from_numpy(np.ascontiguousarray(self.load_uint8(i % len(self)))).float().div_(255.0)
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1).contiguous()
        return img, torch.from_numpy(self.labels[i].copy())

    @property
    def source_rows(self) -> np.ndarray:
        """Rows of the source table behind this dataset (identity unless subset)."""
        return self._rows.copy()

    def take(self, indices: Sequence[int] | np.ndarray) -> "ImageDataset":
        """A subset view with rows ``indices`` (labels, ids and table sliced alike)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1:
            raise ValueError(f"{self.name}: take() needs a 1-D index array")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: subset indices out of range 0..{len(self) - 1}")
        sub = copy.copy(self)
        sub.labels = self.labels[idx]
        sub.patient_ids = self.patient_ids[idx]
        sub.table = self.table.iloc[idx].reset_index(drop=True)
        sub._rows = self._rows[idx]
        return sub

    def image_array(self, cache_dir: str | Path | None = None, progress: bool = True) -> np.ndarray:
        """All images as uint8 ``[N, channels, H, W]``, from (or into) the image cache."""
        # the one edge between the contract and the cache: the cache imports no dataset module
        from kdmed.data.cache import cached_image_array

        return cached_image_array(self, cache_dir=cache_dir, progress=progress)

    def prevalence(self) -> pd.Series:
        """Fraction of positives per class among known (non-NaN) labels."""
        with np.errstate(invalid="ignore"):
            return pd.Series(np.nanmean(self.labels, axis=0), index=self.classes, name=self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.name,
            "split": self.split,
            "images": len(self),
            "patients": int(pd.Series(self.patient_ids).nunique()),
            "classes": len(self.classes),
            "task": self.task,
            "image_size": self.image_size,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return f"<{type(self).__name__} {d['dataset']}/{d['split']}: {d['images']} images, {d['patients']} patients, {d['classes']} classes ({d['task']})>"
