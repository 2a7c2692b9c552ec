"""Synthetic chest X-rays and fundus photographs: contract, determinism, labels, signs, calibration."""

import copy
import importlib.util
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from kdmed.data import open_dataset
from kdmed.data.real_tables import real_table
from kdmed.data.synthetic import (
    CHEXPERT_CLASSES,
    FINDINGS,
    FUNDUS_GRADE_MIX,
    INSTITUTIONS,
    SyntheticChest,
    SyntheticFundus,
)
from kdmed.utils import repo_root


@pytest.fixture(scope="module")
def real_frontal():
    t = real_table("chexpert")
    return t[t["Frontal/Lateral"] == "Frontal"]


# ---------------------------------------------------------------------------- chest: contract
def test_chest_contract():
    ds = open_dataset("synthetic-chest", split="val", image_size=48, institution="B", n=40, seed=2)
    assert isinstance(ds, SyntheticChest)
    assert ds.classes == list(real_table("chexpert").columns[5:19])
    assert ds.task == "multilabel" and ds.channels == 1 and ds.image_size == 48 and ds.split == "val"
    assert ds.labels.shape == (40, 14) and ds.labels.dtype == np.float32
    assert set(np.unique(ds.labels)) <= {0.0, 1.0}
    img, y = ds[3]
    assert tuple(img.shape) == (3, 48, 48) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert np.array_equal(y.numpy(), ds.labels[3])
    # the grey image is repeated over the three channels
    assert np.array_equal(img[0].numpy(), img[2].numpy())
    assert np.array_equal((img[0].numpy() * 255).round().astype(np.uint8), ds.load_uint8(3)[0])
    arr = ds.image_array(progress=False)
    assert arr.shape == (40, 1, 48, 48) and arr.dtype == np.uint8
    assert ds.describe()["institution"] == "B"
    assert "MIMIC" in ds.describe()["plays"]
    assert {"image_id", "patient_id", "institution", "chexpert_row", "strength_Cardiomegaly"} <= set(ds.table.columns)


def test_default_sizes_and_ids():
    assert len(SyntheticChest(split="train")) == 20000
    assert len(SyntheticChest(split="val")) == 2000
    ds = SyntheticChest(split="test")
    assert len(ds) == 2000
    assert ds.patient_ids[0] == "C-test-000000"
    assert all(p.startswith("C-test-") and len(p) == len("C-test-000123") for p in ds.patient_ids)


def test_labels_are_real_chexpert_rows_with_u_zeros(real_frontal):
    ds = SyntheticChest(split="train", n=3000, seed=1)
    rows = real_frontal.loc[ds.table["chexpert_row"].to_numpy(), list(CHEXPERT_CLASSES)]
    np.testing.assert_array_equal(ds.labels, (rows.to_numpy() == 1).astype(np.float32))
    # the raw values (1 / 0 / -1 / blank) are kept in the table
    np.testing.assert_array_equal(ds.table[list(CHEXPERT_CLASSES)].fillna(9).to_numpy(), rows.fillna(9).to_numpy())


def test_institution_c_keeps_real_prevalence_and_a_b_reweight(real_frontal):
    real = (real_frontal[list(CHEXPERT_CLASSES)] == 1).mean().to_numpy()
    prev = {k: SyntheticChest(split="train", institution=k, n=20000).prevalence() for k in "ABC"}
    np.testing.assert_allclose(prev["C"].to_numpy(), real, atol=0.02)
    assert prev["A"]["No Finding"] > 2.5 * prev["C"]["No Finding"]
    assert prev["B"]["Support Devices"] > prev["C"]["Support Devices"] + 0.1
    assert prev["B"]["Pleural Effusion"] > prev["C"]["Pleural Effusion"] + 0.05
    # co-occurrence comes from real rows: Lung Opacity is more common given Pneumonia
    lab = SyntheticChest(split="train", n=20000).labels
    pn, lo = CHEXPERT_CLASSES.index("Pneumonia"), CHEXPERT_CLASSES.index("Lung Opacity")
    assert lab[lab[:, pn] == 1, lo].mean() > lab[:, lo].mean() + 0.1


