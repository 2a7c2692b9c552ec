"""Ranking metrics of scores against 0/1/NaN labels: per-class and macro ROC AUC and AUPRC.

ROC AUC and average precision are computed from scores grouped by tied value
(one sort per class, :class:`ClassGroups`), with optional per-sample weights. A
bootstrap resample is a vector of weights -- how often each image was drawn -- so
all resamples of a class are evaluated with a few array operations instead of one
scikit-learn call per resample. With unit weights the values equal scikit-learn's
``roc_auc_score`` and ``average_precision_score`` to rounding.

Conventions: ``y_true`` is ``[N, C]`` (or ``[N]`` for one class) with 0/1 and ``NaN``
for unknown; ``y_score`` has the same shape and may be logits or probabilities (AUC
is rank based). A class whose known labels take a single value has an undefined AUC
/ AUPRC: ``NaN`` (with a warning in the point estimate, silently inside bootstrap
resamples), and macro averages skip it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: the two ranking metrics: kind -> name in warnings
KINDS = {"auc": "AUC", "ap": "AUPRC"}


# ----------------------------------------------------------------------------- input checks
def as_2d(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_score)`` as float64 ``[N, C]`` arrays, after checking shapes and values."""
    yt = np.asarray(y_true, dtype=np.float64)
    ys = np.asarray(y_score, dtype=np.float64)
    if yt.ndim == 1:
        yt = yt[:, None]
    if ys.ndim == 1:
        ys = ys[:, None]
    if yt.ndim != 2:
        raise ValueError(f"y_true must be [N] or [N, C]; got shape {np.shape(y_true)}")
    if yt.shape != ys.shape:
        raise ValueError(f"y_score shape {np.shape(y_score)} does not match y_true shape {np.shape(y_true)}")
    if yt.shape[0] == 0:
        raise ValueError("y_true is empty (0 samples)")
    bad_score = ~np.isfinite(ys)
    if bad_score.any():
        r, c = np.argwhere(bad_score)[0]
        raise ValueError(f"y_score must be finite; row {r}, class {c} is {ys[r, c]}")
    known = ~np.isnan(yt)
    bad = known & (yt != 0) & (yt != 1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"y_true must be 0, 1 or NaN; row {r}, class {c} is {yt[r, c]}")
    return yt, ys


def class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    """``classes`` as strings (``"0"``, ``"1"``, ... when None), checked to name ``n`` classes."""
    if classes is None:
        return [str(i) for i in range(n)]
    names = [str(c) for c in classes]
    if len(names) != n:
        raise ValueError(f"classes has {len(names)} names but the data has {n} classes")
    return names


