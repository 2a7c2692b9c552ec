"""Summaries the chapters show: means over seeds with CIs, paired gains, histories, teacher evaluations.

Everything here reads stored runs (:mod:`kdmed.store`); nothing trains.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from kdmed.metrics import evaluate, macro_auc, mean_ci, paired_bootstrap
from kdmed.config import RunConfig
from kdmed.store import ResultStore, load_history, load_result, load_scores


def mean_table(table: pd.DataFrame, by: Sequence[str], value: str = "macro_auc", ci: float = 0.95) -> pd.DataFrame:
    """Mean of ``value`` over seeds per group, with a t-interval (``low``/``high``) and the count ``n``."""
    missing = [c for c in [*by, value] if c not in table.columns]
    if missing:
        raise ValueError(f"mean_table: missing column(s) {missing}")
    rows = []
    for keys, g in table.groupby(list(by), sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        stats = mean_ci(g[value].to_numpy(dtype=float), ci=ci)
        rows.append({**dict(zip(by, keys)), "mean": stats["mean"], "low": stats["low"], "high": stats["high"],
                     "n": stats["n"]})
    return pd.DataFrame(rows)


def paired_gains(store: ResultStore, runs_a: Sequence[RunConfig], runs_b: Sequence[RunConfig], *,
                 n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per pair (same seed, same test images): macro-AUC of a minus b with a paired patient bootstrap CI."""
    if len(runs_a) != len(runs_b):
        raise ValueError(f"paired_gains: {len(runs_a)} runs against {len(runs_b)}")
    rows = []
    for a, b in zip(runs_a, runs_b):
        sa, sb = load_scores(a, store), load_scores(b, store)
        if not np.array_equal(sa["rows"], sb["rows"]):
            raise ValueError(f"runs {a.name!r} and {b.name!r} were tested on different images; cannot pair them")
        if n_boot > 0:
            res = paired_bootstrap(sa["y_true"], sa["y_score"], sb["y_score"], n_boot=n_boot,
                                   groups=sa["patient_ids"], seed=seed)
        else:  # the difference alone, no interval
            diff = macro_auc(sa["y_true"], sa["y_score"]) - macro_auc(sb["y_true"], sb["y_score"])
            res = {"diff": diff, "low": np.nan, "high": np.nan, "p_value": np.nan}
        auc_b = load_result(b, store)["metrics"]["macro_auc"]
        rows.append({"a": a.name, "b": b.name, "seed": a.seed, "train_n": a.data.train_n, "diff": res["diff"],
                     "low": res["low"], "high": res["high"], "p_value": res["p_value"], "baseline_auc": auc_b,
                     "relative_pct": 100 * res["diff"] / auc_b})
    return pd.DataFrame(rows)


def pooled_gain(pairs: pd.DataFrame) -> dict[str, float]:
    """Mean paired gain over seeds (absolute AUC points and relative %), with t-intervals over seeds."""
    absolute = mean_ci(pairs["diff"].to_numpy(dtype=float))
    relative = mean_ci(pairs["relative_pct"].to_numpy(dtype=float))
    return {"diff": absolute["mean"], "low": absolute["low"], "high": absolute["high"], "n": absolute["n"],
            "relative_pct": relative["mean"], "relative_low": relative["low"], "relative_high": relative["high"]}


def verdict(low: float, high: float, estimate: float) -> str:
    """"reproduced" when the CI lies above 0, "contradicted" when below, else "inconclusive"."""
    if np.isnan(estimate):
        return "not measured"
    if not np.isnan(low) and low > 0:
        return "reproduced"
    if not np.isnan(high) and high < 0:
        return "contradicted"
    if np.isnan(low):
        return "inconclusive (one seed: no CI)" if estimate != 0 else "inconclusive"
    return "inconclusive"


def histories(store: ResultStore, runs: Sequence[RunConfig], labels: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-epoch histories of ``runs``, long format, with the label columns and the seed added."""
    frames = []
    for cfg, lab in zip(runs, labels):
        h = load_history(cfg, store)
        frames.append(h.assign(seed=cfg.seed, **lab))
    return pd.concat(frames, ignore_index=True)


def convergence_table(store: ResultStore, runs: Sequence[RunConfig], labels: Sequence[dict[str, Any]],
                      by: str = "method") -> pd.DataFrame:
    """Per run: best epoch, final train-minus-validation gaps (AUC and loss), then means per ``by``."""
    rows = []
    for cfg, lab in zip(runs, labels):
        res = load_result(cfg, store)
        h = pd.DataFrame(res["history"])
        last = h.iloc[-1]
        rows.append({**lab, "seed": cfg.seed, "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
                     "auc_gap": float(last.get("train_eval_macro_auc", np.nan) - last["val_macro_auc"]),
                     "loss_gap": float(last["val_loss"] - last.get("train_eval_loss", np.nan)),
                     "best_val_auc": res["best_val_macro_auc"], "test_auc": res["metrics"]["macro_auc"]})
    per_run = pd.DataFrame(rows)
    return per_run.groupby(by, sort=False)[["best_epoch", "auc_gap", "loss_gap", "best_val_auc", "test_auc"]].mean()


def evaluate_with_ci(scores: dict[str, Any], n_boot: int = 1000) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`kdmed.metrics.evaluate` with patient-bootstrap CIs, plus a per-class table (class, auc, low, high)."""
    m = evaluate(scores["y_true"], scores["y_score"], scores["task"], classes=scores["classes"],
                 patient_ids=scores["patient_ids"], n_boot=n_boot)
    per_class = m["per_class_auc"]
    ci = m.get("per_class_auc_ci", {})
    rows = []
    for k, name in enumerate(scores["classes"]):
        est = per_class[name] if isinstance(per_class, dict) else per_class[k]
        lo, hi = _ci_bounds(ci, name, k)
        rows.append({"class": name, "auc": est, "low": lo, "high": hi,
                     "positives": int(np.nansum(scores["y_true"][:, k] > 0.5))})
    return m, pd.DataFrame(rows)


def _ci_bounds(ci: Any, name: str, k: int) -> tuple[float, float]:
    # evaluate() stores per-class bounds as {class: [low, high]}
    if isinstance(ci, dict) and name in ci:
        low, high = ci[name]
        return float(low), float(high)
    return float("nan"), float("nan")
