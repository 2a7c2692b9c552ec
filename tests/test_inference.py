"""The study's statistics: hierarchical bootstrap against a brute-force reference, Holm, verdicts, units."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kdmed import inference


def _case(seed: int = 0, n_patients: int = 60, seeds: int = 4, k: int = 3):
    """Test images of patients with 1-3 images each; arm b is arm a plus noise: a is better."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 4, n_patients)
    patients = np.repeat(np.arange(n_patients), per).astype(str)
    n = len(patients)
    y = (rng.random((n, k)) < 0.4).astype(np.float32)
    a = [y + rng.normal(0, 0.8, (n, k)) for _ in range(seeds)]
    b = [y + rng.normal(0, 1.2, (n, k)) for _ in range(seeds)]
    return y, patients, {"a": a, "b": b}


def _macro(y, s):
    return float(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in range(y.shape[1])]))


def _brute_force(y, patients, scores, n_boot, seed):
    """The same two-stage resampling with plain loops: draw patients, then seeds; mean of per-seed AUC gaps."""
    rng = np.random.default_rng(seed)
    ids = np.unique(patients)
    rows_of = {p: np.flatnonzero(patients == p) for p in ids}
    k = len(scores["a"])
    out = []
    for _ in range(n_boot):
        drawn = rng.choice(ids, size=len(ids), replace=True)
        idx = np.concatenate([rows_of[p] for p in drawn])
        seeds = rng.integers(0, k, size=k)
        out.append(np.mean([_macro(y[idx], scores["a"][s][idx]) - _macro(y[idx], scores["b"][s][idx]) for s in seeds]))
    return 100 * np.array(out)


def test_point_estimate_is_the_mean_of_per_seed_sklearn_aucs():
    y, patients, scores = _case()
    bs = inference.auc_bootstrap(y, patients, scores, n_boot=20)
    expected = 100 * np.mean([_macro(y, a) - _macro(y, b) for a, b in zip(scores["a"], scores["b"])])
    got = inference.contrast(bs, "a", "b")
    assert got["estimate"] == pytest.approx(expected, abs=1e-9) and got["seeds"] == 4
    assert bs.boot["a"].shape == (4, 20)


def test_hierarchical_interval_matches_a_brute_force_bootstrap():
    y, patients, scores = _case(seed=3)
    fast = inference.contrast(inference.auc_bootstrap(y, patients, scores, n_boot=3000, seed=1), "a", "b")
    slow = _brute_force(y, patients, scores, n_boot=600, seed=2)
    lo, hi = np.percentile(slow, [2.5, 97.5])
    spread = hi - lo
    # two Monte Carlo estimates of the same interval agree within a fraction of its width
    assert fast["low"] == pytest.approx(lo, abs=0.15 * spread)
    assert fast["high"] == pytest.approx(hi, abs=0.15 * spread)
    assert fast["low"] < fast["estimate"] < fast["high"]


def test_seed_resampling_widens_the_interval_of_a_noisy_training():
    rng = np.random.default_rng(5)
    y, patients, scores = _case(seed=5)
    # arm c: per seed, a shifted copy of a (large between-seed spread, same test images)
    scores["c"] = [s + rng.normal(0, 3.0) * y for s in scores["a"]]
    bs = inference.auc_bootstrap(y, patients, scores, n_boot=1500)
    stable, noisy = inference.contrast(bs, "a", "b"), inference.contrast(bs, "c", "b")
    assert (noisy["high"] - noisy["low"]) > (stable["high"] - stable["low"])