def test_patients_one_to_three_images_sharing_anatomy():
    ds = SyntheticChest(split="train", n=3000)
    counts = pd.Series(ds.patient_ids).value_counts()
    assert counts.min() >= 1 and counts.max() <= 3 and (counts > 1).mean() > 0.3
    anatomy = ["heart_width", "lung_width", "rib_period", "diaphragm"]
    spread = ds.table.groupby("patient_id")[anatomy].nunique()
    assert (spread == 1).all().all()
    assert ds.table["heart_width"].nunique() > 500
    # images of a patient are numbered by study
    assert ds.table.groupby("patient_id")["study"].apply(lambda s: list(s) == list(range(1, len(s) + 1))).all()


def test_splits_are_disjoint_patient_sets():
    sets = {s: SyntheticChest(split=s, n=2000) for s in ("train", "val", "test")}
    ids = {s: set(d.patient_ids) for s, d in sets.items()}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    # different seed streams: patient 0 of each split has a different anatomy and different images
    hw = {s: d.table["heart_width"].iloc[0] for s, d in sets.items()}
    assert len(set(hw.values())) == 3
    assert not np.array_equal(sets["train"].load_uint8(0), sets["test"].load_uint8(0))


# ---------------------------------------------------------------------------- determinism
def test_image_is_the_same_alone_in_batch_in_subset_and_larger_n():
    small = SyntheticChest(split="train", image_size=40, n=300, seed=3)
    large = SyntheticChest(split="train", image_size=40, n=2500, seed=3)
    batch = small.image_array(progress=False)
    for i in (0, 1, 77, 299):
        alone = small.load_uint8(i)
        np.testing.assert_array_equal(alone, batch[i])
        np.testing.assert_array_equal(alone, large.load_uint8(i))
    sub = small.take([299, 5, 77])
    np.testing.assert_array_equal(sub.image_array(progress=False), batch[[299, 5, 77]])
    np.testing.assert_array_equal(large.labels[:300], small.labels)
    assert list(large.patient_ids[:300]) == list(small.patient_ids)
    pd.testing.assert_frame_equal(large.table.iloc[:300], small.table)


def test_same_seed_same_world_other_seed_other_world():
    a = SyntheticChest(split="val", image_size=32, n=64, seed=7)
    b = SyntheticChest(split="val", image_size=32, n=64, seed=7)
    c = SyntheticChest(split="val", image_size=32, n=64, seed=8)
    np.testing.assert_array_equal(a.image_array(progress=False), b.image_array(progress=False))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image_array(progress=False), c.image_array(progress=False))
    assert not np.array_equal(a.labels, c.labels)
    assert a.cache_identity() != c.cache_identity()
    # the institution is part of the world
    d = SyntheticChest(split="val", image_size=32, n=64, seed=7, institution="A")
    assert a.cache_identity() != d.cache_identity()


# ---------------------------------------------------------------------------- chest: signs and statistics
def _counterfactual(ds, rows, finding, value):
    """The same images with one finding's strength set to ``value`` (everything else equal)."""
    twin = copy.copy(ds)
    twin._strength = ds._strength.copy()
    twin._strength[rows, FINDINGS.index(finding)] = value
    return twin._load_batch_uint8(rows).astype(int)


@pytest.mark.parametrize("finding", FINDINGS)
def test_each_finding_draws_its_own_sign(finding):
    ds = SyntheticChest(split="train", image_size=64, n=600)
    clean = np.flatnonzero((ds._strength == 0).all(axis=1))[:6]
    base = ds._load_batch_uint8(clean).astype(int)
    strong = _counterfactual(ds, clean, finding, 1.0)
    faint = _counterfactual(ds, clean, finding, 0.2)
    d_strong = np.abs(strong - base).mean(axis=(1, 2, 3))
    d_faint = np.abs(faint - base).mean(axis=(1, 2, 3))
    assert np.all(d_strong > 0.05)  # every image changes
    assert d_strong.mean() > d_faint.mean()  # stronger signs change more


