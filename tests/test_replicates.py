"""The bootstrap-replicate cache: the same values as computing them, computed once, keyed by every input."""

from __future__ import annotations

import numpy as np
import pytest

from kdmed import inference
from kdmed.metrics import per_class_auc
from kdmed.metrics.bootstrap import bootstrap_values
from kdmed.replicates import cached_replicates, replicate_key

RNG = np.random.default_rng(3)
N, K = 120, 3
Y = (RNG.random((N, K)) < 0.35).astype(np.float32)
PATIENTS = np.repeat(np.arange(N // 3), 3).astype(str)
SCORES = {arm: [(q * Y + RNG.normal(0, 1, Y.shape)).astype(np.float32) for _ in range(3)]
          for arm, q in (("a", 1.0), ("b", 0.5), ("c", 1.5))}


def test_cached_bootstrap_equals_the_uncached_one_bitwise(tmp_path):
    plain = inference.auc_bootstrap(Y, PATIENTS, SCORES, 64, seed=5)
    first = inference.auc_bootstrap(Y, PATIENTS, SCORES, 64, seed=5, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 9  # one file per (arm, seed)
    again = inference.auc_bootstrap(Y, PATIENTS, SCORES, 64, seed=5, cache=tmp_path)
    for bs in (first, again):
        for arm in SCORES:
            np.testing.assert_array_equal(bs.boot[arm], plain.boot[arm])
            np.testing.assert_array_equal(bs.point[arm], plain.point[arm])
        np.testing.assert_array_equal(bs.seed_draws, plain.seed_draws)
    # the independent reference: every array scored together on the same resamples, the mean over all K classes
    together = bootstrap_values([(per_class_auc, Y, s) for arm in SCORES for s in SCORES[arm]], N, 64, PATIENTS, 5,
                                False)
    np.testing.assert_allclose(np.stack([v.mean(axis=1) for v in together[:3]]), plain.boot["a"], rtol=0, atol=1e-12)


def test_an_arm_scored_alone_reads_what_was_stored_with_others(tmp_path):
    inference.auc_bootstrap(Y, PATIENTS, SCORES, 64, seed=5, cache=tmp_path)
    alone = inference.auc_bootstrap(Y, PATIENTS, {"b": SCORES["b"]}, 64, seed=5)
    cached = inference.auc_bootstrap(Y, PATIENTS, {"b": SCORES["b"]}, 64, seed=5, cache=tmp_path)
    np.testing.assert_array_equal(alone.boot["b"], cached.boot["b"])


def test_stored_replicates_are_not_recomputed_and_read_only_writes_nothing(tmp_path):
    calls = []

    def compute(positions):
        calls.append(list(positions))
        return [np.full(8, float(i)) for i in positions]

    arrays = [SCORES["a"][0], SCORES["b"][0]]
    ro = cached_replicates(Y, PATIENTS, arrays, 8, 0, compute, tmp_path, writable=False)
    assert [v[0] for v in ro] == [0.0, 1.0] and list(tmp_path.iterdir()) == []
    cached_replicates(Y, PATIENTS, arrays[:1], 8, 0, compute, tmp_path)
    out = cached_replicates(Y, PATIENTS, arrays, 8, 0, compute, tmp_path)
    assert calls == [[0, 1], [0], [1]] and [v[0] for v in out] == [0.0, 1.0]
    # a damaged file is recomputed, not trusted
    next(tmp_path.glob("*.npz")).write_bytes(b"not a zip")
    cached_replicates(Y, PATIENTS, arrays, 8, 0, compute, tmp_path)
    assert len(calls) == 4 and len(calls[-1]) == 1
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("change", ["score", "labels", "patients", "n_boot", "seed", "code", "metric"])
def test_the_key_changes_with_every_input(change):
    args = dict(y_true=Y, patient_ids=PATIENTS, score=SCORES["a"][0], n_boot=100, seed=0, code="x",
                metric=inference.METRIC_ID)
    base = replicate_key(**args)
    assert replicate_key(**{**args, "score": SCORES["a"][0].copy()}) == base
    changed = {"score": SCORES["a"][1], "labels": 1 - Y, "patients": np.roll(PATIENTS, 1), "n_boot": 101,
               "seed": 1, "code": "y", "metric": "macro over the defined classes"}[change]
    key = {"labels": "y_true", "patients": "patient_ids"}.get(change, change)
    assert replicate_key(**{**args, key: changed}) != base


def test_replicates_stored_under_another_metric_are_not_read(tmp_path):
    """A file written under the old key (no metric identity: the skipping macro) is never reused."""
    from kdmed.replicates import _code_hash

    score = SCORES["a"][0]
    stale = replicate_key(Y, PATIENTS, score, 16, 0, _code_hash())  # the key without a metric identity
    np.savez(tmp_path / f"{stale}.npz", replicates=np.full(16, 0.123))
    bs = inference.auc_bootstrap(Y, PATIENTS, {"a": [score]}, 16, seed=0, cache=tmp_path)
    assert not np.any(bs.boot["a"] == 0.123)
    np.testing.assert_array_equal(bs.boot["a"], inference.auc_bootstrap(Y, PATIENTS, {"a": [score]}, 16).boot["a"])
    assert len(list(tmp_path.glob("*.npz"))) == 2  # the stale file plus the new key's
    # the kept columns are part of the identity: the same inputs over other classes get another key
    over = [f"{inference.METRIC_ID}|columns {c}" for c in ([0, 1, 2], [0, 2])]
    assert len({replicate_key(Y, PATIENTS, score, 16, 0, "x", m) for m in over}) == 2