def test_holm_against_hand_computed_values():
    got = inference.holm([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted 0.01, 0.03, 0.04, 0.5 with m = 4: 0.04, 0.09, max(0.09, 0.08) = 0.09, max(0.09, 0.5) = 0.5
    assert got[0] == pytest.approx(0.04) and got[2] == pytest.approx(0.09) and got[1] == pytest.approx(0.09)
    assert got[4] == pytest.approx(0.5) and np.isnan(got[3])
    assert inference.holm([0.9, 0.8]).tolist() == [1.0, 1.0]


def test_verdict_vocabulary_claims_only_what_the_data_can_carry():
    assert inference.verdict(2.0, 0.01, real_data=False) == "holds on the stand-in"
    assert inference.verdict(-2.0, 0.01, real_data=False) == "opposite on the stand-in"
    assert inference.verdict(2.0, 0.2, real_data=False) == "unresolved on the stand-in"
    assert inference.verdict(2.0, 0.01, real_data=True) == "reproduced"
    assert inference.verdict(-2.0, 0.01, real_data=True) == "not reproduced"
    assert inference.verdict(2.0, 0.2, real_data=True) == "not reproduced"
    assert inference.verdict(np.nan, 0.01, real_data=False) == "not measured"
    words = set(inference.STAND_IN)
    assert not any("reproduc" in w or "contradict" in w for w in words)


def test_auc_points_are_one_hundred_times_the_auc_difference():
    assert inference.points(0.0294) == pytest.approx(2.94)
    assert np.allclose(inference.points(np.array([0.01, -0.02])), [1.0, -2.0])


def test_regime_fit_recovers_a_known_line():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 2)) < 0.5).astype(np.float32)
    patients = np.arange(400).astype(str)
    scores, triples = {}, []
    # three strengths: the teacher's signal and the student's grow together, so the gain rises with the advantage
    for i, strength in enumerate((0.3, 1.0, 2.0)):
        noise = lambda: rng.normal(0, 1, y.shape)  # noqa: E731
        scores[f"t{i}"] = [strength * y + noise() for _ in range(3)]
        scores[f"a{i}"] = [0.6 * strength * y + noise() for _ in range(3)]
        scores[f"b{i}"] = [0.9 * y + noise() for _ in range(3)]
        triples.append((f"t{i}", f"a{i}", f"b{i}"))
    fit = inference.regime_fit(inference.auc_bootstrap(y, patients, scores, n_boot=300), triples)
    assert fit["slope"] > 0 and fit["slope_low"] > 0
    x, g = np.array(fit["advantages"]), np.array(fit["gains"])
    slope, icpt = np.polyfit(x, g, 1)
    assert fit["slope"] == pytest.approx(slope) and fit["crossover"] == pytest.approx(-icpt / slope)
    assert fit["crossover_low"] <= fit["crossover"] <= fit["crossover_high"]
    with pytest.raises(ValueError, match="at least two teacher strengths"):
        inference.regime_fit(inference.auc_bootstrap(y, patients, scores, n_boot=5), triples[:1])


def test_arms_need_the_same_seeds():
    y, patients, scores = _case()
    scores["b"] = scores["b"][:2]
    with pytest.raises(ValueError, match="same number of seeds"):
        inference.auc_bootstrap(y, patients, scores, n_boot=5)


# ----------------------------------------------------------------------------- the fixed class set of the macro-AUC
def _small_case(seed: int = 0):
    """30 patients (1-3 images); class "rare" has exactly 5 positives, all on two patients; "tiny" has 2."""
    rng = np.random.default_rng(seed)
    per = np.array([3, 2] + list(rng.integers(1, 4, 28)))
    patients = np.repeat(np.arange(30), per).astype(str)
    n = len(patients)
    y = np.zeros((n, 4), dtype=np.float32)
    y[:5, 0] = 1  # rare: the 5 images of patients 0 and 1
    y[:, 1] = rng.random(n) < 0.4  # common
    y[rng.choice(np.arange(5, n), 2, replace=False), 2] = 1  # tiny: 2 positives -> excluded
    y[:, 3] = rng.random(n) < 0.5  # common, with some unknown labels
    y[rng.choice(n, 6, replace=False), 3] = np.nan
    # the scores of unknown labels are still finite numbers
    scores = {arm: [np.nan_to_num(y + rng.normal(0, q, y.shape), nan=rng.normal()) for _ in range(2)]
              for arm, q in (("a", 0.8), ("b", 1.2))}
    return y, patients, scores, ["rare", "common", "tiny", "other"]


def _sk_auc(y, s):
    known = ~np.isnan(y)
    y, s = y[known], s[known]
    return roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan


