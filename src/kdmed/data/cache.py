"""The image cache: every image decoded once into a raw uint8 memmap, then read for free.

Training reads a dataset as one uint8 array ``[N, channels, S, S]``. For files on
disk (CheXpert, NIH, EyePACS...) decoding and resizing JPEG/PNG files every epoch
would dominate the run time, so :func:`cached_image_array` decodes them once, in
parallel, into ``<cache_dir>/<key>.u8`` (raw bytes, C order) with a marker
``<key>.json`` written last. The key hashes the dataset's
:meth:`~kdmed.data.base.ImageDataset.cache_identity` and its source rows, so a
subset or another image size gets its own entry.

An entry is trusted only when its marker says ``"complete": true``, names the
same key and shape, and the data file has exactly the expected size; anything
else is rebuilt. A build writes to a temporary file that is fsynced and renamed
into place, so an interrupted or failed build leaves nothing behind.

Datasets that are cheaper to regenerate than to read back (the synthetic ones set
``cache_by_default = False``) are produced in memory unless a ``cache_dir`` is given.

The cache knows datasets only through the :class:`~kdmed.data.base.ImageDataset`
contract (``cache_identity``, ``source_rows``, ``_load_uint8``...), so it imports no
dataset module: :meth:`ImageDataset.image_array` is its front door.
"""

from __future__ import annotations

import datetime
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from kdmed.utils import atomic_path, atomic_write_json, config_hash, repo_root

if TYPE_CHECKING:  # the cache reads datasets through their contract; it imports none at run time
    from kdmed.data.base import ImageDataset

#: bump when the on-disk layout changes (part of the key)
CACHE_FORMAT = 1


class CacheBuildError(RuntimeError):
    """Loading an image failed while filling the array; names the dataset and source row."""


def default_cache_dir() -> Path:
    """``$KDMED_CACHE_DIR`` if set, else ``<repo_root>/.cache/images``."""
    env = os.environ.get("KDMED_CACHE_DIR")
    return Path(env) if env else repo_root() / ".cache" / "images"


def cache_key(ds: ImageDataset) -> str:
    """The cache key of ``ds``: a hash of its identity, its source rows and the cache format."""
    return config_hash({"identity": ds.cache_identity(), "rows": ds.source_rows.tolist(), "format": CACHE_FORMAT})


def expected_shape(ds: ImageDataset) -> tuple[int, int, int, int]:
    """The shape of ``ds.image_array()``: ``(N, channels, S, S)``."""
    return (len(ds), int(ds.channels), int(ds.image_size), int(ds.image_size))


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def fill_image_array(
    ds: ImageDataset,
    out: np.ndarray,
    *,
    progress: bool = True,
    workers: int | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """Load every image of ``ds`` into ``out`` (uint8 ``[N, C, S, S]``) with ``workers`` threads.

    Uses the dataset's vectorised ``_load_batch_uint8(rows)`` when it has one
    (synthetic data), else ``_load_uint8(row)`` per image (file decoding; PIL
    releases the GIL, so threads decode in parallel).
    """
    shape = expected_shape(ds)
    if tuple(out.shape) != shape or out.dtype != np.uint8:
        raise ValueError(f"{ds.name}: output array must be uint8 {shape}, got {out.dtype} {tuple(out.shape)}")
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    rows = ds.source_rows
    batch_loader = getattr(ds, "_load_batch_uint8", None)
    if batch_size is None:
        batch_size = 32 if batch_loader is not None else 16
    starts = range(0, len(rows), int(batch_size))

    def check(img: np.ndarray, row: int) -> np.ndarray:
        img = np.asarray(img)
        if img.dtype != np.uint8 or img.shape != shape[1:]:
            raise CacheBuildError(
                f"{ds.name}: image for source row {row} is {img.dtype} {img.shape}, expected uint8 {shape[1:]}"
            )
        return img

    def work(start: int) -> int:
        chunk = rows[start : start + batch_size]
        if batch_loader is not None:
            arr = np.asarray(batch_loader(chunk))
            if arr.dtype != np.uint8 or arr.shape != (len(chunk), *shape[1:]):
                raise CacheBuildError(
                    f"{ds.name}: batch for source rows {chunk[0]}..{chunk[-1]} is {arr.dtype} {arr.shape}, "
                    f"expected uint8 {(len(chunk), *shape[1:])}"
                )
            out[start : start + len(chunk)] = arr
        else:
            for j, row in enumerate(chunk):
                try:
                    img = ds._load_uint8(int(row))
                except Exception as err:
                    raise CacheBuildError(f"{ds.name}: loading source row {row} failed: {err}") from err
                out[start + j] = check(img, int(row))
        return len(chunk)

    bar = tqdm(total=len(rows), desc=f"images {ds.name}/{ds.split}", unit="img", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for done in pool.map(work, starts):
            bar.update(done)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    return out


def _valid_entry(data: Path, meta: Path, key: str, shape: tuple[int, ...]) -> bool:
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        size = data.stat().st_size
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("complete") is True
        and info.get("key") == key
        and info.get("format") == CACHE_FORMAT
        and info.get("dtype") == "uint8"
        and tuple(info.get("shape", ())) == tuple(shape)
        and size == int(np.prod(shape))
    )


def cached_image_array(
    ds: ImageDataset,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> np.ndarray:
    """All images of ``ds`` as uint8 ``[N, channels, S, S]`` (see the module docstring).

    Returns a read-only ``np.memmap`` for cached entries; an in-memory array for
    datasets with ``cache_by_default = False`` when ``cache_dir`` is None.
    """
    shape = expected_shape(ds)
    if cache_dir is None and not getattr(ds, "cache_by_default", True):
        return fill_image_array(ds, np.empty(shape, dtype=np.uint8), progress=progress, workers=workers)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(ds)
    data, meta = folder / f"{key}.u8", folder / f"{key}.json"
    if len(ds) == 0:  # a zero-byte file cannot be memory-mapped
        return np.zeros(shape, dtype=np.uint8)
    if not _valid_entry(data, meta, key, shape):
        # drop the marker first: while rebuilding, nobody may trust the old data file
        meta.unlink(missing_ok=True)
        _remove_stale_temporaries(folder, key)
        with atomic_path(data) as tmp:
            mm = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)
            try:
                fill_image_array(ds, mm, progress=progress, workers=workers)
                mm.flush()
            finally:
                del mm
        atomic_write_json(
            meta,
            {
                "key": key,
                "format": CACHE_FORMAT,
                "dataset": ds.name,
                "split": ds.split,
                "identity": ds.cache_identity(),
                "rows": len(ds),
                "shape": list(shape),
                "dtype": "uint8",
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "complete": True,
            },
        )
    return np.memmap(data, dtype=np.uint8, mode="r", shape=shape)


def _remove_stale_temporaries(folder: Path, key: str, min_age_s: float = 60.0) -> list[Path]:
    """Delete unfinished writes of this entry left by a killed build (``.<key>.u8.*.tmp``...).

    Only files untouched for ``min_age_s`` go: a build of the same entry running right
    now in another process keeps writing (and touching) its own temporary file.
    """
    import time

    removed = []
    now = time.time()
    for tmp in folder.glob(f".{key}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:
            pass
    return removed

