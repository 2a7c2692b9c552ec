"""CheXpert loader on fixture folders in the official format."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms.functional as TF
from fixtures_data import CHEXPERT_HEADER, garble_file, make_chexpert_root, truncate_file
from PIL import Image

from kdmed.data import open_dataset
from kdmed.data._io import DataError, DataWarning, MissingDataError
from kdmed.data.chexpert import CLASSES

SMALL = "CheXpert-v1.0-small"
OPEN = dict(progress=False, val_fraction=0.25)


def _open(root, split="train", **kw):
    return open_dataset("chexpert", root, split, 16, **{**OPEN, **kw})


def _expected_labels(table: pd.DataFrame, policy: dict[str, float]) -> np.ndarray:
    """Hand-written reference: blank -> 0, -1 -> the class's policy value, 0/1 kept."""
    out = np.zeros((len(table), len(CLASSES)), dtype=np.float32)
    for j, c in enumerate(CLASSES):
        v = table[c].to_numpy(dtype=float)
        out[:, j] = np.where(np.isnan(v), 0.0, np.where(v == -1, policy.get(c, 0.0), v))
    return out


@pytest.fixture
def root(tmp_path):
    return make_chexpert_root(tmp_path)


def test_classes_are_the_csv_observations_in_file_order(root):
    ds = _open(root)
    assert ds.classes == CHEXPERT_HEADER[5:] == CLASSES
    assert ds.task == "multilabel" and ds.channels == 1 and ds.labels.dtype == np.float32


@pytest.mark.parametrize(
    "kw, policy",
    [
        ({}, {}),
        ({"uncertain": "ones"}, {c: 1.0 for c in CLASSES}),
        ({"uncertain": "ignore"}, {c: np.nan for c in CLASSES}),
        ({"uncertain_overrides": {"Atelectasis": "ones", "Edema": "ones"}}, {"Atelectasis": 1.0, "Edema": 1.0}),
        ({"uncertain": "ignore", "uncertain_overrides": {"Edema": "zeros"}}, {**{c: np.nan for c in CLASSES}, "Edema": 0.0}),
    ],
)
def test_labels_follow_the_uncertainty_policy(root, kw, policy):
    source = pd.read_csv(root / SMALL / "train.csv")
    assert (source[CLASSES] == -1).to_numpy().sum() > 0 and source[CLASSES].isna().to_numpy().sum() > 0
    for split in ("train", "val"):
        ds = _open(root, split, views=("frontal", "lateral"), **kw)
        # the table is the source rows, its own columns, aligned with the labels
        assert list(ds.table.columns) == CHEXPERT_HEADER
        src = source.set_index("Path").loc[ds.table["Path"]].reset_index()
        pd.testing.assert_frame_equal(ds.table, src[CHEXPERT_HEADER], check_dtype=False)
        np.testing.assert_array_equal(ds.labels, _expected_labels(ds.table, policy))
        np.testing.assert_array_equal(ds.patient_ids, ds.table["Path"].str.split("/").str[2].to_numpy())


def test_row_one_has_uncertain_atelectasis_and_edema(root):
    first = pd.read_csv(root / SMALL / "train.csv")["Path"][0]
    policy = {"Atelectasis": "ones", "Edema": "ignore"}
    for split in ("train", "val"):
        ds = _open(root, split, views=("frontal", "lateral"), uncertain_overrides=policy)
        if first in set(ds.table["Path"]):
            lab = dict(zip(CLASSES, ds.labels[ds.table["Path"].tolist().index(first)]))
            assert lab["Atelectasis"] == 1.0 and np.isnan(lab["Edema"]) and lab["Cardiomegaly"] == 0.0
            return
    pytest.fail("row 1 of train.csv is in neither split")


def test_train_and_val_split_train_csv_by_patient(root):
    source = pd.read_csv(root / SMALL / "train.csv")
    both = ("frontal", "lateral")
    tr, va = _open(root, "train", views=both), _open(root, "val", views=both)
    assert set(tr.patient_ids).isdisjoint(va.patient_ids)
    assert len(tr) + len(va) == len(source)
    assert sorted(tr.table["Path"].tolist() + va.table["Path"].tolist()) == sorted(source["Path"])
    assert va.describe()["patients"] == round(0.25 * source["Path"].str.split("/").str[2].nunique())
    # same seed same split, another seed another split
    assert tr.table["Path"].tolist() == _open(root, "train", views=both).table["Path"].tolist()
    seeds = {tuple(sorted(set(_open(root, "val", views=both, split_seed=s).patient_ids))) for s in range(6)}
    assert len(seeds) > 1
    # the view filter does not move patients between train and val
    assert set(_open(root, "val").patient_ids) <= set(va.patient_ids)


