"""Evaluation metrics with bootstrap confidence intervals.

ROC AUC and average precision are computed from scores grouped by tied value
(one sort per class), with optional per-sample weights. A bootstrap resample is a
vector of weights -- how often each image (or each patient's images, for the
cluster bootstrap) was drawn -- so all resamples of a class are evaluated with a
few array operations instead of one scikit-learn call per resample. With unit
weights the values equal scikit-learn's ``roc_auc_score`` and
``average_precision_score`` to rounding.

Conventions: ``y_true`` is ``[N, C]`` (or ``[N]`` for one class) with 0/1 and ``NaN``
for unknown; ``y_score`` has the same shape and may be logits or probabilities (AUC
is rank based). A class whose known labels take a single value has an undefined AUC
/ AUPRC: ``NaN`` (with a warning in the point estimate, silently inside bootstrap
resamples), and macro averages skip it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

# Upper bound on elements of one [resamples, N] weight block: bounds memory on large test sets.
_BLOCK_ELEMENTS = 4_000_000


# ----------------------------------------------------------------------------- input checks
def _as_2d(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
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


def _class_names(classes: Sequence[str] | None, n: int) -> list[str]:
    if classes is None:
        return [str(i) for i in range(n)]
    names = [str(c) for c in classes]
    if len(names) != n:
        raise ValueError(f"classes has {len(names)} names but the data has {n} classes")
    return names


# ----------------------------------------------------------------------------- weighted core
class _ClassGroups:
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


def _weighted_class_metric(kind: str, yt: np.ndarray, ys: np.ndarray, weights: np.ndarray,
                           groups: list[_ClassGroups] | None = None) -> np.ndarray:
    """``[R, C]`` AUC (``kind="auc"``) or AP (``kind="ap"``) for ``R`` weight vectors."""
    groups = groups or [_ClassGroups(yt[:, c], ys[:, c]) for c in range(yt.shape[1])]
    out = np.empty((weights.shape[0], yt.shape[1]))
    for c, g in enumerate(groups):
        out[:, c] = g.auc(weights) if kind == "auc" else g.ap(weights)
    return out


def _warn_undefined(values: np.ndarray, names: list[str], metric: str) -> None:
    for c in np.flatnonzero(np.isnan(values)):
        warnings.warn(
            f"{metric} undefined for class {c} ({names[c]!r}): its known labels take a single value; "
            "reported as NaN and left out of the macro average",
            RuntimeWarning,
            stacklevel=3,
        )


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    defined = ~np.isnan(values)
    n = defined.sum(axis=1)
    total = np.where(defined, values, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


# ----------------------------------------------------------------------------- point metrics
def per_class_auc(y_true: Any, y_score: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    """ROC AUC of each class ``[C]``; NaN targets are masked per class.

    A class whose known labels take one value gets ``NaN`` and a warning naming it.
    """
    yt, ys = _as_2d(y_true, y_score)
    names = _class_names(classes, yt.shape[1])
    out = _weighted_class_metric("auc", yt, ys, np.ones((1, yt.shape[0])))[0]
    _warn_undefined(out, names, "AUC")
    return out


def macro_auc(y_true: Any, y_score: Any) -> float:
    """Unweighted mean of the per-class AUCs that are defined (``nan`` if none is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = per_class_auc(y_true, y_score)
    return float(_nanmean_rows(values[None])[0])


def per_class_auprc(y_true: Any, y_score: Any, classes: Sequence[str] | None = None) -> np.ndarray:
    """Average precision (area under the precision-recall curve, step rule) of each class ``[C]``.

    Same masking and undefined-class rule as :func:`per_class_auc`.
    """
    yt, ys = _as_2d(y_true, y_score)
    names = _class_names(classes, yt.shape[1])
    out = _weighted_class_metric("ap", yt, ys, np.ones((1, yt.shape[0])))[0]
    _warn_undefined(out, names, "AUPRC")
    return out


def macro_auprc(y_true: Any, y_score: Any) -> float:
    """Unweighted mean of the defined per-class average precisions (``nan`` if none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        values = per_class_auprc(y_true, y_score)
    return float(_nanmean_rows(values[None])[0])


def _as_labels(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of class labels; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label equals the true label (1-D label vectors)."""
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_pred length {p.shape[0]} does not match y_true length {t.shape[0]}")
    return float(np.mean(t == p))


def _kappa_inputs(y_true: Any, y_pred: Any, labels: Sequence | None) -> tuple[np.ndarray, np.ndarray, int]:
    t = _as_labels(y_true, "y_true_grades")
    p = _as_labels(y_pred, "y_pred_grades")
    if t.shape != p.shape:
        raise ValueError(f"y_pred_grades length {p.shape[0]} does not match y_true_grades length {t.shape[0]}")
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


def _weighted_qwk(ti: np.ndarray, pi: np.ndarray, k: int, weights: np.ndarray) -> np.ndarray:
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
    ti, pi, k = _kappa_inputs(y_true_grades, y_pred_grades, labels)
    return float(_weighted_qwk(ti, pi, k, np.ones((1, len(ti))))[0])


# ----------------------------------------------------------------------------- bootstrap
def _fast_metric(metric: Callable, yt_raw: Any, ys_raw: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A vectorised ``weights [R, N] -> values`` version of a known metric, else None."""
    if metric in (macro_auc, per_class_auc, macro_auprc, per_class_auprc):
        yt, ys = _as_2d(yt_raw, ys_raw)
        kind = "auc" if metric in (macro_auc, per_class_auc) else "ap"
        groups = [_ClassGroups(yt[:, c], ys[:, c]) for c in range(yt.shape[1])]
        macro = metric in (macro_auc, macro_auprc)

        def run(w: np.ndarray) -> np.ndarray:
            vals = _weighted_class_metric(kind, yt, ys, w, groups)
            return _nanmean_rows(vals) if macro else vals

        return run
    if metric is accuracy:
        t, p = _as_labels(yt_raw, "y_true"), _as_labels(ys_raw, "y_pred")
        correct = (t == p).astype(np.float64)
        return lambda w: (w @ correct) / w.sum(axis=1)
    if metric is quadratic_kappa or isinstance(metric, _GradeKappa):
        labels = range(metric.k) if isinstance(metric, _GradeKappa) else None
        ti, pi, k = _kappa_inputs(yt_raw, ys_raw, labels)
        return lambda w: _weighted_qwk(ti, pi, k, w)
    return None


def _n_samples(y_true: Any) -> int:
    n = len(y_true)
    if n == 0:
        raise ValueError("y_true is empty (0 samples)")
    return n


def _resample_weights(n: int, n_boot: int, groups: Any, seed: int, progress: bool) -> Any:
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


def _bootstrap_values(metrics: list[tuple[Callable, Any, Any]], n: int, n_boot: int, groups: Any,
                      seed: int, progress: bool) -> list[np.ndarray]:
    """Evaluate each ``(metric, y_true, y_score)`` on the same ``n_boot`` resamples."""
    runners = [_fast_metric(m, yt, ys) or _looped_metric(m, yt, ys, n) for m, yt, ys in metrics]
    outs: list[list[np.ndarray]] = [[] for _ in runners]
    for w in _resample_weights(n, n_boot, groups, seed, progress):
        for out, run in zip(outs, runners):
            out.append(np.asarray(run(w), dtype=np.float64))
    return [np.concatenate(o, axis=0) for o in outs]


def _check_boot_args(n_boot: int, ci: float) -> None:
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer; got n_boot={n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1; got ci={ci!r}")


def _percentiles(values: np.ndarray, ci: float) -> tuple[Any, Any]:
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
    _check_boot_args(n_boot, ci)
    n = _n_samples(y_true)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = _scalar(metric(y_true, y_score))
    (values,) = _bootstrap_values([(metric, y_true, y_score)], n, n_boot, groups, seed, progress)
    low, high = _percentiles(values, ci)
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
    _check_boot_args(n_boot, ci)
    n = _n_samples(y_true)
    if np.shape(score_a) != np.shape(score_b):
        raise ValueError(f"score_a shape {np.shape(score_a)} does not match score_b shape {np.shape(score_b)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        diff = float(metric(y_true, score_a)) - float(metric(y_true, score_b))
    va, vb = _bootstrap_values([(metric, y_true, score_a), (metric, y_true, score_b)], n, n_boot, groups, seed,
                               progress)
    d = va - vb
    if d.ndim != 1:
        raise ValueError("paired_bootstrap needs a scalar metric (e.g. macro_auc), not a per-class one")
    d = d[~np.isnan(d)]
    if d.size == 0:
        return {"diff": diff, "low": math.nan, "high": math.nan, "p_value": math.nan, "n_boot": int(n_boot),
                "n_valid": 0}
    low, high = _percentiles(d, ci)
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
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie strictly between 0 and 1; got ci={ci!r}")
    mean = float(x.mean())
    if x.size == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = float(stats.t.ppf((1 + ci) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


# ----------------------------------------------------------------------------- one evaluator
def _softmax_if_logits(scores: np.ndarray) -> np.ndarray:
    """Rows already probabilities (non-negative, summing to 1) are kept; otherwise softmax."""
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ci_dict(values: np.ndarray, estimate: float, ci: float, n_boot: int) -> dict[str, Any]:
    low, high = _percentiles(values, ci)
    return {"estimate": estimate, "low": low, "high": high, "n_boot": n_boot,
            "n_valid": int((~np.isnan(values)).sum())}


def evaluate(y_true: Any, y_score: Any, task: str, classes: Sequence[str] | None = None, patient_ids: Any = None,
             n_boot: int = 0, ci: float = 0.95, seed: int = 0, referable: bool | None = None,
             progress: bool = False) -> dict[str, Any]:
    """All test metrics of one model in one dict (JSON friendly).

    * ``multilabel`` / ``binary``: ``per_class_auc`` and ``per_class_auprc`` (dicts by
      class name), ``macro_auc``, ``macro_auprc``.
    * ``multiclass`` (one-hot ``y_true``; rows with NaN dropped; ``y_score`` logits --
      softmaxed -- or probabilities): one-vs-rest ``per_class_auc``, ``macro_auc``,
      ``accuracy`` and ``quadratic_kappa`` of the argmax grade (grade distance =
      class index). With ``referable`` (default: when there are 5 classes, the DR
      grades 0-4) also ``referable_auc``: AUC of grade >= 2 vs < 2 with score =
      P(grade 2) + P(grade 3) + P(grade 4).

    With ``n_boot > 0`` each scalar metric gets ``<name>_ci`` = ``{estimate, low, high,
    n_boot, n_valid}`` and each per-class AUC (AUPRC) a ``per_class_auc_ci[name] = [low, high]``
    (``per_class_auprc_ci``),
    all from the same resamples (patients when ``patient_ids`` is given).
    """
    if task not in ("multilabel", "multiclass", "binary"):
        raise ValueError(f"task={task!r} is not supported; expected 'multilabel', 'multiclass' or 'binary'")
    yt, ys = _as_2d(y_true, y_score)
    names = _class_names(classes, yt.shape[1])
    groups = None if patient_ids is None else np.asarray(patient_ids)
    if groups is not None and groups.shape != (yt.shape[0],):
        raise ValueError(f"patient_ids must hold one id per sample ({yt.shape[0]}); got shape {groups.shape}")
    if task == "binary" and yt.shape[1] != 1:
        raise ValueError(f"task='binary' expects one class; y_true has {yt.shape[1]}")
    out: dict[str, Any] = {"task": task, "n": int(yt.shape[0]), "classes": names}
    boot: list[tuple[str, Callable, Any, Any]] = []  # (name, metric, y_true, y_score)

    if task == "multiclass":
        keep = ~np.isnan(yt).any(axis=1)
        if not np.all(yt[keep].sum(axis=1) == 1):
            row = int(np.flatnonzero(keep)[np.flatnonzero(yt[keep].sum(axis=1) != 1)[0]])
            raise ValueError(f"multiclass y_true must be one-hot; row {row} sums to {yt[row].sum()}")
        yt, ys = yt[keep], ys[keep]
        groups = None if groups is None else groups[keep]
        out["n"] = int(keep.sum())
        probs = _softmax_if_logits(ys)
        grade_true = yt.argmax(axis=1)
        grade_pred = probs.argmax(axis=1)
        k = yt.shape[1]
        auc = per_class_auc(yt, probs, classes=names)
        out["per_class_auc"] = dict(zip(names, map(float, auc)))
        out["macro_auc"] = macro_auc(yt, probs)
        out["accuracy"] = accuracy(grade_true, grade_pred)
        kappa_metric = _GradeKappa(k)
        out["quadratic_kappa"] = kappa_metric(grade_true, grade_pred)
        boot += [("per_class_auc", per_class_auc, yt, probs), ("accuracy", accuracy, grade_true, grade_pred),
                 ("quadratic_kappa", kappa_metric, grade_true, grade_pred)]
        if referable if referable is not None else k == 5:
            if k < 3:
                raise ValueError(f"referable_auc needs grades 0..>=2; y_true has only {k} classes")
            ref_true = (grade_true >= 2).astype(np.float64)
            ref_score = probs[:, 2:].sum(axis=1)
            out["referable_auc"] = macro_auc(ref_true, ref_score)
            boot.append(("referable_auc", macro_auc, ref_true, ref_score))
    else:
        auc = per_class_auc(yt, ys, classes=names)
        ap = per_class_auprc(yt, ys, classes=names)
        out["per_class_auc"] = dict(zip(names, map(float, auc)))
        out["per_class_auprc"] = dict(zip(names, map(float, ap)))
        out["macro_auc"] = macro_auc(yt, ys)
        out["macro_auprc"] = macro_auprc(yt, ys)
        boot += [("per_class_auc", per_class_auc, yt, ys), ("per_class_auprc", per_class_auprc, yt, ys)]

    if n_boot:
        _check_boot_args(n_boot, ci)
        values = _bootstrap_values([(m, a, b) for _, m, a, b in boot], len(yt), n_boot, groups, seed, progress)
        for (name, _, _, _), vals in zip(boot, values):
            if name.startswith("per_class_"):
                low, high = _percentiles(vals, ci)
                out[f"{name}_ci"] = {c: [float(lo), float(hi)] for c, lo, hi in zip(names, low, high)}
                # The macro value of each resample comes from the same per-class matrix.
                macro = name.replace("per_class_", "macro_")
                out[f"{macro}_ci"] = _ci_dict(_nanmean_rows(vals), out[macro], ci, int(n_boot))
            else:
                out[f"{name}_ci"] = _ci_dict(vals, out[name], ci, int(n_boot))
    return out


class _GradeKappa:
    """Quadratic kappa over the fixed grade list ``0..k-1`` (recognised by the vectorised bootstrap)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, y_true: Any, y_pred: Any) -> float:
        return quadratic_kappa(y_true, y_pred, labels=range(self.k))
