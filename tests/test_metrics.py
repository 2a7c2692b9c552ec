"""Metrics against scikit-learn / scipy-free hand computations, and bootstrap behaviour."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, cohen_kappa_score, roc_auc_score

from kdmed.metrics import (
    accuracy,
    bootstrap_ci,
    evaluate,
    macro_auc,
    macro_auprc,
    mean_ci,
    paired_bootstrap,
    per_class_auc,
    per_class_auprc,
    quadratic_kappa,
)


def _data(n: int, c: int, seed: int, nan_frac: float = 0.15, signal: float = 1.0):
    """Labels with NaNs and coarse (heavily tied) scores correlated with them."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(float)
    s = np.round(rng.normal(size=(n, c)) + signal * y, 1)
    y[rng.random((n, c)) < nan_frac] = np.nan
    return y, s


def _sk_per_class(fn, y, s):
    out = []
    for c in range(y.shape[1]):
        m = ~np.isnan(y[:, c])
        out.append(fn(y[m, c], s[m, c]))
    return np.array(out)


# ----------------------------------------------------------------------------- point metrics
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_auprc_match_sklearn_with_ties_and_nans(seed):
    y, s = _data(400, 5, seed)
    assert len(np.unique(s)) < 100  # many ties
    np.testing.assert_allclose(per_class_auc(y, s), _sk_per_class(roc_auc_score, y, s), rtol=0, atol=1e-10)
    np.testing.assert_allclose(per_class_auprc(y, s), _sk_per_class(average_precision_score, y, s), rtol=0,
                               atol=1e-10)
    assert macro_auc(y, s) == pytest.approx(_sk_per_class(roc_auc_score, y, s).mean(), abs=1e-10)
    assert macro_auprc(y, s) == pytest.approx(_sk_per_class(average_precision_score, y, s).mean(), abs=1e-10)


def test_auc_rank_based_logits_equal_probabilities_and_1d_input():
    y, s = _data(300, 3, 4, nan_frac=0.0)
    probs = 1 / (1 + np.exp(-s))
    np.testing.assert_allclose(per_class_auc(y, s), per_class_auc(y, probs), atol=1e-12)
    assert per_class_auc(y[:, 0], s[:, 0]).shape == (1,)
    assert macro_auc(y[:, 0], s[:, 0]) == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]), abs=1e-12)


