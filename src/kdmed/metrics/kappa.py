"""Metrics of predicted labels against true labels: accuracy and quadratic-weighted kappa.

Both take 1-D label vectors. The kappa core :func:`weighted_qwk` works on any
number of weight vectors at once (one per bootstrap resample), like the ranking
metrics; :class:`GradeKappa` fixes the grade list so the bootstrap recognises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def as_labels(values: Any, name: str) -> np.ndarray:
    """``values`` as a non-empty 1-D array; ``name`` is used in the error."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of class labels; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def _label_pair(y_true: Any, y_pred: Any, true_name: str, pred_name: str) -> tuple[np.ndarray, np.ndarray]:
    t = as_labels(y_true, true_name)
    p = as_labels(y_pred, pred_name)
    if t.shape != p.shape:
        raise ValueError(f"{pred_name} length {p.shape[0]} does not match {true_name} length {t.shape[0]}")
    return t, p


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label equals the true label (1-D label vectors)."""
    t, p = _label_pair(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(t == p))


def kappa_inputs(y_true: Any, y_pred: Any, labels: Sequence | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Both grade vectors as positions in the ordered label list, and the number of labels."""
    t, p = _label_pair(y_true, y_pred, "y_true_grades", "y_pred_grades")
    lab = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(list(labels))
    ti = np.searchsorted(lab, t) if labels is None else _index_in(lab, t, "y_true_grades")
    pi = np.searchsorted(lab, p) if labels is None else _index_in(lab, p, "y_pred_grades")
    return ti, pi, len(lab)


def _index_in(labels: np.ndarray, values: np.ndarray, name: str) -> np.ndarray:
    lookup = {v: i for i, v in enumerate(labels.tolist())}
    try:
        return np.array([lookup[v] for v in values.tolist()], dtype=np.intp)
    except KeyError as err:
        raise ValueError(f"{name} contains {err.args[0]!r}, which is not in labels {labels.tolist()}") from None


def weighted_qwk(ti: np.ndarray, pi: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
    """Quadratic-weighted Cohen's kappa for each row of ``weights``."""
    cells = ti * k + pi
    conf = np.zeros((weights.shape[0], k * k))
    for cell in np.unique(cells):
        conf[:, cell] = weights[:, cells == cell].sum(axis=1)
    conf = conf.reshape(-1, k, k)
    total = conf.sum(axis=(1, 2))
    expected = conf.sum(axis=2)[:, :, None] * conf.sum(axis=1)[:, None, :] / np.maximum(total, 1e-300)[:, None, None]
    idx = np.arange(k)
    w = (idx[:, None] - idx[None, :]) ** 2
    num = (w * conf).sum(axis=(1, 2))
    den = (w * expected).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 1.0 - num / np.where(den > 0, den, 1.0), np.nan)


def quadratic_kappa(y_true_grades: Any, y_pred_grades: Any, labels: Sequence | None = None) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2`` between label positions.

    ``labels`` fixes the ordered grade list (e.g. ``range(5)`` for DR grades 0-4);
    by default it is the sorted set of observed values, as in scikit-learn.
    ``nan`` when the expected disagreement is zero (e.g. a single grade observed).
    """
    ti, pi, k = kappa_inputs(y_true_grades, y_pred_grades, labels)
    return float(weighted_qwk(ti, pi, k, np.ones((1, len(ti))))[0])


class GradeKappa:
    """Quadratic kappa over the fixed grade list ``0..k-1`` (recognised by the vectorised bootstrap)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        return quadratic_kappa(y_true, y_pred, labels=range(self.k))
