"""Patient-level subsets: exact sizes, whole patients, nesting, stratification, errors."""

import numpy as np
import pandas as pd
import pytest

from kdmed.data import open_dataset
from kdmed.data import subsample as subsample_via_registry
from kdmed.data.subsets import split_by_patient, subsample
from kdmed.data.synthetic import SyntheticChest, SyntheticFundus


@pytest.fixture(scope="module")
def chest():
    return SyntheticChest(split="train", institution="C", n=20000)


@pytest.fixture(scope="module")
def small_chest():
    return SyntheticChest(split="train", institution="C", n=3000)


def _rows(sub):
    return set(sub.source_rows.tolist())


@pytest.mark.parametrize("n", [1, 7, 500, 2999, 3000])
def test_exact_size_by_patient_and_image(small_chest, n):
    assert len(subsample(small_chest, n, seed=3)) == n
    assert len(subsample(small_chest, n, by="image", seed=3)) == n
    assert len(subsample(small_chest, n, stratify=False, seed=3)) == n


def test_whole_patients_except_at_most_the_last(small_chest):
    full_count = pd.Series(small_chest.patient_ids).value_counts()
    for seed in range(3):
        sub = subsample(small_chest, 1001, seed=seed)
        count = pd.Series(sub.patient_ids).value_counts()
        cut = [p for p, c in count.items() if c != full_count[p]]
        assert len(cut) <= 1
        # rows come back in table order, so a patient's images stay together
        assert np.all(np.diff(sub.source_rows) > 0)


def test_cut_patient_keeps_its_first_images():
    ds = SyntheticChest(split="val", n=400)
    for seed in range(5):
        sub = subsample(ds, 101, seed=seed)
        full_rows = pd.Series(np.arange(len(ds))).groupby(ds.patient_ids).apply(list)
        for pid, rows in pd.Series(sub.source_rows).groupby(sub.patient_ids):
            assert rows.tolist() == full_rows[pid][: len(rows)]


def test_nested_for_learning_curves(small_chest):
    for by in ("patient", "image"):
        prev = set()
        for n in (100, 500, 1000, 2500):
            rows = _rows(subsample(small_chest, n, by=by, seed=11))
            assert prev <= rows
            prev = rows


def test_deterministic_per_seed(small_chest):
    a = subsample(small_chest, 800, seed=5)
    b = subsample(small_chest, 800, seed=5)
    c = subsample(small_chest, 800, seed=6)
    np.testing.assert_array_equal(a.source_rows, b.source_rows)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert _rows(a) != _rows(c)


def test_subset_is_a_consistent_view(small_chest):
    sub = subsample(small_chest, 300, seed=1)
    np.testing.assert_array_equal(sub.labels, small_chest.labels[sub.source_rows])
    np.testing.assert_array_equal(sub.patient_ids, small_chest.patient_ids[sub.source_rows])
    assert sub.table["image_id"].tolist() == small_chest.table["image_id"].iloc[sub.source_rows].tolist()
    # pixels of the subset are the parent's pixels
    np.testing.assert_array_equal(sub.load_uint8(5), small_chest.load_uint8(int(sub.source_rows[5])))


def test_stratified_prevalence_close_to_full_set(chest):
    full = chest.prevalence()
    for seed in range(3):
        sub = subsample(chest, 5000, seed=seed).prevalence()
        # common classes are not stratified on: allow ~4 sampling SDs of clustered patients
        np.testing.assert_allclose(sub.to_numpy(), full.to_numpy(), atol=0.03)
        # the rarest class (Pleural Other, ~1.3 %) within 20 % relative
        rare = full.idxmin()
        assert abs(sub[rare] - full[rare]) <= 0.2 * full[rare]


def test_stratification_helps_the_rarest_class(chest):
    """Averaged over seeds, stratified subsets hit the rarest class's prevalence better than plain ones."""
    full = chest.prevalence()
    rare = full.idxmin()
    err = {True: [], False: []}
    for seed in range(8):
        for strat in (True, False):
            err[strat].append(abs(subsample(chest, 600, stratify=strat, seed=seed).prevalence()[rare] - full[rare]))
    assert np.mean(err[True]) < np.mean(err[False])


def test_multiclass_stratified_by_grade():
    ds = SyntheticFundus(split="train", n=6000)
    full = ds.prevalence()
    sub = subsample(ds, 1000, seed=2).prevalence()
    np.testing.assert_allclose(sub.to_numpy(), full.to_numpy(), atol=0.01)
    assert np.allclose(subsample(ds, 1000, seed=2).labels.sum(axis=1), 1.0)


def test_no_patient_shared_between_splits_or_groups(chest):
    test = SyntheticChest(split="test", institution="C", n=2000)
    a = subsample(chest, 5000, seed=0)
    b = subsample(test, 1000, seed=0)
    assert not set(a.patient_ids) & set(b.patient_ids)
    groups = split_by_patient(chest.patient_ids, [0.6, 0.2, 0.2], seed=4)
    assert sum(len(g) for g in groups) == len(chest)
    sets = [set(chest.patient_ids[g]) for g in groups]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # subsets drawn inside two groups never share a patient either
    s0 = subsample(chest.take(groups[0]), 2000, seed=1)
    s1 = subsample(chest.take(groups[1]), 2000, seed=1)
    assert not set(s0.patient_ids) & set(s1.patient_ids)


def test_registry_forwarder_and_open_dataset():
    ds = open_dataset("synthetic-chest", split="val", image_size=32, n=300)
    sub = subsample_via_registry(ds, 120, seed=0)
    np.testing.assert_array_equal(sub.source_rows, subsample(ds, 120, seed=0).source_rows)


def test_errors(small_chest):
    with pytest.raises(ValueError, match=r"n=3001 .* 3000 images"):
        subsample(small_chest, 3001)
    with pytest.raises(ValueError, match="n must be positive"):
        subsample(small_chest, 0)
    with pytest.raises(ValueError, match="n must be positive"):
        subsample(small_chest, -5)
    with pytest.raises(ValueError, match="integer"):
        subsample(small_chest, 10.5)
    with pytest.raises(ValueError, match=r"unknown by='study'"):
        subsample(small_chest, 10, by="study")
    with pytest.raises(ValueError, match="empty"):
        subsample(SyntheticChest(split="val", n=0), 1)
