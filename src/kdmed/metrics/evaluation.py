"""One evaluator: every test metric of one model, with bootstrap intervals, in one JSON-friendly dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .bootstrap import bootstrap_values, check_boot_args, percentiles
from .kappa import GradeKappa, accuracy
from .ranking import as_2d, class_names, macro_auc, macro_auprc, nanmean_rows, per_class_auc, per_class_auprc


def _softmax_if_logits(scores: np.ndarray) -> np.ndarray:
    """Rows already probabilities (non-negative, summing to 1) are kept; otherwise softmax."""
    if (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _ci_dict(values: np.ndarray, estimate: float, ci: float, n_boot: int) -> dict[str, Any]:
    low, high = percentiles(values, ci)
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
    yt, ys = as_2d(y_true, y_score)
    names = class_names(classes, yt.shape[1])
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
        kappa_metric = GradeKappa(k)
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
        check_boot_args(n_boot, ci)
        values = bootstrap_values([(m, a, b) for _, m, a, b in boot], len(yt), n_boot, groups, seed, progress)
        for (name, _, _, _), vals in zip(boot, values):
            if name.startswith("per_class_"):
                low, high = percentiles(vals, ci)
                out[f"{name}_ci"] = {c: [float(lo), float(hi)] for c, lo, hi in zip(names, low, high)}
                # The macro value of each resample comes from the same per-class matrix.
                macro = name.replace("per_class_", "macro_")
                out[f"{macro}_ci"] = _ci_dict(nanmean_rows(vals), out[macro], ci, int(n_boot))
            else:
                out[f"{name}_ci"] = _ci_dict(vals, out[name], ci, int(n_boot))
    return out
