"""A minimal file-backed dataset: image files listed explicitly, without labels (for the cache tests and benchmark)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kdmed.data.base import ImageDataset
from kdmed.data.images import load_image
from kdmed.utils import config_hash


class FolderDataset(ImageDataset):
    """Image files listed explicitly (no labels): a minimal file-backed dataset for the cache.

    Each file is its own patient; images are resized without cropping
    (:func:`~kdmed.data.images.load_image` with ``fit="stretch"``). Used by the cache
    tests and benchmark; real loaders have their own classes.
    """

    name = "folder"

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        image_size: int = 224,
        *,
        channels: int = 1,
        labels: np.ndarray | None = None,
        classes: Sequence[str] = (),
    ) -> None:
        paths = [Path(p) for p in paths]
        if channels not in (1, 3):
            raise ValueError(f"{self.name}: channels must be 1 or 3, got {channels!r}")
        self.channels = channels
        labels = np.zeros((len(paths), len(classes)), np.float32) if labels is None else labels
        self.paths = paths
        super().__init__(
            classes=classes,
            labels=labels,
            patient_ids=np.array([p.stem for p in paths], dtype=object),
            table=pd.DataFrame({"path": [str(p) for p in paths]}),
            task="multilabel",
            image_size=image_size,
            split="all",
        )

    def _load_uint8(self, source_row: int) -> np.ndarray:
        mode = "L" if self.channels == 1 else "RGB"
        return load_image(self.name, self.paths[source_row], mode, self.image_size, fit="stretch")

    def cache_identity(self) -> dict[str, Any]:
        files = []
        for p in self.paths:
            st = p.stat() if p.exists() else None
            files.append([str(p.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None])
        return {"name": self.name, "image_size": self.image_size, "channels": self.channels, "files": config_hash(files)}
