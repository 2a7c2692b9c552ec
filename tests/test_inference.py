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
