"""The shared base of the synthetic datasets: option checks, seeded streams, prefix-stable metadata, batched rendering.

Every random number comes from a stream seeded by ``(seed, dataset, institution,
split, purpose, k)``: per-image metadata from fixed-size chunks (so the first ``n``
rows do not depend on ``n``), per-patient anatomy and texture from the patient's own
stream, per-image render noise from the image's own stream. Image ``i`` is therefore
the same whether rendered alone, in a batch, in a subset or in a larger ``n``.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

import numpy as np

from kdmed.data._io import SPLITS
from kdmed.data.base import ImageDataset

DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}
#: bump when the pixels change: part of the image-cache key
RENDER_VERSION = 1

#: each split's code in the seed streams (part of the pixels: never renumber)
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_CHUNK = 1024  # metadata is drawn in chunks of this many rows so that a larger n keeps the prefix
#: stream purposes: patients (chunked), images (chunked), per-patient texture, per-image rendering
P_PATIENTS, P_IMAGES, P_TEXTURE, P_RENDER = 1, 2, 3, 4


def check_options(name: str, split: str, image_size: int, n: int | None, seed: int) -> int:
    """Check the options every synthetic dataset takes; returns ``n`` (the split's default size if None)."""
    if split not in SPLITS:
        raise ValueError(f"{name}: unknown split {split!r}; expected one of {SPLITS}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"{name}: image_size must be an integer >= 8, got {image_size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name}: seed must be a non-negative integer, got {seed!r}")
    if n is None:
        n = DEFAULT_SIZES[split]
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{name}: n (number of images) must be a non-negative integer, got {n!r}")
    return int(n)


def draw_patients(stream, n: int, size_probs: tuple[float, ...], n_anatomy: int):
    """Image -> patient, rank within patient, per-patient uniforms and the patient's image count.

    Drawn chunk by chunk, so the first n images do not depend on n (the last
    patient's count is its full count even when n cuts it).
    """
    counts, anatomy, total, k = [], [], 0, 0
    cut = np.cumsum(size_probs)[:-1]
    while total < n:
        rng = stream(P_PATIENTS, k)
        c = 1 + np.searchsorted(cut, rng.random(_CHUNK), side="right")
        counts.append(c)
        anatomy.append(rng.random((_CHUNK, n_anatomy)))
        total += int(c.sum())
        k += 1
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    anatomy = np.concatenate(anatomy) if anatomy else np.zeros((0, n_anatomy))
    patient = np.repeat(np.arange(len(counts)), counts)[:n]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - first[patient]
    n_pat = int(patient[-1]) + 1 if n else 0
    return patient, rank, anatomy[:n_pat], counts[patient]


def image_uniforms(stream, n: int, width: int) -> np.ndarray:
    """``[n, width]`` uniforms per image, chunked so that row i does not depend on n."""
    chunks = [stream(P_IMAGES, k).random((_CHUNK, width)) for k in range(-(-n // _CHUNK))]
    return np.concatenate(chunks)[:n] if chunks else np.zeros((0, width))


def carry_forward(same: np.ndarray) -> np.ndarray:
    """Row each image takes its draw from: itself, or (where ``same``) the last earlier row that is not ``same``."""
    n = len(same)
    return np.maximum.accumulate(np.where(same, 0, np.arange(n))) if n else np.zeros(0, np.int64)


class SyntheticDataset(ImageDataset):
    """Shared plumbing: option checks, seeded streams, batched rendering, per-row loading, cache identity.

    A subclass calls :meth:`_start` first in ``__init__``, sets its metadata arrays and
    implements :meth:`_render` (source rows -> uint8 images); :meth:`_world` and
    :meth:`_about` add what identifies its pixels and what :meth:`describe` shows.
    """

    #: cheap to regenerate: the image cache keeps these in memory unless a cache_dir is given
    cache_by_default = False
    _dataset_code = 0
    _institution_code = 0

    def _start(self, split: str, image_size: int, n: int | None, seed: int) -> int:
        """Check the common options and set ``seed``, ``split`` and the number of rows; returns ``n``."""
        n = check_options(self.name, split, image_size, n, seed)
        self.seed = int(seed)
        self.split = split
        self._n = n
        return n

    def _stream(self, purpose: int, k: int) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed, self._dataset_code, self._institution_code, _SPLIT_CODE[self.split], purpose, int(k)]
        )

    def _draws(
        self, purpose: int, keys: Sequence[int], n_uniforms: int, normal_shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each key (a patient or an image), ``n_uniforms`` uniforms then float32 normals of ``normal_shape``.

        Both come from the key's own stream for ``purpose``; returns ``[B, n_uniforms]``, ``[B, *normal_shape]``.
        """
        uni = np.empty((len(keys), n_uniforms))
        normal = np.empty((len(keys), *normal_shape), dtype=np.float32)
        for j, k in enumerate(keys):
            rng = self._stream(purpose, k)
            if n_uniforms:
                uni[j] = rng.random(n_uniforms)
            normal[j] = rng.standard_normal(normal_shape, dtype=np.float32)
        return uni, normal

    def _render_uniforms(self, rows: np.ndarray, n_uniforms: int):
        """Per-image uniforms ``[B, K]`` and white noise ``[B, S, S]`` from each image's own stream."""
        return self._draws(P_RENDER, rows, n_uniforms, (self.image_size, self.image_size))

    def _load_uint8(self, source_row: int) -> np.ndarray:
        return self._render(np.array([source_row], dtype=np.int64))[0]

    def _load_batch_uint8(self, source_rows) -> np.ndarray:
        """Render many source rows at once (vectorised): uint8 ``[B, channels, S, S]``."""
        rows = np.asarray(source_rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self._n):
            raise IndexError(f"{self.name}: source rows must lie in 0..{self._n - 1}")
        if not len(rows):
            return np.zeros((0, self.channels, self.image_size, self.image_size), np.uint8)
        return self._render(rows)

    @abc.abstractmethod
    def _render(self, rows: np.ndarray) -> np.ndarray:
        """Render source rows as uint8 ``[B, channels, S, S]``."""

    def _world(self) -> dict[str, Any]:
        """What, besides seed and split, chooses this dataset's pixels (e.g. the institution)."""
        return {}

    def _about(self) -> dict[str, Any]:
        """What :meth:`describe` adds to the contract's description."""
        return {"seed": self.seed}

    def cache_identity(self) -> dict[str, Any]:
        # labels (the task) do not change pixels, so they are not part of the identity
        return {**super().cache_identity(), **self._world(), "seed": self.seed, "render_version": RENDER_VERSION}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self._about()}
