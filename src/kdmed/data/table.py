"""The shared base of the file-table loaders (CheXpert, NIH, EyePACS, APTOS): a table of image files on disk.

:class:`TableDataset` holds what those loaders have in common once they have read their
table and picked a split's rows: the ``split`` / ``missing`` checks, the pass that stats
every listed image (``check_files``, ``missing="raise"`` or ``"skip"``), the bookkeeping of
options, decoding one row's file, and the cache identity (root, table file, the digest of
the rows' files and the options that choose rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kdmed.data import _io
from kdmed.data.base import ImageDataset
from kdmed.data.images import load_image


class TableDataset(ImageDataset):
    """Images listed in a table on disk, one file per row.

    A subclass's ``__init__`` (which declares its options as keyword-only parameters, so
    :func:`kdmed.data.open_dataset` can list them) checks ``split`` first
    (:meth:`_check_split`), then its own options, then ``missing`` (:meth:`_check_missing`);
    it sets ``self.root`` and ``self.csv_path``, reads the table and picks the split's
    rows, drops or refuses absent images with :meth:`_keep_present` and hands everything
    to :meth:`_open`.

    ``self._files[i]`` identifies the image of source row ``i`` (a path, or for NIH a file
    name looked up in the image folders: :meth:`_image_path`); ``self.skipped`` counts the
    images dropped by ``missing="skip"``; ``self.options`` records the options.
    """

    #: the options that choose rows (besides split and image size): part of the cache identity
    identity_options: tuple[str, ...] = ()

    # ------------------------------------------------------------------ construction steps
    def _check_split(self, split: str) -> None:
        _io.check_choice(self.name, "split", split, _io.SPLITS)

    def _check_missing(self, missing: str) -> None:
        _io.check_choice(self.name, "missing", missing, _io.MISSING_POLICIES)

    def _absent(self, files: Sequence[str], progress: bool) -> np.ndarray:
        """Which of ``files`` are not on disk (one stat each)."""
        return _io.missing_mask(files, progress, desc=f"{self.name}: checking images")

    def _shown(self, files: Sequence[str]) -> list[str]:
        """How ``files`` are named in the message about missing images."""
        return list(files)

    def _keep_present(
        self, rows: np.ndarray, files: Sequence[str], *, split: str, missing: str, check_files: bool, progress: bool
    ) -> tuple[np.ndarray, Sequence[str]]:
        """With ``check_files``, refuse (``missing="raise"``) or drop (``"skip"``) the rows whose image is absent."""
        self.skipped = 0
        if check_files:
            absent = self._absent(files, progress)
            self.skipped = _io.apply_missing_policy(self.name, absent, self._shown(files), missing, str(self.csv_path))
            rows, files = rows[~absent], [f for f, a in zip(files, absent) if not a]
            _io.check_nonempty(self.name, len(rows), f"split {split!r} after skipping {self.skipped} missing images")
        return rows, files

    def _open(
        self, *, files: Sequence[str], options: dict[str, Any], missing: str, check_files: bool, **contract: Any
    ) -> None:
        """Record the rows' files and the options, then set up the dataset contract (``classes``, ``labels``...)."""
        self.options = {**options, "missing": missing, "check_files": bool(check_files)}
        self._files = np.asarray(files, dtype=object)
        self._digest: str | None = None
        super().__init__(**contract)

    # ------------------------------------------------------------------ contract
    def _image_path(self, source_row: int) -> str:
        """The image file of source row ``source_row``."""
        return self._files[source_row]

    def _load_uint8(self, source_row: int) -> np.ndarray:
        mode = "L" if self.channels == 1 else "RGB"
        return load_image(self.name, self._image_path(source_row), mode, self.image_size)

    def _row_identity(self) -> dict[str, Any]:
        """The options that choose rows; label policies and tasks do not change pixels, so they are left out."""
        return {k: self.options[k] for k in self.identity_options}

    def cache_identity(self) -> dict[str, Any]:
        """Root, table, split, the rows' files and the options that choose rows."""
        if self._digest is None:
            self._digest = _io.paths_digest(self._files)
        return {
            **super().cache_identity(),
            "root": str(Path(self.root).resolve()),
            "table": _io.file_identity(self.csv_path),
            "images": self._digest,
            **self._row_identity(),
        }
