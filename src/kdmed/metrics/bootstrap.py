"""Confidence intervals: percentile bootstrap of any metric, paired bootstrap of a difference, Student-t over seeds.

A bootstrap resample is a vector of weights -- how often each image (or each
patient's images, for the cluster bootstrap) was drawn -- drawn in blocks by
:func:`resample_weights`. The ranking metrics, :func:`~kdmed.metrics.accuracy` and
quadratic kappa evaluate a whole block with a few array operations; any other
callable is evaluated once per resample on the rebuilt index multiset.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .kappa import GradeKappa, accuracy, as_labels, kappa_inputs, quadratic_kappa, weighted_qwk
from .ranking import (
    ClassGroups,
    as_2d,
    macro_auc,
    macro_auprc,
    nanmean_rows,
    per_class_auc,
    per_class_auprc,
    weighted_class_metric,
)

# Upper bound on elements of one [resamples, N] weight block: bounds memory on large test sets.
_BLOCK_ELEMENTS = 4_000_000


def _fast_metric(metric: Callable, yt_raw: Any, ys_raw: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A vectorised ``weights [R, N] -> values`` version of a known metric, else None."""
    if metric in (macro_auc, per_class_auc, macro_auprc, per_class_auprc):
        yt, ys = as_2d(yt_raw, ys_raw)
        kind = "auc" if metric in (macro_auc, per_class_auc) else "ap"
        groups = [ClassGroups(yt[:, c], ys[:, c]) for c in range(yt.shape[1])]
        macro = metric in (macro_auc, macro_auprc)

        def run(w: np.ndarray) -> np.ndarray:
            vals = weighted_class_metric(kind, yt, ys, w, groups)
            return nanmean_rows(vals) if macro else vals

        return run
    if metric is accuracy:
        t, p = as_labels(yt_raw, "y_true"), as_labels(ys_raw, "y_pred")
        correct = (t == p).astype(np.float64)
        return lambda w: (w @ correct) / w.sum(axis=1)
    if metric is quadratic_kappa or isinstance(metric, GradeKappa):
        labels = range(metric.k) if isinstance(metric, GradeKappa) else None
        ti, pi, k = kappa_inputs(yt_raw, ys_raw, labels)
        return lambda w: weighted_qwk(ti, pi, k, w)
    return None


def _n_samples(y_true: Any) -> int:
    n = len(y_true)
    if n == 0:
        raise ValueError("y_true is empty (0 samples)")
    return n


def resample_weights(n: int, n_boot: int, groups: Any, seed: int, progress: bool) -> Iterator[np.ndarray]:
    """Yield blocks ``[r, n]`` of bootstrap weights (draw counts per sample).

    With ``groups`` (patient ids) the patients are drawn with replacement and each
    image gets its patient's draw count (cluster bootstrap).
    """
    if groups is None:
        inverse, n_units = np.arange(n), n
    else:
        g = np.asarray(groups)
        if g.shape != (n,):
            raise ValueError(f"groups must be a 1-D vector of {n} patient ids (one per sample); got shape {g.shape}")
        _, inverse = np.unique(g, return_inverse=True)
        n_units = int(inverse.max()) + 1
    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, _BLOCK_ELEMENTS // max(n, n_units)))
    bar = tqdm(total=n_boot, desc="bootstrap", disable=not progress, leave=False)
    done = 0
    while done < n_boot:
        r = min(block, n_boot - done)
        draws = rng.integers(0, n_units, size=(r, n_units))
        flat = (draws + n_units * np.arange(r)[:, None]).ravel()
        # float32 halves memory traffic; integer counts and their sums stay exact below 2**24.
        counts = np.bincount(flat, minlength=r * n_units).reshape(r, n_units).astype(np.float32)
        yield counts if groups is None else counts[:, inverse]
        done += r
        bar.update(r)
    bar.close()


def _looped_metric(metric: Callable, y_true: Any, y_score: Any, n: int) -> Callable[[np.ndarray], np.ndarray]:
    """Fallback for any callable: rebuild each resample's index multiset and call ``metric`` on it."""
    yt, ys = np.asarray(y_true), np.asarray(y_score)

    def run(weights: np.ndarray) -> np.ndarray:
        rows = []
        for counts in weights.astype(np.int64):
            idx = np.repeat(np.arange(n), counts)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                rows.append(np.asarray(metric(yt[idx], ys[idx]), dtype=np.float64))
        return np.stack(rows)

    return run


def bootstrap_values(metrics: list[tuple[Callable, Any, Any]], n: int, n_boot: int, groups: Any,
                     seed: int, progress: bool) -> list[np.ndarray]:
    """Evaluate each ``(metric, y_true, y_score)`` on the same ``n_boot`` resamples."""
    runners = [_fast_metric(m, yt, ys) or _looped_metric(m, yt, ys, n) for m, yt, ys in metrics]
    outs: list[list[np.ndarray]] = [[] for _ in runners]
    for w in resample_weights(n, n_boot, groups, seed, progress):
        for out, run in zip(outs, runners):
            out.append(np.asarray(run(w), dtype=np.float64))
    return [np.concatenate(o, axis=0) for o in outs]