def test_undefined_class_is_nan_with_warning_and_skipped_by_macro():
    y, s = _data(200, 3, 5, nan_frac=0.0)
    y[:, 1] = 0.0
    y[:5, 1] = np.nan
    with pytest.warns(RuntimeWarning, match=r"AUC undefined for class 1 \('Edema'\)"):
        auc = per_class_auc(y, s, classes=["Atelectasis", "Edema", "Effusion"])
    assert np.isnan(auc[1]) and not np.isnan(auc[[0, 2]]).any()
    with pytest.warns(RuntimeWarning, match="AUPRC undefined for class 1"):
        assert np.isnan(per_class_auprc(y, s)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the macro averages stay quiet
        assert macro_auc(y, s) == pytest.approx(np.mean([roc_auc_score(y[:, c], s[:, c]) for c in (0, 2)]))
        assert math.isnan(macro_auc(np.zeros((4, 2)), np.arange(8.0).reshape(4, 2)))


def test_kappa_and_accuracy_match_sklearn():
    rng = np.random.default_rng(6)
    t = rng.integers(0, 5, 300)
    p = np.clip(t + rng.integers(-2, 3, 300), 0, 4)
    assert quadratic_kappa(t, p) == pytest.approx(cohen_kappa_score(t, p, weights="quadratic"), abs=1e-12)
    # Grades 2 and 3 never predicted nor true: fixed labels keep the real grade distances.
    t2, p2 = np.array([0, 1, 4, 4, 1, 0, 1]), np.array([0, 1, 1, 4, 4, 0, 0])
    assert quadratic_kappa(t2, p2, labels=range(5)) == pytest.approx(
        cohen_kappa_score(t2, p2, weights="quadratic", labels=list(range(5))), abs=1e-12)
    assert quadratic_kappa(t2, p2) == pytest.approx(cohen_kappa_score(t2, p2, weights="quadratic"), abs=1e-12)
    assert quadratic_kappa(t2, p2) != pytest.approx(quadratic_kappa(t2, p2, labels=range(5)))
    assert accuracy(t, p) == pytest.approx(accuracy_score(t, p))
    with pytest.raises(ValueError, match="y_pred_grades contains 7"):
        quadratic_kappa([0, 1], [0, 7], labels=range(5))


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"y_true must be 0, 1 or NaN; row 1, class 0 is -1"):
        per_class_auc([[1.0], [-1.0], [0.0]], [[0.1], [0.2], [0.3]])
    with pytest.raises(ValueError, match=r"y_score must be finite; row 0, class 1 is nan"):
        macro_auc(np.zeros((2, 2)), [[0.0, np.nan], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"y_score shape \(3,\) does not match y_true shape \(2,\)"):
        macro_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="classes has 1 names but the data has 2 classes"):
        per_class_auc(np.eye(2), np.eye(2), classes=["a"])
    with pytest.raises(ValueError, match="n_boot must be a positive integer; got n_boot=0"):
        bootstrap_ci([0, 1], [0.1, 0.2], n_boot=0)
    with pytest.raises(ValueError, match="groups must be a 1-D vector of 2 patient ids"):
        bootstrap_ci([0, 1], [0.1, 0.2], n_boot=5, groups=[1, 2, 3])


# ----------------------------------------------------------------------------- bootstrap
def test_vectorised_bootstrap_equals_sklearn_on_each_resample():
    y, s = _data(150, 3, 7)

    def sk_macro(yt, ys):  # an unrecognised callable: evaluated resample by resample
        vals = []
        for c in range(yt.shape[1]):
            m = ~np.isnan(yt[:, c])
            if len(np.unique(yt[m, c])) == 2:
                vals.append(roc_auc_score(yt[m, c], ys[m, c]))
        return np.mean(vals) if vals else np.nan

    fast = bootstrap_ci(y, s, metric=macro_auc, n_boot=40, seed=3)
    slow = bootstrap_ci(y, s, metric=sk_macro, n_boot=40, seed=3)
    for key in ("estimate", "low", "high"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-10)
    t = np.random.default_rng(8).integers(0, 5, 120)
    p = np.clip(t + np.random.default_rng(9).integers(-1, 2, 120), 0, 4)
    for fast_metric, sk in ((accuracy, accuracy_score),
                            (quadratic_kappa, lambda a, b: cohen_kappa_score(a, b, weights="quadratic"))):
        f = bootstrap_ci(t, p, metric=fast_metric, n_boot=30, seed=1)
        g = bootstrap_ci(t, p, metric=sk, n_boot=30, seed=1)
        assert (f["low"], f["high"]) == pytest.approx((g["low"], g["high"]), abs=1e-10)


def test_bootstrap_ci_contains_estimate_narrows_with_n_and_is_seeded():
    small = _data(200, 4, 10)
    large = _data(3000, 4, 10)
    r_small = bootstrap_ci(*small, n_boot=300)
    r_large = bootstrap_ci(*large, n_boot=300)
    for r in (r_small, r_large):
        assert r["low"] < r["estimate"] < r["high"] and r["n_boot"] == 300 and r["n_valid"] == 300
        assert r["estimate"] == pytest.approx(macro_auc(*large if r is r_large else small))
    assert (r_large["high"] - r_large["low"]) < 0.5 * (r_small["high"] - r_small["low"])
    assert bootstrap_ci(*small, n_boot=300) == r_small
    assert bootstrap_ci(*small, n_boot=300, seed=1)["low"] != r_small["low"]