def test_views_filter_on_frontal_lateral(root):
    source = pd.read_csv(root / SMALL / "train.csv")
    n_frontal = (source["Frontal/Lateral"] == "Frontal").sum()
    counts = {}
    for views in (("frontal",), ("lateral",), "lateral", ("lateral", "frontal")):
        rows = [_open(root, s, views=views) for s in ("train", "val")]
        got = pd.concat([d.table["Frontal/Lateral"] for d in rows])
        counts[views if isinstance(views, str) else tuple(sorted(views))] = len(got)
        if views != ("lateral", "frontal"):
            assert set(got) == {"Lateral" if "lateral" in views else "Frontal"}
    assert counts[("frontal",)] == n_frontal and counts[("frontal", "lateral")] == len(source)


def test_test_split_is_valid_csv(root):
    valid = pd.read_csv(root / SMALL / "valid.csv")
    ds = _open(root, "test", views=("frontal", "lateral"))
    assert ds.table["Path"].tolist() == valid["Path"].tolist()
    np.testing.assert_array_equal(ds.labels, valid[CLASSES].to_numpy(dtype=np.float32))
    assert set(ds.patient_ids) == set(valid["Path"].str.split("/").str[2])


def test_pixels_are_resized_then_centre_cropped_grey(root):
    ds = open_dataset("chexpert", root, "test", 24, views=("frontal", "lateral"), progress=False)
    for i in range(len(ds)):
        with Image.open(root / ds.table["Path"][i]) as im:
            ref = np.asarray(TF.center_crop(TF.resize(im.convert("L"), 24, antialias=True), 24))
        np.testing.assert_array_equal(ds.load_uint8(i)[0], ref)
    img, target = ds[1]
    assert img.shape == (3, 24, 24) and img.dtype.is_floating_point
    np.testing.assert_allclose(img.numpy(), np.repeat(ds.load_uint8(1), 3, axis=0) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(target.numpy(), ds.labels[1])
    sub = ds.take([2, 0])
    np.testing.assert_array_equal(sub.load_uint8(1), ds.load_uint8(0))


def test_full_size_folder_and_root_given_as_the_folder_itself(tmp_path):
    root = make_chexpert_root(tmp_path, small=False)
    ds = _open(root, "test", views=("frontal", "lateral"))
    assert ds.table["Path"].str.startswith("CheXpert-v1.0/valid/").all()
    inner = _open(root / "CheXpert-v1.0", "test", views=("frontal", "lateral"))
    assert inner.table["Path"].tolist() == ds.table["Path"].tolist()
    assert inner.load_uint8(0).shape == (1, 16, 16)
    # with both copies present the small one is the default, and a folder given directly wins
    assert make_chexpert_root(tmp_path, small=True) == root
    assert _open(root, "test").table["Path"].str.startswith(f"{SMALL}/valid/").all()
    assert _open(root / "CheXpert-v1.0", "test").table["Path"].str.startswith("CheXpert-v1.0/valid/").all()


def test_cache_identity_tracks_root_split_size_and_rows_not_label_policy(root):
    a = _open(root)
    ident = a.cache_identity()
    assert ident["name"] == "chexpert" and ident["split"] == "train" and ident["image_size"] == 16
    assert ident["root"] == str(root.resolve()) and ident["views"] == ("frontal",)
    assert _open(root, uncertain="ones").cache_identity() == ident
    assert open_dataset("chexpert", root, "train", 32, **OPEN).cache_identity()["image_size"] == 32
    assert _open(root, "val").cache_identity()["images"] != ident["images"]


# ---------------------------------------------------------------------------- bad input
def test_missing_root_names_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"chexpert: no root given; pass root=<the folder holding CheXpert-v1\.0-small/"):
        open_dataset("chexpert", None)
    with pytest.raises(FileNotFoundError, match=r"root folder .*nowhere does not exist; expected a folder holding CheXpert-v1\.0-small/ or CheXpert-v1\.0/"):
        open_dataset("chexpert", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"holds neither CheXpert-v1\.0-small/ nor CheXpert-v1\.0/; expected one of them"):
        open_dataset("chexpert", tmp_path)


