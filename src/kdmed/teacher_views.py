"""A frozen teacher's outputs on every view of the training images, computed once and shared.

Augmentations are seeded per image (:func:`kdmed.loader.view_uniforms`): the view of
an image in an epoch depends only on the run's view seed, the epoch and the image.
So the teacher's outputs for an epoch (its logits, and for attention transfer its
normalised attention maps at the used taps) are one function of (teacher, training
images, view seed, epoch), the same for every student that shares them: kd, kd+at,
transfer+kd, every cell of a T × alpha grid with that seed.

:class:`TeacherViews` computes them in one batched no-grad pass per epoch over the
training rows in a fixed order and fixed chunks of :data:`PASS_BATCH` images (a
convolution's result for one image depends on its batch's composition, so the pass is
canonical: whoever computes it gets the same bits), and keeps them in a
memory-mappable cache on disk (``$KDMED_TEACHER_CACHE`` or
``<image cache>/teacher-views``; ``off`` disables it). A student reading the cache
gets bitwise the numbers of a student that computed the pass itself
(``tests/test_teacher_views.py``). Without augmentation every epoch has the same view:
one pass serves the whole run.

The cache is bounded: after each write the least recently used entries are deleted
until it holds at most ``$KDMED_TEACHER_CACHE_GB`` (default 2) GiB. Concurrent
workers computing the same epoch wait for each other (a file lock), then read.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from kdmed.devices import autocast_context
from kdmed.losses import attention_map
from kdmed.models import FeatureTaps
from kdmed.utils import atomic_path

#: images per chunk of the canonical teacher pass (part of the cache key: it changes the bits)
PASS_BATCH = 128
CACHE_ENV = "KDMED_TEACHER_CACHE"
LIMIT_ENV = "KDMED_TEACHER_CACHE_GB"


def cache_root() -> Path | None:
    """Where the shared outputs live, or None when ``KDMED_TEACHER_CACHE=off``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() == "off":
        return None
    if env:
        return Path(env)
    from kdmed.data.cache import default_cache_dir

    return default_cache_dir() / "teacher-views"


def _limit_bytes() -> int:
    try:
        return int(float(os.environ.get(LIMIT_ENV, "2")) * 2**30)
    except ValueError:
        raise ValueError(f"{LIMIT_ENV}={os.environ[LIMIT_ENV]!r} is not a number of GiB") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prune(root: Path, limit: int) -> list[Path]:
    """Delete the least recently used entry files under ``root`` until at most ``limit`` bytes remain."""
    files = sorted((p for p in root.rglob("epoch-*.npz") if p.is_file()), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    removed = []
    for p in files:
        if total <= limit:
            break
        size = p.stat().st_size
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
            total -= size
    return removed


class TeacherViews:
    """The teacher's outputs, per epoch, for every training row of a loader.

    ``teacher``: the frozen module; ``taps``/``p``: its attention-transfer taps and
    exponent (None: logits only); ``key``: identifies teacher, training images, view
    seed and settings for the disk cache (None: keep nothing on disk).
    """

    def __init__(self, teacher: nn.Module, teacher_arch: str | None, taps: Sequence[str] | None,
                 p: float | None, key: str | None) -> None:
        self.teacher = teacher
        self.taps = list(taps) if taps else None
        self.p = p
        self._hooks = FeatureTaps(teacher, teacher_arch, self.taps) if self.taps else None
        root = cache_root() if key is not None else None
        self.folder = root / key if root is not None else None
        self.reads = self.writes = self.computed = 0
        #: seconds this process spent computing teacher passes (reading the cache is not counted)
        self.pass_seconds = 0.0

    def close(self) -> None:
        if self._hooks is not None:
            self._hooks.close()
            self._hooks = None

    # ------------------------------------------------------------------ the pass
    @torch.no_grad()
    def _compute(self, loader: Any, epoch: int, amp: bool) -> dict[str, np.ndarray]:
        rows = np.sort(np.asarray(loader.rows))
        device = torch.device(loader.device)
        self.teacher.eval()
        logits, maps = [], [[] for _ in self.taps or ()]
        with autocast_context(device, amp):
            for start in range(0, rows.size, PASS_BATCH):
                x = loader.view(rows[start:start + PASS_BATCH], epoch)
                if self._hooks is not None:
                    out, feats = self._hooks(x)
                    for k, f in enumerate(feats.values()):
                        maps[k].append(attention_map(f.detach(), self.p).float().cpu())
                else:
                    out = self.teacher(x)
                logits.append(out.float().cpu())
        arrays = {"rows": rows, "logits": torch.cat(logits).numpy()}
        for k, parts in enumerate(maps):
            arrays[f"attention_{k}"] = torch.cat(parts).numpy()
        return arrays

    def _timed(self, loader: Any, epoch: int, amp: bool) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return self._compute(loader, epoch, amp)
        finally:
            self.computed += 1
            self.pass_seconds += time.perf_counter() - start

    def epoch(self, loader: Any, epoch: int, amp: bool) -> dict[str, np.ndarray]:
        """The outputs for ``epoch`` (the view index: 0 for every epoch of an un-augmented loader)."""
        if self.folder is None:
            return self._timed(loader, epoch, amp)
        path = self.folder / f"epoch-{epoch}.npz"
        with _locked(self.folder / f".lock-{epoch}"):
            if path.exists():
                try:
                    with np.load(path, allow_pickle=False) as z:
                        arrays = {k: z[k] for k in z.files}
                    os.utime(path)  # recently used: the last to be pruned
                    self.reads += 1
                    return arrays
                except (OSError, ValueError):  # a damaged entry: computed again below
                    pass
            arrays = self._timed(loader, epoch, amp)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            self.writes += 1
        prune(self.folder.parent, _limit_bytes())
        return arrays


def as_lookup(arrays: dict[str, np.ndarray], n_images: int, device: torch.device) -> tuple[Tensor, list[Tensor]]:
    """Logits and attention maps as tensors indexed by image-array row (NaN for rows not in the pass)."""
    rows = torch.from_numpy(np.asarray(arrays["rows"], dtype=np.int64))

    def spread(a: np.ndarray) -> Tensor:
        t = torch.full((n_images, *a.shape[1:]), float("nan"), dtype=torch.float32)
        t[rows] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return t.to(device)

    k = 0
    maps = []
    while f"attention_{k}" in arrays:
        maps.append(spread(arrays[f"attention_{k}"]))
        k += 1
    return spread(arrays["logits"]), maps


def entry_key(parts: dict[str, Any]) -> str:
    """Cache folder name for ``parts`` (teacher run and code, images, views, taps, pass settings)."""
    from kdmed.utils import config_hash

    return config_hash({**parts, "pass_batch": PASS_BATCH, "format": 1}, length=20)


def cache_size(root: Path | None = None) -> int:
    """Bytes held by the shared cache."""
    root = root or cache_root()
    if root is None or not root.exists():
        return 0
    return sum(p.stat().st_size for p in root.rglob("epoch-*.npz"))


__all__ = ["PASS_BATCH", "TeacherViews", "as_lookup", "cache_root", "cache_size", "entry_key", "prune"]