def test_cardiomegaly_widens_the_heart_shadow():
    ds = SyntheticChest(split="train", image_size=64, n=600)
    clean = np.flatnonzero((ds._strength == 0).all(axis=1))[:8]
    base = ds._load_batch_uint8(clean)[:, 0].astype(float)
    big = _counterfactual(ds, clean, "Cardiomegaly", 1.0)[:, 0]
    # the heart's left border (image right, above the dome) moves out into the dark lung
    window = (slice(30, 44), slice(46, 57))
    assert np.all(big[:, window[0], window[1]].mean(axis=(1, 2)) > base[:, window[0], window[1]].mean(axis=(1, 2)) + 10)


def test_global_pixel_statistics_do_not_give_labels_away():
    tr = SyntheticChest(split="train", image_size=64, n=1500, seed=4)
    te = SyntheticChest(split="test", image_size=64, n=800, seed=4)

    def feats(ds):
        x = ds.image_array(progress=False).reshape(len(ds), -1).astype(float)
        pct = np.percentile(x, [1, 5, 25, 50, 75, 95, 99], axis=1).T
        return np.column_stack([x.mean(axis=1), x.std(axis=1), pct])

    xtr, xte = feats(tr), feats(te)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-9
    aucs = []
    for c in range(len(CHEXPERT_CLASSES)):
        ytr, yte = tr.labels[:, c], te.labels[:, c]
        if 0 < ytr.sum() < len(ytr) and 0 < yte.sum() < len(yte):
            clf = LogisticRegression(max_iter=500).fit((xtr - mu) / sd, ytr)
            aucs.append(roc_auc_score(yte, clf.decision_function((xte - mu) / sd)))
    assert len(aucs) >= 12
    assert np.mean(aucs) < 0.65


def test_institutions_differ_in_acquisition():
    arrs = {k: SyntheticChest(split="val", image_size=64, n=200, institution=k).image_array(progress=False) for k in "ABC"}
    mean = {k: a.mean() for k, a in arrs.items()}
    # A's grey-level curve is the darkest, B's the brightest
    assert mean["A"] < mean["C"] < mean["B"]
    # A is the noisiest, B the cleanest: typical (median) pixel-to-pixel differences
    rough = {k: np.median(np.abs(np.diff(a.astype(int), axis=3))) for k, a in arrs.items()}
    assert rough["A"] > rough["C"] > rough["B"]
    assert INSTITUTIONS["A"].zoom < INSTITUTIONS["C"].zoom < INSTITUTIONS["B"].zoom


def test_generation_speed_is_batched():
    ds = SyntheticChest(split="train", image_size=64, n=1000)
    ds.take(np.arange(8)).image_array(progress=False)
    t0 = time.process_time()
    ds.image_array(progress=False)
    batched = (time.process_time() - t0) / 1000
    t0 = time.process_time()
    for i in range(20):
        ds.take([i]).image_array(progress=False)
    single = (time.process_time() - t0) / 20
    # a ratio in one run: a shared machine slows both sides alike (about 3.4 x measured here)
    assert single / batched > 2.0, (single, batched)


# ---------------------------------------------------------------------------- fundus
def test_fundus_contract_and_grade_mix():
    ds = open_dataset("synthetic-fundus", split="train", image_size=32, n=20000)
    assert ds.channels == 3 and ds.task == "multiclass"
    assert ds.classes == [f"grade {g}" for g in range(5)]
    assert np.all(ds.labels.sum(axis=1) == 1)
    np.testing.assert_allclose(ds.prevalence().to_numpy(), FUNDUS_GRADE_MIX, atol=0.015)
    assert np.array_equal(ds.labels.argmax(axis=1), ds.table["grade"].to_numpy())
    img, y = ds[5]
    assert tuple(img.shape) == (3, 32, 32) and y.shape[0] == 5
    counts = pd.Series(ds.patient_ids).value_counts()
    assert counts.max() <= 2 and (counts == 2).mean() > 0.7
    eyes = ds.table.groupby("patient_id")["eye"].apply(lambda s: "".join(sorted(s)))
    assert set(eyes) <= {"left", "right", "leftright"}