def check_boot_args(n_boot: int, ci: float) -> None:
    """Raise :class:`ValueError` unless ``n_boot`` is a positive integer and ``0 < ci < 1``."""
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer; got n_boot={n_boot!r}")
    _check_ci(ci)


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1; got ci={ci!r}")


def percentiles(values: np.ndarray, ci: float) -> tuple[Any, Any]:
    """The central ``ci`` percentile bounds of the resampled ``values`` (per column), NaNs ignored."""
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column -> NaN bound
        low, high = np.nanquantile(values, q, axis=0)
    return _scalar(low), _scalar(high)


def _scalar(x: Any) -> Any:
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def bootstrap_ci(y_true: Any, y_score: Any, metric: Callable = macro_auc, n_boot: int = 1000, ci: float = 0.95,
                 groups: Any = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Percentile bootstrap confidence interval of ``metric(y_true, y_score)``.

    Returns ``{"estimate": metric on all data, "low", "high", "n_boot", "n_valid"}``
    (``n_valid``: resamples where the metric -- every entry of it -- was defined;
    undefined resamples are left out of the percentiles). ``groups`` (patient ids)
    switches to the cluster bootstrap: patients are resampled, keeping all their
    images. The AUC/AUPRC metrics, :func:`accuracy` and :func:`quadratic_kappa` run
    vectorised; any other callable is evaluated once per resample. Array-valued
    metrics (e.g. :func:`per_class_auc`) give per-class arrays of bounds.
    """
    check_boot_args(n_boot, ci)
    n = _n_samples(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = _scalar(metric(y_true, y_score))
    (values,) = bootstrap_values([(metric, y_true, y_score)], n, n_boot, groups, seed, progress)
    low, high = percentiles(values, ci)
    defined = ~np.isnan(values).reshape(len(values), -1)
    n_valid = int(defined.all(axis=1).sum())
    return {"estimate": estimate, "low": low, "high": high, "n_boot": int(n_boot), "n_valid": n_valid}


def paired_bootstrap(y_true: Any, score_a: Any, score_b: Any, metric: Callable = macro_auc, n_boot: int = 1000,
                     ci: float = 0.95, groups: Any = None, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Paired bootstrap of ``metric(y_true, score_a) - metric(y_true, score_b)``.

    Both methods are scored on the same resampled indices (or patients, with
    ``groups``). Returns ``{"diff", "low", "high", "p_value", "n_boot", "n_valid"}``;
    the two-sided p-value is ``min(1, 2 * min((1 + #{d* <= 0}), (1 + #{d* >= 0})) / (1 + n_valid))``
    over the resampled differences ``d*`` (the +1 keeps it away from an impossible 0).
    """
    check_boot_args(n_boot, ci)
    n = _n_samples(y_true)
    if np.shape(score_a) != np.shape(score_b):
        raise ValueError(f"score_a shape {np.shape(score_a)} does not match score_b shape {np.shape(score_b)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = float(metric(y_true, score_a)) - float(metric(y_true, score_b))
    va, vb = bootstrap_values([(metric, y_true, score_a), (metric, y_true, score_b)], n, n_boot, groups, seed,
                              progress)
    d = va - vb
    if d.ndim != 1:
        raise ValueError("paired_bootstrap needs a scalar metric (e.g. macro_auc), not a per-class one")
    d = d[~np.isnan(d)]
    if d.size == 0:
        return {"diff": diff, "low": math.nan, "high": math.nan, "p_value": math.nan, "n_boot": int(n_boot),
                "n_valid": 0}
    low, high = percentiles(d, ci)
    p = 2 * min(1 + np.sum(d <= 0), 1 + np.sum(d >= 0)) / (1 + d.size)
    return {"diff": diff, "low": low, "high": high, "p_value": float(min(1.0, p)), "n_boot": int(n_boot),
            "n_valid": int(d.size)}


def mean_ci(values: Any, ci: float = 0.95) -> dict[str, float]:
    """Mean and Student-t interval of ``values`` (e.g. one metric over seeds).

    ``mean +- t_{(1+ci)/2, n-1} * sd / sqrt(n)`` with the sample sd (ddof=1);
    ``low``/``high`` are ``nan`` for a single value. Returns ``{"mean", "low", "high", "n"}``.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value; got none")
    if not np.isfinite(x).all():
        raise ValueError(f"mean_ci values must be finite; value {int(np.flatnonzero(~np.isfinite(x))[0])} is "
                         f"{x[~np.isfinite(x)][0]}")
    _check_ci(ci)
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = float(stats.t.ppf((1 + ci) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}
