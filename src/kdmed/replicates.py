"""A disk cache of bootstrap replicates, keyed by everything that determines them.

The hierarchical bootstrap of the book (:func:`kdmed.inference.auc_bootstrap`) spends
most of a render: every (arm, seed) score array is scored on ``n_boot`` resamples of
the test patients. One array's replicates depend only on the test labels, the patient
ids, that score array, the number of resamples, the seed, the metric (its identity:
which quantity, over which classes) and the code of the metrics
(:mod:`kdmed.metrics.bootstrap` draws the resamples the same way whatever else is
scored with them), so they are stored once per key under ``results/<profile>/.bootstrap/``
and committed with the published results: a fresh clone renders the book without
recomputing them, and a changed input or a changed metric gives a new key (the old
file is simply not read).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

#: folder of the cache inside a results store (a dot folder: the store's run listing skips it)
BOOTSTRAP_DIR = ".bootstrap"
#: modules whose code decides a replicate's value; their syntax trees are part of every key
REPLICATE_CODE = ("metrics/bootstrap.py", "metrics/ranking.py", "inference.py")


def _code_hash() -> str:
    from kdmed.fingerprint import source_hash

    root = Path(__file__).resolve().parent
    return hashlib.sha256("".join(source_hash((root / m).read_text(encoding="utf-8")) for m in REPLICATE_CODE)
                          .encode()).hexdigest()


def _digest(h: "hashlib._Hash", a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes() if a.dtype != object else "\x00".join(map(str, a.ravel())).encode())


def replicate_key(y_true: np.ndarray, patient_ids: np.ndarray, score: np.ndarray, n_boot: int, seed: int,
                  code: str | None = None, metric: str = "") -> str:
    """The cache key (hex) of one score array's replicates.

    ``metric``: the identity of what the replicates hold (e.g.
    :data:`kdmed.inference.METRIC_ID` and the classes averaged over), so that values of
    another metric stored under the same inputs are never read back.
    """
    h = hashlib.sha256(f"{code or _code_hash()}|{n_boot}|{seed}|metric={metric}".encode())
    for a in (np.asarray(y_true), np.asarray(patient_ids).astype(str), np.asarray(score)):
        _digest(h, a)
    return h.hexdigest()[:32]


def cached_replicates(y_true: np.ndarray, patient_ids: np.ndarray, scores: Sequence[np.ndarray], n_boot: int,
                      seed: int, compute: Callable[[list[int]], list[np.ndarray]], folder: str | Path | None,
                      writable: bool = True, metric: str = "") -> list[np.ndarray]:
    """Replicates of every array of ``scores``: read from ``folder`` where stored, else ``compute(positions)``.

    ``compute`` gets the positions (in ``scores``) of the arrays not in the cache and
    returns their replicates in that order; they are written to ``folder`` (one file
    per key, temp file + rename) when ``writable``. ``folder=None`` caches nothing.
    ``metric``: the metric's identity, part of every key (:func:`replicate_key`).
    """
    from kdmed.utils import atomic_path

    if folder is None:
        return compute(list(range(len(scores))))
    folder = Path(folder)
    code = _code_hash()
    keys = [replicate_key(y_true, patient_ids, s, n_boot, seed, code, metric) for s in scores]
    out: list[np.ndarray | None] = []
    for key in keys:
        path = folder / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as f:
                out.append(f["replicates"])
        except (FileNotFoundError, OSError, KeyError, ValueError):  # missing or unreadable: recompute it
            out.append(None)
    missing = [i for i, v in enumerate(out) if v is None or v.shape != (n_boot,)]
    if missing:
        for i, values in zip(missing, compute(missing)):
            out[i] = values
            if writable:
                with atomic_path(folder / f"{keys[i]}.npz") as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, replicates=values)
    return out  # type: ignore[return-value]


__all__ = ["BOOTSTRAP_DIR", "REPLICATE_CODE", "cached_replicates", "replicate_key"]