def test_fixed_classes_keeps_classes_with_five_known_positives_and_negatives():
    y = np.zeros((20, 4))
    y[:5, 0] = 1  # kept: 5 positives, 15 negatives
    y[:4, 1] = 1  # 4 positives
    y[:5, 2] = 1
    y[4, 2] = np.nan  # 5 ones but one unknown: 4 known positives
    y[:, 3] = 1
    y[:3, 3] = 0  # 3 negatives
    kept, excluded = inference.fixed_classes(y, ["a", "b", "c", "d"])
    assert kept.tolist() == [0]
    assert excluded == ["b (4 positives)", "c (4 positives)", "d (3 negatives)"]
    assert inference.MIN_CLASS_COUNT == 5
    kept, excluded = inference.fixed_classes(np.zeros(10))  # one column, named "0"
    assert kept.tolist() == [] and excluded == ["0 (0 positives)"]


def test_a_class_with_two_positives_is_excluded_and_the_point_is_the_sklearn_mean_over_the_kept():
    y, patients, scores, names = _small_case()
    bs = inference.auc_bootstrap(y, patients, scores, n_boot=50, classes=names)
    assert bs.classes_used == ["rare", "common", "other"] and bs.classes_excluded == ["tiny (2 positives)"]
    kept = [0, 1, 3]
    for arm in scores:
        expected = [np.mean([_sk_auc(y[:, j], s[:, j]) for j in kept]) for s in scores[arm]]
        np.testing.assert_allclose(bs.point[arm], expected, rtol=0, atol=1e-12)
    expected = 100 * np.mean([np.mean([_sk_auc(y[:, j], a[:, j]) - _sk_auc(y[:, j], b[:, j]) for j in kept])
                              for a, b in zip(scores["a"], scores["b"])])
    assert inference.contrast(bs, "a", "b")["estimate"] == pytest.approx(expected, abs=1e-9)
    # without names the columns are numbered
    assert inference.auc_bootstrap(y, patients, scores, n_boot=5).classes_excluded == ["2 (2 positives)"]


def test_every_replicate_averages_over_the_same_classes_or_is_nan():
    from kdmed.metrics import macro_auc
    from kdmed.metrics.bootstrap import resample_weights

    y, patients, scores, names = _small_case(seed=1)
    n_boot, seed = 300, 4
    bs = inference.auc_bootstrap(y, patients, scores, n_boot=n_boot, seed=seed, classes=names)
    assert bs.classes_used == ["rare", "common", "other"]
    kept = [0, 1, 3]
    (weights,) = list(resample_weights(len(y), n_boot, patients, seed, False))  # one block at this size
    n_nan = 0
    for r, counts in enumerate(weights.astype(np.int64)):
        idx = np.repeat(np.arange(len(y)), counts)  # the replicate's sample, rebuilt from its draw counts
        for arm in scores:
            for i, s in enumerate(scores[arm]):
                per_class = [_sk_auc(y[idx, j], s[idx, j]) for j in kept]
                got = bs.boot[arm][i, r]
                if np.isnan(per_class).any():  # a kept class without a positive drawn: no macro over fewer
                    assert np.isnan(got)
                    n_nan += 1
                    assert np.isfinite(macro_auc(y[idx][:, kept], s[idx][:, kept]))  # what the old macro gave
                else:
                    assert got == pytest.approx(np.mean(per_class), abs=1e-9)
    assert n_nan > 0  # patients 0 and 1 (every "rare" positive) are missed by some replicates
    # the summaries drop those replicates and say how many they used
    c = inference.contrast(bs, "a", "b")
    finite = np.isfinite(bs.mean_over_seeds(bs.boot["a"] - bs.boot["b"]))
    assert c["n_boot"] == int(finite.sum()) < n_boot


def test_no_class_kept_raises_naming_the_counts():
    y = np.zeros((12, 2), dtype=np.float32)
    y[:2, 0] = 1
    y[:, 1] = 1
    y[0, 1] = 0
    patients = np.arange(12).astype(str)
    scores = {"a": [np.random.default_rng(0).normal(size=y.shape)]}
    with pytest.raises(ValueError, match=r"Fracture \(2 positives\), Pleural Other \(1 negative\)"):
        inference.auc_bootstrap(y, patients, scores, n_boot=5, classes=["Fracture", "Pleural Other"])