# ----------------------------------------------------------------------------- weighted core
class ClassGroups:
    """One class's known samples split into positives and negatives, each sorted by score.

    For every positive ``i`` it stores how many negatives score strictly below /
    at most ``s_i`` and how many positives score strictly below ``s_i``, so that for
    any weight vectors the AUC and AP reduce to cumulative sums and gathers.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray) -> None:
        known = ~np.isnan(y)
        pos = np.flatnonzero(known & (y == 1))
        neg = np.flatnonzero(known & (y == 0))
        self.pos = pos[np.argsort(s[pos], kind="mergesort")]
        self.neg = neg[np.argsort(s[neg], kind="mergesort")]
        sp, sn = s[self.pos], s[self.neg]
        self.neg_lo = np.searchsorted(sn, sp, side="left")
        self.neg_hi = np.searchsorted(sn, sp, side="right")
        self.pos_lo = np.searchsorted(sp, sp, side="left")

    def cumulative(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positive weights ``[R, P]`` and cumulative positive / negative weights with a leading 0."""
        r = weights.shape[0]
        wp = weights[:, self.pos]
        cp = np.zeros((r, len(self.pos) + 1), dtype=weights.dtype)
        cn = np.zeros((r, len(self.neg) + 1), dtype=weights.dtype)
        np.cumsum(wp, axis=1, out=cp[:, 1:])
        np.cumsum(weights[:, self.neg], axis=1, out=cn[:, 1:])
        return wp, cp, cn

    def auc(self, weights: np.ndarray) -> np.ndarray:
        """Mann-Whitney AUC per weight row: P(s_pos > s_neg) + 0.5 P(s_pos = s_neg)."""
        wp, cp, cn = self.cumulative(weights)
        # Negative weight below each positive plus half the tied negative weight.
        credit = cn[:, self.neg_lo] + cn[:, self.neg_hi]
        num = 0.5 * np.einsum("rp,rp->r", wp, credit, dtype=np.float64)
        den = cp[:, -1].astype(np.float64) * cn[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def ap(self, weights: np.ndarray) -> np.ndarray:
        """Average precision per weight row: sum over positives of weight x precision at its score / P."""
        wp, cp, cn = self.cumulative(weights)
        n_pos = cp[:, -1].astype(np.float64)
        n_neg = cn[:, -1].astype(np.float64)
        # Precision at threshold s_i counts every sample scoring >= s_i (ties included).
        tp = n_pos[:, None] - cp[:, self.pos_lo]
        fp = n_neg[:, None] - cn[:, self.neg_lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(tp > 0, tp / np.where(tp > 0, tp + fp, 1.0), 0.0)
            ap = np.einsum("rp,rp->r", wp, prec, dtype=np.float64) / np.where(n_pos > 0, n_pos, 1.0)
        # Same definedness rule as the AUC: both label values present.
        return np.where((n_pos > 0) & (n_neg > 0), ap, np.nan)


def weighted_class_metric(kind: str, yt: np.ndarray, ys: np.ndarray, weights: np.ndarray,
                          groups: list[ClassGroups] | None = None) -> np.ndarray:
    """``[R, C]`` AUC (``kind="auc"``) or AP (``kind="ap"``) for ``R`` weight vectors."""
    groups = groups or [ClassGroups(yt[:, c], ys[:, c]) for c in range(yt.shape[1])]
    out = np.empty((weights.shape[0], yt.shape[1]))
    for c, g in enumerate(groups):
        out[:, c] = g.auc(weights) if kind == "auc" else g.ap(weights)
    return out


def nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean of each row over its defined (non-NaN) entries; NaN for a row with none."""
    defined = ~np.isnan(values)
    n = defined.sum(axis=1)
    total = np.where(defined, values, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


# ----------------------------------------------------------------------------- point metrics
def _per_class(kind: str, y_true: Any, y_score: Any, classes: Sequence[str] | None) -> np.ndarray:
    """Unit-weight ``kind`` of each class, warning (at the public function's caller) for undefined ones."""
    yt, ys = as_2d(y_true, y_score)
    names = class_names(classes, yt.shape[1])
    out = weighted_class_metric(kind, yt, ys, np.ones((1, yt.shape[0])))[0]
    for c in np.flatnonzero(np.isnan(out)):
        warnings.warn(
            f"{KINDS[kind]} undefined for class {c} ({names[c]!r}): its known labels take a single value; "
            "reported as NaN and left out of the macro average",
            RuntimeWarning,
            stacklevel=3,
        )
    return out


def _macro(per_class: Callable[[Any, Any], np.ndarray], y_true: Any, y_score: Any) -> float:
    """Mean of the defined entries of ``per_class(y_true, y_score)``, without its warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = per_class(y_true, y_score)
    return float(nanmean_rows(values[None])[0])


def per_class_auc(y_true: Any, y_score: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    """ROC AUC of each class ``[C]``; NaN targets are masked per class.

    A class whose known labels take one value gets ``NaN`` and a warning naming it.
    """
    return _per_class("auc", y_true, y_score, classes)


def macro_auc(y_true: Any, y_score: Any) -> float:
    """Unweighted mean of the per-class AUCs that are defined (``nan`` if none is)."""
    return _macro(per_class_auc, y_true, y_score)


def per_class_auprc(y_true: Any, y_score: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    """Average precision (area under the precision-recall curve, step rule) of each class ``[C]``.

    Same masking and undefined-class rule as :func:`per_class_auc`.
    """
    return _per_class("ap", y_true, y_score, classes)


def macro_auprc(y_true: Any, y_score: Any) -> float:
    """Unweighted mean of the defined per-class average precisions (``nan`` if none)."""
    return _macro(per_class_auprc, y_true, y_score)