def test_missing_csv_and_missing_column_are_named(root):
    (root / SMALL / "valid.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"table .*CheXpert-v1\.0-small/valid\.csv does not exist"):
        _open(root, "test")
    df = pd.read_csv(root / SMALL / "train.csv").drop(columns=["Edema"])
    df.to_csv(root / SMALL / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv has no column 'Edema'"):
        _open(root)


@pytest.mark.parametrize("bad, shown", [(2.0, "2"), ("yes", "'yes'")])
def test_label_value_outside_allowed_set_names_file_row_column(root, bad, shown):
    df = pd.read_csv(root / SMALL / "train.csv", dtype=str)
    df.loc[3, "Pneumonia"] = str(bad)
    df.to_csv(root / SMALL / "train.csv", index=False)
    with pytest.raises(DataError, match=rf"train\.csv, row 4 \(line 5\), column 'Pneumonia': value {shown} is not allowed"):
        _open(root)


def test_duplicated_path_and_escaping_path_are_refused(root):
    csv = root / SMALL / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    dup = pd.concat([df, df.iloc[[2]]], ignore_index=True)
    dup.to_csv(csv, index=False)
    with pytest.raises(DataError, match=rf"column 'Path': '{df['Path'][2]}' appears more than once"):
        _open(root)
    esc = df.copy()
    esc.loc[1, "Path"] = "../patient00001/study1/view1_frontal.jpg"
    esc.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"row 2 \(line 3\), column 'Path': path '\.\./patient00001.* outside the dataset root"):
        _open(root)


def test_path_without_patient_folder_and_unknown_view_value(root):
    csv = root / SMALL / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    bad = df.copy()
    bad.loc[0, "Path"] = f"{SMALL}/train/someone/study1/view1_frontal.jpg"
    bad.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"row 1 \(line 2\), column 'Path'.* no 'patientNNNNN' folder"):
        _open(root)
    bad = df.copy()
    bad.loc[2, "Frontal/Lateral"] = "Oblique"
    bad.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"row 3 \(line 4\), column 'Frontal/Lateral': value 'Oblique' is not allowed"):
        _open(root)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"uncertain": "maybe"}, r"uncertain='maybe' is not allowed; expected one of \('zeros', 'ones', 'ignore'\)"),
        ({"uncertain_overrides": {"Effusion": "ones"}}, r"uncertain_overrides key='Effusion' is not allowed"),
        ({"uncertain_overrides": {"Edema": "half"}}, r"uncertain_overrides\['Edema'\]='half' is not allowed"),
        ({"views": ("pa",)}, r"views='pa' is not allowed; expected one of \('frontal', 'lateral'\)"),
        ({"views": ()}, r"views=\(\) selects nothing"),
        ({"val_fraction": 1.0}, r"val_fraction=1\.0 must be a number in \[0, 1\)"),
        ({"missing": "ignore"}, r"missing='ignore' is not allowed; expected one of \('raise', 'skip'\)"),
    ],
)
def test_unknown_option_values_name_parameter_and_choices(root, kw, msg):
    with pytest.raises(DataError, match=msg):
        _open(root, **kw)


def test_zero_rows_after_filter_or_split_are_refused(root):
    with pytest.raises(DataError, match=r"split 'val' of .*train\.csv, val_fraction=0\.0 of 8 patients.* leaves zero images"):
        _open(root, "val", val_fraction=0.0)
    valid = pd.read_csv(root / SMALL / "valid.csv", dtype=str)
    valid[valid["Frontal/Lateral"] == "Frontal"].to_csv(root / SMALL / "valid.csv", index=False)
    with pytest.raises(DataError, match=r"split 'test' of .*valid\.csv, views=\('lateral',\), leaves zero images"):
        _open(root, "test", views=("lateral",))


def test_missing_images_raise_or_are_skipped(root):
    ds = _open(root, "test", views=("frontal", "lateral"))
    gone = [root / p for p in ds.table["Path"][:2]]
    for p in gone:
        p.unlink()
    with pytest.raises(FileNotFoundError, match=rf"chexpert: 2 of {len(ds)} images listed in .*valid\.csv are missing, e\.g\. .*{gone[0].name}"):
        _open(root, "test", views=("frontal", "lateral"))
    with pytest.warns(DataWarning, match=r"2 of .* are missing.*skipped"):
        skipped = _open(root, "test", views=("frontal", "lateral"), missing="skip")
    assert skipped.skipped == 2 and len(skipped) == len(ds) - 2 and ds.skipped == 0
    assert skipped.table["Path"].tolist() == ds.table["Path"][2:].tolist()
    np.testing.assert_array_equal(skipped.labels, ds.labels[2:])
    assert skipped.load_uint8(0).shape == (1, 16, 16)
    for p in ds.table["Path"][2:]:
        (root / p).unlink()
    with pytest.raises(DataError, match=r"after skipping .* missing images leaves zero images"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            _open(root, "test", views=("frontal", "lateral"), missing="skip")


def test_label_only_use_needs_no_images(tmp_path):
    root = make_chexpert_root(tmp_path, images=False)
    with pytest.raises(FileNotFoundError, match=r"are missing"):
        _open(root)
    ds = _open(root, check_files=False, views=("frontal", "lateral"))
    assert len(ds) > 0 and ds.skipped == 0
    with pytest.raises(MissingDataError, match=rf"chexpert: image .*{ds.table['Path'][0]} does not exist"):
        ds.load_uint8(0)


def test_corrupt_and_truncated_images_raise_at_load_naming_the_file(root):
    ds = _open(root, "test", views=("frontal", "lateral"))
    truncate_file(root / ds.table["Path"][0])
    garble_file(root / ds.table["Path"][1])
    for i in (0, 1):
        with pytest.raises(DataError, match=rf"chexpert: cannot decode image .*{ds.table['Path'][i]}"):
            ds.load_uint8(i)
    assert ds.load_uint8(2).shape == (1, 16, 16)


def test_folder_renamed_or_removed(tmp_path):
    root = make_chexpert_root(tmp_path)
    shutil.move(root / SMALL, root / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"holds neither CheXpert-v1\.0-small/ nor CheXpert-v1\.0/; expected one of them"):
        _open(root)