def test_fundus_referable_task():
    g = SyntheticFundus(split="val", n=500)
    r = SyntheticFundus(split="val", n=500, task="referable")
    assert r.classes == ["referable DR"] and r.task == "binary" and r.labels.shape == (500, 1)
    np.testing.assert_array_equal(r.labels[:, 0], (g.table["grade"] >= 2).astype(np.float32))
    # the pixels do not depend on the label scheme
    np.testing.assert_array_equal(r.load_uint8(9), g.load_uint8(9))
    assert r.cache_identity() == g.cache_identity()


def test_fundus_lesions_grow_with_grade():
    ds = SyntheticFundus(split="train", n=5000)
    t = ds.table
    by = t.groupby("grade")[["microaneurysms", "haemorrhages", "hard_exudates"]].mean()
    assert by.loc[0].sum() == 0
    assert by.loc[1, "microaneurysms"] > 0 and by.loc[1, "haemorrhages"] == 0
    assert by.loc[3, "microaneurysms"] > by.loc[1, "microaneurysms"]
    assert by.loc[3, "haemorrhages"] > by.loc[2, "haemorrhages"] > 0
    assert t.loc[t.grade >= 3, "venous_beading"].all() and not t.loc[t.grade < 3, "venous_beading"].any()
    assert t.loc[t.grade == 4, "neovascularisation"].all()
    # in the pixels: severe eyes have more dark-red spots in the posterior pole than healthy ones
    rows0 = np.flatnonzero(t.grade == 0)[:20]
    rows3 = np.flatnonzero(t.grade == 3)[:20]
    sub0, sub3 = ds.take(rows0).image_array(progress=False), ds.take(rows3).image_array(progress=False)

    def dark_red(a):
        r, g = a[:, 0].astype(int), a[:, 1].astype(int)
        field = r > 60
        return ((r - g < 120) & (g < 60) & field).sum(axis=(1, 2)).mean()

    assert dark_red(sub3) > dark_red(sub0)


def test_fundus_determinism():
    a = SyntheticFundus(split="test", image_size=40, n=100, seed=1)
    b = SyntheticFundus(split="test", image_size=40, n=900, seed=1)
    arr = a.image_array(progress=False)
    for i in (0, 50, 99):
        np.testing.assert_array_equal(arr[i], a.load_uint8(i))
        np.testing.assert_array_equal(arr[i], b.load_uint8(i))
    np.testing.assert_array_equal(a.take([7, 3]).image_array(progress=False), arr[[7, 3]])


# ---------------------------------------------------------------------------- errors
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown institution 'D'; expected one of \['A', 'B', 'C'\]"):
        SyntheticChest(institution="D")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        SyntheticChest(split="dev")
    with pytest.raises(ValueError, match="n \\(number of images\\) must be a non-negative integer, got -1"):
        SyntheticChest(n=-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        SyntheticChest(seed=-3)
    with pytest.raises(ValueError, match="image_size must be an integer >= 8"):
        SyntheticChest(image_size=4)
    with pytest.raises(ValueError, match="task must be 'grade' or 'referable', got 'severity'"):
        SyntheticFundus(task="severity")
    with pytest.raises(TypeError, match="unknown option"):
        open_dataset("synthetic-chest", institutions="A")
    with pytest.raises(IndexError):
        SyntheticChest(n=10)._load_batch_uint8([10])


# ---------------------------------------------------------------------------- calibration
def _bench():
    spec = importlib.util.spec_from_file_location("bench_data", repo_root() / "benchmarks" / "bench_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_calibration_small_vs_large_vs_other_institution():
    """Reduced benchmark (32 px): more data clearly helps, the other institution transfers but is worse."""
    res = _bench().calibration(
        image_size=32, n_small=200, n_large=2500, n_test=3000, epochs_small=15, epochs_large=6, seed=0, threads=1
    )
    # at 64 px (benchmark) the targets are +0.08 and 0.6 < small < 0.9; 32 px hides the finest signs
    assert 0.55 < res["C_small"] < 0.9
    assert res["C_large"] > res["C_small"] + 0.04
    assert 0.6 < res["B_large_on_C"] < res["C_large"]