def test_cluster_bootstrap_resamples_patients():
    y, s = _data(150, 2, 11)
    k = 4  # every patient has k identical images, rows interleaved
    y_dup, s_dup = np.tile(y, (k, 1)), np.tile(s, (k, 1))
    pids = np.tile(np.array([f"p{i:04d}" for i in range(150)]), k)
    dedup = bootstrap_ci(y, s, n_boot=200, seed=5)
    cluster = bootstrap_ci(y_dup, s_dup, n_boot=200, seed=5, groups=pids)
    naive = bootstrap_ci(y_dup, s_dup, n_boot=200, seed=5)
    # Same patient draws as the image draws of the de-duplicated data -> identical interval.
    assert (cluster["low"], cluster["high"]) == pytest.approx((dedup["low"], dedup["high"]), abs=1e-9)
    # Resampling images pretends to have k times the data: about sqrt(k) = 2 times narrower.
    width = lambda r: r["high"] - r["low"]  # noqa: E731
    assert width(naive) < 0.7 * width(cluster)


def test_per_class_bootstrap_gives_arrays_and_nan_resamples_are_ignored():
    rng = np.random.default_rng(12)
    y = np.zeros((60, 2))
    y[:, 0] = rng.random(60) < 0.5
    y[0, 1] = 1.0  # one positive: many resamples miss it -> NaN for class 1 there
    s = rng.normal(size=(60, 2))
    r = bootstrap_ci(y, s, metric=per_class_auc, n_boot=200, seed=0)
    assert r["low"].shape == (2,) and r["n_valid"] < 200
    m = bootstrap_ci(y, s, metric=macro_auc, n_boot=200, seed=0)
    assert m["n_valid"] == 200  # class 0 always defined, so the macro always is
    assert np.all(r["low"] <= r["high"])


def test_paired_bootstrap_identical_and_clearly_better():
    y, s = _data(300, 3, 13, signal=1.5)
    same = paired_bootstrap(y, s, s.copy(), n_boot=200)
    assert same["diff"] == 0.0 and same["low"] == 0.0 and same["high"] == 0.0 and same["p_value"] == 1.0
    noisy = s + np.random.default_rng(14).normal(scale=2.0, size=s.shape)
    better = paired_bootstrap(y, s, noisy, n_boot=200)
    assert better["diff"] == pytest.approx(macro_auc(y, s) - macro_auc(y, noisy))
    assert better["diff"] > 0 and better["low"] > 0 and better["p_value"] < 0.01
    worse = paired_bootstrap(y, noisy, s, n_boot=200)
    assert worse["high"] < 0 and worse["diff"] == pytest.approx(-better["diff"])
    assert paired_bootstrap(y, s, noisy, n_boot=200) == better


def test_mean_ci_hand_computation():
    r = mean_ci([0.70, 0.72, 0.75, 0.73])
    # mean 0.725; sd = sqrt(((-.025)^2 + (-.005)^2 + .025^2 + .005^2) / 3) = sqrt(0.0013/3);
    # t_{0.975, 3} = 3.182446305284263 (table value).
    half = 3.182446305284263 * math.sqrt(0.0013 / 3) / 2
    assert r["mean"] == pytest.approx(0.725) and r["n"] == 4
    assert (r["low"], r["high"]) == pytest.approx((0.725 - half, 0.725 + half), rel=1e-9)
    one = mean_ci([0.8])
    assert one["mean"] == 0.8 and math.isnan(one["low"]) and math.isnan(one["high"])
    with pytest.raises(ValueError, match="value 1 is nan"):
        mean_ci([0.7, float("nan")])


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_multilabel_matches_components_and_bootstrap():
    y, s = _data(250, 3, 15)
    names = ["A", "B", "C"]
    pids = np.arange(250) // 2
    r = evaluate(y, s, "multilabel", classes=names, patient_ids=pids, n_boot=100)
    sk = _sk_per_class(roc_auc_score, y, s)
    assert list(r["per_class_auc"]) == names
    np.testing.assert_allclose(list(r["per_class_auc"].values()), sk, atol=1e-10)
    assert r["macro_auc"] == pytest.approx(sk.mean(), abs=1e-10)
    assert r["macro_auprc"] == pytest.approx(_sk_per_class(average_precision_score, y, s).mean(), abs=1e-10)
    assert r["n"] == 250 and r["task"] == "multilabel"
    ref = bootstrap_ci(y, s, n_boot=100, groups=pids)
    assert (r["macro_auc_ci"]["low"], r["macro_auc_ci"]["high"]) == pytest.approx((ref["low"], ref["high"]))
    per = bootstrap_ci(y, s, metric=per_class_auc, n_boot=100, groups=pids)
    assert r["per_class_auc_ci"]["B"] == pytest.approx([per["low"][1], per["high"][1]])
    assert "macro_auprc_ci" in r and "macro_auc_ci" not in evaluate(y, s, "multilabel")


