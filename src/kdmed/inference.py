"""Statistics of the study: a hierarchical bootstrap of AUC gains, Holm's correction, verdicts, units.

**Hierarchical bootstrap.** A pooled gain (arm a minus arm b, averaged over the
training seeds) varies with the seeds (training randomness: subset, init, teacher)
and with the test patients. Each replicate draws the test patients with replacement
(one draw shared by every arm and seed: they are all tested on the same images), then
the seeds with replacement, and averages the per-seed differences of macro-AUC over
the drawn seeds. :func:`auc_bootstrap` computes every arm's macro-AUC on the same
patient draws once; :func:`contrast` and :func:`regime_fit` read it.

**A fixed class set.** Real test sets are small (CheXpert's validation set has 234
images; some findings have 0-1 positives there). The macro-AUC is the mean over a set
of classes fixed once, before any resampling, by :func:`fixed_classes`: a class is kept
when the test split has at least :data:`MIN_CLASS_COUNT` known positives and as many
known negatives. The point estimate and every replicate average the per-class AUCs of
exactly those classes; a replicate in which a kept class has no positive (or no
negative) drawn is NaN -- left out of the intervals -- rather than a macro over fewer
classes.

**Units.** Gains are reported in **AUC points**: 100 × ΔAUC (a gain of 0.03 in AUC is
+3.0 points). :func:`points` is the one conversion.

**Verdicts.** Each tested claim gets a two-sided bootstrap p-value; Holm's step-down
correction over the distinct claims of a page controls the family-wise error. On the
synthetic stand-in a claim *holds*, is *opposite*, or is *unresolved on the stand-in*;
only real data can say *reproduced* or *not reproduced* (:func:`verdict`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

ALPHA = 0.05
#: a class enters the macro-AUC only when the test split has at least this many known positives AND at least
#: this many known negatives (NaN labels are unknown and count as neither); see :func:`fixed_classes`
MIN_CLASS_COUNT = 5
#: the identity of the metric the replicates hold, part of every cache key (:mod:`kdmed.replicates`): replicates
#: stored by an earlier metric (a macro that skipped the classes undefined in a resample) are never read back
METRIC_ID = "per-class AUC over fixed classes v1"
STAND_IN = ("holds on the stand-in", "opposite on the stand-in", "unresolved on the stand-in")
REAL = ("reproduced", "not reproduced")


def points(delta_auc: float | np.ndarray) -> float | np.ndarray:
    """AUC points: 100 × a difference of AUCs."""
    return 100.0 * np.asarray(delta_auc, dtype=np.float64) if isinstance(delta_auc, np.ndarray) else 100.0 * delta_auc


@dataclasses.dataclass
class AUCBootstrap:
    """Macro-AUCs of named arms per seed, on the point estimate and on every replicate.

    ``point[name]``: ``[n_seeds]``; ``boot[name]``: ``[n_seeds, n_boot]`` (shared patient
    draws; NaN where a kept class was undefined in the replicate); ``seed_draws``:
    ``[n_boot, n_seeds]`` positions of the seeds drawn per replicate. ``classes_used``:
    the classes every macro-AUC averages over; ``classes_excluded``: the others, each
    with its counts, e.g. ``"Fracture (1 positive)"`` (see :func:`fixed_classes`).
    """

    point: dict[str, np.ndarray]
    boot: dict[str, np.ndarray]
    seed_draws: np.ndarray
    classes_used: list[str] = dataclasses.field(default_factory=list)
    classes_excluded: list[str] = dataclasses.field(default_factory=list)

    @property
    def n_boot(self) -> int:
        return self.seed_draws.shape[0]

    def mean_over_seeds(self, values: np.ndarray) -> np.ndarray:
        """``[n_seeds, n_boot]`` -> ``[n_boot]``: each replicate's mean over its drawn seeds."""
        return values[self.seed_draws, np.arange(self.n_boot)[:, None]].mean(axis=1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def fixed_classes(y_true: np.ndarray, classes: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """The columns of ``y_true`` the macro-AUC averages over, and the names of the others with their counts.

    ``y_true``: ``[N, C]`` (or ``[N]`` for one class) of 0/1 with NaN for unknown, the
    convention of :mod:`kdmed.metrics.ranking`; a multiclass task (DR grades) is one-hot
    ``[N, C]`` and gets the same rule per column. A column is kept when it has at least
    :data:`MIN_CLASS_COUNT` known positives and at least as many known negatives.
    Returns ``(kept column indices, excluded)``, ``excluded`` naming each left-out class
    with what it lacks, e.g. ``"Fracture (1 positive)"``, ``"No Finding (3 negatives)"``.
    ``classes``: the column names (``"0"``, ``"1"``, ... when None).
    """
    from kdmed.metrics.ranking import class_names

    yt = np.asarray(y_true, dtype=np.float64)
    if yt.ndim == 1:
        yt = yt[:, None]
    if yt.ndim != 2:
        raise ValueError(f"y_true must be [N] or [N, C]; got shape {np.shape(y_true)}")
    names = class_names(classes, yt.shape[1])
    positives = (yt == 1).sum(axis=0)  # NaN == 1 is False: unknown labels count as neither
    negatives = (yt == 0).sum(axis=0)
    kept, excluded = [], []
    for c, name in enumerate(names):
        p, q = int(positives[c]), int(negatives[c])
        if p >= MIN_CLASS_COUNT and q >= MIN_CLASS_COUNT:
            kept.append(c)
            continue
        short = ([_plural(p, "positive")] if p < MIN_CLASS_COUNT else []) + \
                ([_plural(q, "negative")] if q < MIN_CLASS_COUNT else [])
        excluded.append(f"{name} ({', '.join(short)})")
    return np.asarray(kept, dtype=np.int64), excluded


def _fixed_macro(per_class: np.ndarray) -> np.ndarray:
    """``[..., C]`` per-class AUCs -> their mean over all ``C`` classes; NaN if any of them is NaN."""
    return per_class.sum(axis=-1) / per_class.shape[-1]


def auc_bootstrap(y_true: np.ndarray, patient_ids: np.ndarray, scores: Mapping[str, Sequence[np.ndarray]],
                  n_boot: int, seed: int = 0, cache: str | Path | None = None, writable: bool = True,
                  classes: Sequence[str] | None = None) -> AUCBootstrap:
    """Every arm's macro-AUC per seed, and on ``n_boot`` hierarchical replicates (see the module docstring).

    ``scores[name]`` holds one ``[N, K]`` score array per seed, all on the images of
    ``y_true``; every arm must have the same number of seeds. The class set is fixed
    once by :func:`fixed_classes` (``classes``: the column names); the point estimate
    and every replicate are the mean per-class AUC over exactly those classes, NaN for
    a replicate in which one of them is undefined. Raises :class:`ValueError` when no
    class is kept. ``cache``: a folder of stored replicates (:mod:`kdmed.replicates`);
    the values are the same with or without it.
    """
    from kdmed.metrics import per_class_auc
    from kdmed.metrics.bootstrap import bootstrap_values
    from kdmed.metrics.ranking import class_names
    from kdmed.replicates import cached_replicates

    counts = {len(v) for v in scores.values()}
    if len(counts) != 1:
        raise ValueError(f"every arm needs the same number of seeds, got {({k: len(v) for k, v in scores.items()})}")
    (k,) = counts
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    yt = np.asarray(y_true)
    yt2 = yt[:, None] if yt.ndim == 1 else yt
    kept, excluded = fixed_classes(yt2, classes)
    if kept.size == 0:
        raise ValueError(f"no class has at least {MIN_CLASS_COUNT} known positive and {MIN_CLASS_COUNT} known "
                         f"negative test images, so no macro-AUC is defined: {', '.join(excluded)}")
    names_all = class_names(classes, yt2.shape[1])
    y_kept = yt2[:, kept]
    names = list(scores)
    arrays = [s for name in names for s in scores[name]]

    def restrict(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s)
        s = s[:, None] if s.ndim == 1 else s
        if s.shape != yt2.shape:
            raise ValueError(f"a score array has shape {np.shape(s)}, the labels {np.shape(y_true)}")
        return s[:, kept]

    def compute(positions: list[int]) -> list[np.ndarray]:
        # each array's replicates are the same whatever else is drawn with it: the draws depend on n, seed, patients
        triples = [(per_class_auc, y_kept, restrict(arrays[i])) for i in positions]
        return [_fixed_macro(v) for v in bootstrap_values(triples, len(y_true), n_boot, patient_ids, seed, False)]

    metric = f"{METRIC_ID}|min {MIN_CLASS_COUNT}|columns {kept.tolist()}"
    values = cached_replicates(y_true, patient_ids, arrays, n_boot, seed, compute, cache, writable, metric=metric)
    boot, point = {}, {}
    for i, name in enumerate(names):
        boot[name] = np.stack(values[i * k:(i + 1) * k])
        point[name] = np.array([_fixed_macro(per_class_auc(y_kept, restrict(s))) for s in scores[name]],
                               dtype=np.float64)
    draws = np.random.default_rng([seed, 1]).integers(0, k, size=(n_boot, k))
    return AUCBootstrap(point, boot, draws, [names_all[c] for c in kept], excluded)


def _summary(point: float, reps: np.ndarray, level: float = 0.95) -> dict[str, float]:
    reps = reps[np.isfinite(reps)]
    lo, hi = np.percentile(reps, [50 * (1 - level), 50 * (1 + level)]) if reps.size else (np.nan, np.nan)
    # two-sided: how often the replicates fall on the other side of 0
    p = 2 * min(np.mean(reps <= 0), np.mean(reps >= 0)) if reps.size else np.nan
    return {"estimate": float(point), "low": float(lo), "high": float(hi), "p_value": float(min(1.0, p)),
            "n_boot": int(reps.size)}


def contrast(bs: AUCBootstrap, a: str, b: str) -> dict[str, float]:
    """Mean over seeds of AUC(a) − AUC(b), in AUC points, with its hierarchical CI and p-value."""
    diff = bs.boot[a] - bs.boot[b]
    out = _summary(points(float(np.mean(bs.point[a] - bs.point[b]))), points(bs.mean_over_seeds(diff)))
    out["seeds"] = len(bs.point[a])
    return out


def level_ci(bs: AUCBootstrap, name: str) -> dict[str, float]:
    """Mean macro-AUC (over ``bs.classes_used``) of arm ``name`` over seeds with its hierarchical CI (AUC, not points)."""
    return _summary(float(np.mean(bs.point[name])), bs.mean_over_seeds(bs.boot[name]))


def regime_fit(bs: AUCBootstrap, points_of: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """Where a teacher starts to beat transfer: the line gain = a + b × advantage over teacher strengths.

    ``points_of``: one ``(teacher, taught arm, baseline arm)`` triple of arm names per
    strength; the advantage is AUC(teacher) − AUC(baseline) and the gain AUC(taught) −
    AUC(baseline), both in AUC points, averaged over seeds. Returns the slope ``b``, the
    crossover ``-a / b`` (the advantage at which the gain is 0) with percentile CIs over
    the replicates, and how many replicates had a positive slope.
    """
    if len(points_of) < 2:
        raise ValueError("a regime fit needs at least two teacher strengths")

    def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xm, ym = x.mean(axis=0), y.mean(axis=0)
        slope = ((x - xm) * (y - ym)).sum(axis=0) / ((x - xm) ** 2).sum(axis=0)
        return slope, ym - slope * xm

    x_pt = np.array([points(np.mean(bs.point[t] - bs.point[base])) for t, _, base in points_of])[:, None]
    y_pt = np.array([points(np.mean(bs.point[a] - bs.point[base])) for _, a, base in points_of])[:, None]
    x_bs = np.stack([points(bs.mean_over_seeds(bs.boot[t] - bs.boot[base])) for t, _, base in points_of])
    y_bs = np.stack([points(bs.mean_over_seeds(bs.boot[a] - bs.boot[base])) for _, a, base in points_of])
    slope_pt, icpt_pt = fit(x_pt, y_pt)
    slope_bs, icpt_bs = fit(x_bs, y_bs)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_pt = float(-icpt_pt[0] / slope_pt[0])
        cross_bs = -icpt_bs / slope_bs
    positive = slope_bs > 0
    slope = _summary(float(slope_pt[0]), slope_bs)
    crossing = _summary(cross_pt, cross_bs[positive]) if positive.any() else {"estimate": cross_pt, "low": np.nan,
                                                                             "high": np.nan}
    return {"slope": slope["estimate"], "slope_low": slope["low"], "slope_high": slope["high"],
            "crossover": crossing["estimate"] if slope_pt[0] > 0 else float("nan"),
            "crossover_low": crossing["low"], "crossover_high": crossing["high"],
            "positive_slope_share": float(positive.mean()),
            "advantages": x_pt[:, 0].tolist(), "gains": y_pt[:, 0].tolist()}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN), in the input order."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(estimate: float, p_adjusted: float, real_data: bool, alpha: float = ALPHA) -> str:
    """The words a result may carry: see the module docstring. A claim predicts a positive effect."""
    if not np.isfinite(estimate) or not np.isfinite(p_adjusted):
        return "not measured"
    significant = p_adjusted < alpha
    if real_data:
        return REAL[0] if significant and estimate > 0 else REAL[1]
    if not significant:
        return STAND_IN[2]
    return STAND_IN[0] if estimate > 0 else STAND_IN[1]
