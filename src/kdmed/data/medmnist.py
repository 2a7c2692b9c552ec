"""MedMNIST ChestMNIST and RetinaMNIST, read offline from the official ``.npz`` files."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kdmed.data import _io
from kdmed.data.base import ImageDataset
from kdmed.data.grades import grade_labels
from kdmed.data.images import resize_center_crop, to_chw
from kdmed.data.nih import CHESTXRAY14

#: the image sizes MedMNIST v2/v3 publish
SIZES = (28, 64, 128, 224)


def npz_name(flag: str, size: int) -> str:
    """The official file name: ``<flag>.npz`` for 28 px, ``<flag>_<size>.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


class _Images:
    """One split's image array, read from the ``.npz`` on first use and shared by subsets."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self._array: np.ndarray | None = None
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                with np.load(self.path, allow_pickle=False) as z:
                    self._array = z[self.key]
            return self._array


class _MedMNIST(ImageDataset):
    """Shared loader for a MedMNIST ``.npz`` (keys ``train_images``, ``train_labels``, ``val_*``, ``test_*``).

    ``size`` (28/64/128/224) picks the file; by default the smallest one present in
    ``root`` that is at least ``image_size``, else the largest present. Images are resized
    to ``image_size`` (bilinear, antialiased). Splits are MedMNIST's own train/val/test.
    MedMNIST ships no patient ids, so each row is its own "patient" (``patient_ids`` = row
    index): patient-level resampling cannot be reproduced on these files.
    Nothing is downloaded: a missing file is named in the error, with how to fetch it.
    """

    flag: str

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        image_size: int = 224,
        *,
        size: int | None = None,
    ) -> None:
        n = self.name
        _io.check_choice(n, "split", split, _io.SPLITS)
        if size is not None:
            size = int(_io.check_choice(n, "size", size, SIZES))
        self.root = None if root is None else Path(root).expanduser()
        self.size = self._choose_size(size, int(image_size))
        self.npz_path = self.root / npz_name(self.flag, self.size)
        try:
            z = np.load(self.npz_path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single array, not an archive of named arrays")
            with z:
                for key in (f"{split}_images", f"{split}_labels"):
                    if key not in z.files:
                        raise _io.DataError(f"{n}: {self.npz_path} has no array {key!r}; it has {sorted(z.files)}")
                labels_raw = z[f"{split}_labels"]
            shape = self._image_shape(f"{split}_images")
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            if isinstance(err, _io.DataError):
                raise
            raise _io.DataError(f"{n}: cannot read {self.npz_path} as a NumPy .npz archive: {err}") from err
        if shape[0] != len(labels_raw):
            raise _io.DataError(
                f"{n}: {self.npz_path}: {split}_images has {shape[0]} images but {split}_labels has "
                f"{len(labels_raw)} rows"
            )
        _io.check_nonempty(n, len(labels_raw), f"split {split!r} of {self.npz_path.name}")
        labels, classes, task = self._labels(labels_raw, f"{split}_labels")
        self._images = _Images(self.npz_path, f"{split}_images")
        super().__init__(
            classes=classes,
            labels=labels,
            patient_ids=np.arange(len(labels)),
            table=self._table(labels_raw),
            task=task,
            image_size=image_size,
            split=split,
        )

    # ------------------------------------------------------------------ file choice and checks
    def _choose_size(self, size: int | None, image_size: int) -> int:
        hint = (
            "MedMNIST files can be fetched where the internet is reachable with the medmnist package: "
            f"`pip install medmnist`, then `medmnist.{type(self).__name__}(split='train', download=True, "
            f"size={{size}}, root='{self.root}')`"
        )
        wanted = size if size is not None else next((s for s in SIZES if s >= image_size), SIZES[-1])
        if self.root is None:
            raise _io.DataError(
                f"{self.name}: no root given; pass root=<the folder holding {npz_name(self.flag, wanted)}>"
            )
        if size is None:
            present = [s for s in SIZES if (self.root / npz_name(self.flag, s)).is_file()]
            if present:
                return next((s for s in present if s >= image_size), present[-1])
        path = self.root / npz_name(self.flag, wanted)
        if not path.is_file():
            size_s = "" if wanted == 28 else f"size={wanted}, "
            raise _io.MissingDataError(
                f"{self.name}: expected the file {path} (MedMNIST {npz_name(self.flag, wanted)}, {size_s}"
                f"{wanted} px); it is missing. " + hint.replace("{size}", str(wanted))
            )
        return wanted

    def _image_shape(self, key: str) -> tuple[int, ...]:
        # read only the .npy header: the image arrays can be gigabytes
        fmt = np.lib.format
        with zipfile.ZipFile(self.npz_path) as zf, zf.open(f"{key}.npy") as fh:
            version = fmt.read_magic(fh)
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = reader(fh)
        expected = (self.size, self.size) if self.channels == 1 else (self.size, self.size, 3)
        if dtype != np.uint8 or tuple(shape[1:]) != expected:
            raise _io.DataError(
                f"{self.name}: {self.npz_path}, array {key!r} is {dtype} {list(shape)}; expected uint8 "
                f"[N, {', '.join(map(str, expected))}]"
            )
        return tuple(shape)

    def _bad_label(self, key: str, row: int, value: Any, expected: str) -> _io.DataError:
        return _io.DataError(
            f"{self.name}: {self.npz_path}, array {key!r}, row {row}: value {value!r}; expected {expected}"
        )

    def _bad_shape(self, key: str, raw: np.ndarray, expected: str) -> _io.DataError:
        return _io.DataError(f"{self.name}: {self.npz_path}, array {key!r} has shape {list(raw.shape)}; expected {expected}")

    def _table(self, labels_raw: np.ndarray):
        import pandas as pd

        return pd.DataFrame({"npz_row": np.arange(len(labels_raw))})

    # ------------------------------------------------------------------ contract
    def _load_uint8(self, source_row: int) -> np.ndarray:
        from PIL import Image

        img = Image.fromarray(np.ascontiguousarray(self._images.get()[source_row]))
        return to_chw(resize_center_crop(img, self.image_size))

    def cache_identity(self) -> dict[str, Any]:
        """The file (path, size, mtime), split, output size and MedMNIST size."""
        return {
            **super().cache_identity(),
            "root": str(self.root.resolve()),
            "file": _io.file_identity(self.npz_path),
            "size": self.size,
        }


class ChestMNIST(_MedMNIST):
    """MedMNIST ChestMNIST: NIH ChestX-ray14 resized, 14 binary labels (ChestX-ray14 order), grey.

    Files ``chestmnist.npz`` (28 px), ``chestmnist_64.npz``, ``chestmnist_128.npz``,
    ``chestmnist_224.npz``; images ``[N, s, s]``, labels ``[N, 14]`` of 0/1.
    See :class:`_MedMNIST` for file choice, splits and patient ids.
    """

    name = "medmnist-chest"
    flag = "chestmnist"
    channels = 1

    def _labels(self, raw: np.ndarray, key: str):
        if raw.ndim != 2 or raw.shape[1] != len(CHESTXRAY14):
            raise self._bad_shape(key, raw, "[N, 14]")
        bad = ~np.isin(raw, (0, 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise self._bad_label(key, int(r), raw[r, c].item(), f"0 or 1 (column {c}, {CHESTXRAY14[c]})")
        return raw.astype(np.float32), CHESTXRAY14, "multilabel"


class RetinaMNIST(_MedMNIST):
    """MedMNIST RetinaMNIST: DeepDRiD fundus photographs, 5 DR grades (one-hot multiclass), colour.

    Files ``retinamnist.npz`` (28 px), ``retinamnist_64.npz``, ``_128``, ``_224``; images
    ``[N, s, s, 3]``, labels ``[N, 1]`` of 0..4. See :class:`_MedMNIST` for file choice,
    splits and patient ids.
    """

    name = "medmnist-retina"
    flag = "retinamnist"
    channels = 3

    def _labels(self, raw: np.ndarray, key: str):
        if raw.ndim != 2 or raw.shape[1] != 1:
            raise self._bad_shape(key, raw, "[N, 1]")
        bad = ~np.isin(raw[:, 0], np.arange(5))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise self._bad_label(key, r, raw[r, 0].item(), "a grade 0..4")
        return grade_labels(raw[:, 0].astype(np.int64), "grade")


class PneumoniaMNIST(_MedMNIST):
    """MedMNIST PneumoniaMNIST: paediatric chest radiographs (Guangzhou), pneumonia vs normal, grey.

    Another institution and population than ChestMNIST's NIH images, sharing the
    finding "Pneumonia" with it. Files ``pneumoniamnist.npz`` (28 px),
    ``pneumoniamnist_64.npz``, ``_128``, ``_224``; images ``[N, s, s]``, labels ``[N, 1]``
    of 0/1. See :class:`_MedMNIST` for file choice, splits and patient ids.
    """

    name = "medmnist-pneumonia"
    flag = "pneumoniamnist"
    channels = 1

    def _labels(self, raw: np.ndarray, key: str):
        if raw.ndim != 2 or raw.shape[1] != 1:
            raise self._bad_shape(key, raw, "[N, 1]")
        bad = ~np.isin(raw[:, 0], (0, 1))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise self._bad_label(key, r, raw[r, 0].item(), "0 (normal) or 1 (pneumonia)")
        return raw.astype(np.float32), ["Pneumonia"], "binary"