def test_evaluate_multiclass_dr_grades():
    rng = np.random.default_rng(16)
    n, k = 400, 5
    grade = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), grade] += 1.5
    onehot = np.eye(k)[grade]
    onehot[:3] = np.nan  # unknown rows are dropped
    r = evaluate(onehot, logits, "multiclass", n_boot=50)
    keep = slice(3, None)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    g, pr = grade[keep], probs[keep]
    assert r["n"] == n - 3
    sk_auc = [roc_auc_score(g == c, pr[:, c]) for c in range(k)]
    np.testing.assert_allclose(list(r["per_class_auc"].values()), sk_auc, atol=1e-10)
    assert r["macro_auc"] == pytest.approx(roc_auc_score(g, pr, multi_class="ovr"), abs=1e-10)
    assert r["accuracy"] == pytest.approx(accuracy_score(g, pr.argmax(1)))
    assert r["quadratic_kappa"] == pytest.approx(
        cohen_kappa_score(g, pr.argmax(1), weights="quadratic", labels=list(range(k))), abs=1e-12)
    assert r["referable_auc"] == pytest.approx(roc_auc_score(g >= 2, pr[:, 2:].sum(1)), abs=1e-10)
    # Probabilities in, same numbers out.
    assert evaluate(np.eye(k)[g], pr, "multiclass")["macro_auc"] == pytest.approx(r["macro_auc"], abs=1e-12)
    for key in ("macro_auc", "accuracy", "quadratic_kappa", "referable_auc"):
        ci = r[f"{key}_ci"]
        assert ci["low"] <= ci["estimate"] <= ci["high"]
    assert "referable_auc" not in evaluate(np.eye(3)[g % 3], logits[keep, :3], "multiclass")
    with pytest.raises(ValueError, match="row 0 sums to 2"):
        evaluate(np.array([[1.0, 1.0], [0.0, 1.0]]), np.zeros((2, 2)), "multiclass")


# ----------------------------------------------------------------------------- package layout

#: every public name of the former single-file kdmed/metrics.py, importable from kdmed.metrics
OLD_PUBLIC_NAMES = (
    "per_class_auc", "macro_auc", "per_class_auprc", "macro_auprc", "accuracy", "quadratic_kappa",
    "bootstrap_ci", "paired_bootstrap", "mean_ci", "evaluate",
)


def test_old_import_paths_still_work():
    from kdmed import metrics

    for name in OLD_PUBLIC_NAMES:
        assert callable(getattr(metrics, name)), name
    assert set(OLD_PUBLIC_NAMES) == set(metrics.__all__)
    assert metrics.evaluate is evaluate  # the function, not a submodule of the same name


def test_undefined_class_warning_points_at_the_caller():
    y, s = np.array([[0.0], [0.0], [0.0]]), np.array([[0.1], [0.2], [0.3]])
    for fn in (per_class_auc, per_class_auprc):
        with pytest.warns(RuntimeWarning) as record:
            fn(y, s)
        assert record[0].filename == __file__
