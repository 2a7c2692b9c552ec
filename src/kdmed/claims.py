"""Each claim of the paper, measured from the stored runs of one profile, with Holm-corrected verdicts.

:func:`measure` only reads results: a profile whose runs are not all in its results
store is reported as "not run under this profile", never trained. Every test of a
claim (one per framing, init, domain...) enters one Holm correction; a claim's row
lists its tests with their verdicts, on the synthetic stand-in or on real data
(:func:`kdmed.inference.verdict`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from kdmed import analysis, experiments, inference
from kdmed.paper import CLAIMS
from kdmed.study import CONTRASTS, Study

#: the claim each test belongs to
GAIN, CROSS, REGULARIZATION, CONVERGENCE = (c.key for c in CLAIMS)


@dataclasses.dataclass
class Measured:
    """Every test of the claims under one profile (a row each) and the claims table."""

    tests: pd.DataFrame
    claims: pd.DataFrame
    headline: dict[str, Any]


def _complete(study: Study, grid: experiments.Grid) -> bool:
    store = study.store()
    return all(store.status(c) == "complete" for c in grid.configs)


def _seed_test(values: np.ndarray) -> dict[str, float]:
    """Mean of per-seed paired differences with a t-interval and a two-sided t-test p-value."""
    ci = analysis.mean_over_seeds(values)
    p = float(stats.ttest_1samp(values, 0.0).pvalue) if len(values) > 1 and np.std(values) > 0 else np.nan
    return {"estimate": ci["mean"], "low": ci["low"], "high": ci["high"], "p": p}


def gain_tests(study: Study) -> pd.DataFrame:
    """The headline contrasts (both framings, near and far), in AUC points with hierarchical CIs."""
    store = study.store()
    scores, test = analysis.grouped_scores(store, experiments.headline(study))
    bs = analysis.bootstrap(study, scores, test)
    table = analysis.contrast_table(bs, CONTRASTS)
    return pd.DataFrame({"claim": GAIN, "test": table.index, "estimate": table["gain (AUC points)"],
                         "low": table["low"], "high": table["high"], "p": table["p"],
                         "unit": "AUC points", "seeds": table["seeds"]}).reset_index(drop=True)


def cross_domain_tests(study: Study) -> pd.DataFrame:
    """Per teacher domain: kd / at from it against fine-tuning from it."""
    table = analysis.cross_domain_table(study, study.store(), experiments.cross_domain(study))
    return pd.DataFrame({"claim": CROSS, "test": table["domain"] + ": " + table["comparison"],
                         "estimate": table["gain (AUC points)"], "low": table["low"], "high": table["high"],
                         "p": table["p"], "unit": "AUC points", "seeds": table["seeds"]})


def training_tests(study: Study) -> pd.DataFrame:
    """Scratch minus kd, per seed: the generalization gap at the best epoch and the epochs to 95 % of the best."""
    summary = analysis.training_summary(study.store(), experiments.headline(study))
    per = summary.pivot(index="seed", columns="arm")
    rows = []
    for claim, column, unit, what in (
            (REGULARIZATION, "gap at best (AUC points)", "AUC points",
             "train − validation AUC gap at the best epoch, scratch minus kd (positive: the taught student overfits less)"),
            (CONVERGENCE, "epochs to 95 % of best", "epochs",
             "epochs to 95 % of the best validation AUC, scratch minus kd (positive: the taught student converges faster)")):
        diff = (per[column]["scratch"] - per[column]["kd"]).to_numpy(dtype=float)
        rows.append({"claim": claim, "test": what, **_seed_test(diff), "unit": unit, "seeds": len(diff)})
    return pd.DataFrame(rows)


def measure(study: Study) -> Measured:
    """Every claim of :data:`kdmed.paper.CLAIMS` under ``study``'s profile (see the module docstring)."""
    real = study.setting != "synthetic"
    parts, missing = [], []
    if study.missing_roots():
        missing = [c.key for c in CLAIMS]
    else:
        for grid, fn in ((experiments.headline(study), [gain_tests, training_tests]),
                         (experiments.cross_domain(study), [cross_domain_tests])):
            if _complete(study, grid):
                parts += [f(study) for f in fn]
    tests = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["claim", "test", "estimate", "low", "high", "p", "unit", "seeds"])
    tests["p (Holm)"] = inference.holm(tests["p"].to_numpy(dtype=float)) if len(tests) else []
    tests["verdict"] = [inference.verdict(e, q, real) for e, q in zip(tests["estimate"], tests["p (Holm)"])]
    tests["profile"] = study.profile
    column = f"{'real data' if real else 'synthetic stand-in'} ({study.profile})"
    rows = []
    for c in CLAIMS:
        mine = tests[tests["claim"] == c.key]
        if len(mine):
            cell = "; ".join(f"{t.test}: {t.estimate:+.2f} {t.unit} [{t.low:+.2f}, {t.high:+.2f}], {t.verdict}"
                             for t in mine.itertuples())
        else:
            cell = "not run under this profile" + (" (dataset folders not set)" if c.key in missing else "")
        rows.append({"claim": c.text, "key": c.key, "paper's figure": c.paper_value, column: cell,
                     "the paper's real data": (cell if real else
                                               "not tested here: needs the full profile (real CheXpert / NIH data)")})
    headline = {}
    if len(tests) and (tests["claim"] == GAIN).any():
        g = tests[tests["claim"] == GAIN].set_index("test")
        headline = {k: g.loc[k].to_dict() for k in g.index}
    return Measured(tests, pd.DataFrame(rows), headline)
