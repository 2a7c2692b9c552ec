"""Each claim of the paper, measured from the cached runs of one profile.

:func:`measure_claims` only reads results: a claim whose runs are not all complete in
the profile's results store is reported as "not run under this profile", never trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kdmed.analysis import paired_gains, pooled_gain, verdict
from kdmed.metrics import mean_ci
from kdmed.paper import CLAIMS
from kdmed.config import RunConfig
from kdmed.store import load_result
from kdmed.study import CROSS_DOMAINS, Study, cross_domain_grid, regularization_grid

#: claims measured by kd − transfer, and the setting where the real data of the claim is used
GAIN_CLAIMS = {"chexpert_gain": "chexpert", "chestxray8_gain": "chestxray8"}


def _complete(study: Study, configs: list[RunConfig]) -> bool:
    store = study.store()
    try:
        return all(store.is_complete(c) for c in configs)
    except Exception:  # a stale result counts as not measured here; the chapters report it loudly
        return False


def _row(claim_key: str, study: Study, measured: str, low: float, high: float, estimate: float,
         note: str = "") -> dict[str, Any]:
    return {"claim": claim_key, "profile": study.profile, "setting": study.setting, "our measurement": measured,
            "verdict": verdict(low, high, estimate), "note": note}


def _not_run(claim_key: str, study: Study, why: str) -> dict[str, Any]:
    return {"claim": claim_key, "profile": study.profile, "setting": study.setting, "our measurement": "—",
            "verdict": "not run under this profile", "note": why}


def _gain_rows(study: Study) -> list[dict[str, Any]]:
    n = study.target_n
    kd = [study.student("kd", n, s) for s in study.seeds]
    tr = [study.student("transfer", n, s) for s in study.seeds]
    rows = []
    for key, real_setting in GAIN_CLAIMS.items():
        if study.setting not in ("synthetic", real_setting):
            rows.append(_not_run(key, study, f"needs setting {real_setting!r} (real data)"))
            continue
        if not _complete(study, kd + tr):
            rows.append(_not_run(key, study, "the distillation chapter has not run its kd/transfer runs"))
            continue
        g = pooled_gain(paired_gains(study.store(), kd, tr, n_boot=0))
        stand_in = " (synthetic stand-in)" if study.setting == "synthetic" else ""
        rows.append(_row(
            key, study,
            f"kd − transfer at n = {n}{stand_in}: {g['diff']:+.4f} AUC points "
            f"[{g['low']:+.4f}, {g['high']:+.4f}] ({g['relative_pct']:+.2f} % relative), {g['n']} seeds",
            g["low"], g["high"], g["diff"],
        ))
    return rows


def _cross_domain_row(study: Study) -> dict[str, Any]:
    configs, labels = cross_domain_grid(study, ["transfer", "kd", "at"])
    if not _complete(study, configs):
        return _not_run("cross_domain", study, "the cross-domain chapter has not run")
    store = study.store()
    auc = pd.DataFrame([{**lab, "seed": c.seed, "auc": load_result(c, store)["metrics"]["macro_auc"]}
                        for c, lab in zip(configs, labels)])
    diffs, parts = [], []
    for domain, role in CROSS_DOMAINS.items():
        if role == "teacher":
            continue  # the in-domain teacher is the reference, not a cross-domain one
        teach = "kd" if study.same_label_space(role) else "at"
        d = auc[auc["domain"] == domain].pivot(index="seed", columns="method", values="auc")
        diff = (d[teach] - d["transfer"]).to_numpy()
        diffs.append(diff)
        parts.append(f"{domain}: {teach} − transfer {np.mean(diff):+.4f}")
    pooled = mean_ci(np.concatenate(diffs))
    return _row("cross_domain", study, "; ".join(parts) + f" (all: {pooled['mean']:+.4f})",
                pooled["low"], pooled["high"], pooled["mean"])


def _regularization_rows(study: Study) -> list[dict[str, Any]]:
    configs, labels = regularization_grid(study, ["scratch", "kd"])
    if not _complete(study, configs):
        why = "the regularization chapter has not run"
        return [_not_run("regularization", study, why), _not_run("convergence", study, why)]
    store = study.store()
    per = {}
    for c, lab in zip(configs, labels):
        res = load_result(c, store)
        last = res["history"][-1]
        per.setdefault(lab["method"], {})[c.seed] = {
            "gap": last.get("train_eval_macro_auc", np.nan) - last["val_macro_auc"], "best_epoch": res["best_epoch"]}
    seeds = sorted(per["scratch"])
    gap_diff = np.array([per["scratch"][s]["gap"] - per["kd"][s]["gap"] for s in seeds], dtype=float)
    epoch_diff = np.array([per["scratch"][s]["best_epoch"] - per["kd"][s]["best_epoch"] for s in seeds], dtype=float)
    g, e = mean_ci(gap_diff), mean_ci(epoch_diff)
    return [
        _row("regularization", study,
             f"train−val AUC gap, scratch minus kd: {g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]",
             g["low"], g["high"], g["mean"], "positive = the taught student overfits less"),
        _row("convergence", study,
             f"epoch of best validation AUC, scratch minus kd: {e['mean']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}]",
             e["low"], e["high"], e["mean"], "positive = the taught student peaks earlier"),
    ]


def measure_claims(study: Study) -> pd.DataFrame:
    """One row per claim of :data:`kdmed.paper.CLAIMS`, measured from ``study``'s cached runs."""
    missing = study.missing_roots()
    if missing:
        rows = [_not_run(c.key, study, f"dataset folders not set: {'; '.join(missing)}") for c in CLAIMS]
    else:
        rows = _gain_rows(study) + [_cross_domain_row(study)] + _regularization_rows(study)
    measured = pd.DataFrame(rows)
    paper = pd.DataFrame([{"claim": c.key, "paper says": c.text, "paper's figure": c.paper_value} for c in CLAIMS])
    return paper.merge(measured, on="claim", how="left")
