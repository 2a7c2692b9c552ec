"""EyePACS and APTOS diabetic-retinopathy loaders on fixture folders in the official format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms.functional as TF
from fixtures_data import make_aptos_root, make_eyepacs_root, truncate_file
from PIL import Image

from kdmed.data import open_dataset
from kdmed.data._io import DataError, DataWarning

# name, fixture, table, id column, grade column, image path pattern
KINDS = {
    "eyepacs": (make_eyepacs_root, "trainLabels.csv", "image", "level", "train/{}.jpeg"),
    "aptos": (make_aptos_root, "train.csv", "id_code", "diagnosis", "train_images/{}.png"),
}


def _open(name, root, split="train", **kw):
    return open_dataset(name, root, split, 16, **{"progress": False, **kw})


@pytest.fixture(params=sorted(KINDS))
def kind(request, tmp_path):
    make, table, id_col, grade_col, pattern = KINDS[request.param]
    return request.param, make(tmp_path), table, id_col, grade_col, pattern


def test_grade_and_referable_labels_and_patient_splits(kind):
    name, root, table, id_col, grade_col, _ = kind
    src = pd.read_csv(root / table, dtype={id_col: str})
    parts = {s: _open(name, root, s) for s in ("train", "val", "test")}
    ids = pd.concat([p.table[id_col] for p in parts.values()])
    assert sorted(ids) == sorted(src[id_col])  # a partition of the table
    for ds in parts.values():
        assert ds.classes == [f"grade {g}" for g in range(5)] and ds.task == "multiclass" and ds.channels == 3
        assert list(ds.table.columns) == [id_col, grade_col]
        np.testing.assert_array_equal(ds.labels.argmax(1), ds.table[grade_col].to_numpy())
        np.testing.assert_array_equal(ds.labels.sum(1), 1.0)
        ref = _open(name, root, ds.split, task="referable")
        assert ref.classes == ["referable DR"] and ref.task == "binary" and ref.labels.shape == (len(ds), 1)
        np.testing.assert_array_equal(ref.labels[:, 0], (ds.table[grade_col].to_numpy() >= 2).astype(np.float32))
    pats = [set(p.patient_ids) for p in parts.values()]
    assert pats[0].isdisjoint(pats[1]) and pats[0].isdisjoint(pats[2]) and pats[1].isdisjoint(pats[2])
    n_pat = len(set.union(*pats))
    assert [len(p) for p in pats] == [int(x) for x in np.diff(np.round(np.cumsum([0, 0.7, 0.1, 0.2]) * n_pat))]
    other = {s: _open(name, root, s, split_fractions=(0.5, 0.25, 0.25), split_seed=3) for s in ("train", "test")}
    assert len(set(other["train"].patient_ids)) == round(0.5 * n_pat)


def test_eyepacs_keeps_both_eyes_of_a_patient_together(tmp_path):
    root = make_eyepacs_root(tmp_path, n_patients=12)
    for split in ("train", "val", "test"):
        ds = _open("eyepacs", root, split)
        np.testing.assert_array_equal(ds.patient_ids, ds.table["image"].str.split("_").str[0].to_numpy())
        counts = pd.Series(ds.patient_ids).value_counts()
        assert (counts == 2).all()  # left and right eye, never split apart


def test_pixels_are_rgb_resized_then_centre_cropped(kind):
    name, root, _, id_col, _, pattern = kind
    ds = open_dataset(name, root, "test", 20, progress=False)
    for i, image_id in enumerate(ds.table[id_col]):
        with Image.open(root / pattern.format(image_id)) as im:
            ref = np.asarray(TF.center_crop(TF.resize(im.convert("RGB"), 20, antialias=True), 20)).transpose(2, 0, 1)
        np.testing.assert_array_equal(ds.load_uint8(i), ref)
    assert ds[0][0].shape == (3, 20, 20)


def test_bad_tables_name_file_row_and_column(kind):
    name, root, table, id_col, grade_col, _ = kind
    original = pd.read_csv(root / table, dtype={id_col: str})

    def check(df, msg):
        df.to_csv(root / table, index=False)
        with pytest.raises(DataError, match=msg):
            _open(name, root)

    bad = original.copy()
    bad.loc[4, grade_col] = 7
    check(bad, rf"{table}, row 5 \(line 6\), column '{grade_col}': value 7 is not allowed \(expected one of 0, 1, 2, 3, 4;")
    bad = original.astype(str)
    bad.loc[0, grade_col] = "severe"
    check(bad, rf"row 1 \(line 2\), column '{grade_col}': value 'severe' is not allowed")
    check(original.drop(columns=[grade_col]), rf"{table} has no column '{grade_col}'")
    check(pd.concat([original, original.iloc[[2]]], ignore_index=True),
          rf"column '{id_col}': '{original[id_col][2]}' appears more than once")  # fmt: skip
    bad = original.copy()
    bad.loc[1, id_col] = "../../secret"
    check(bad, rf"row 2 \(line 3\), column '{id_col}': '\.\./\.\./secret' is not a plain file name")


def test_eyepacs_image_name_must_carry_the_eye(tmp_path):
    root = make_eyepacs_root(tmp_path)
    df = pd.read_csv(root / "trainLabels.csv")
    df.loc[3, "image"] = "17_middle"
    df.to_csv(root / "trainLabels.csv", index=False)
    with pytest.raises(DataError, match=r"row 4 \(line 5\), column 'image': '17_middle' is not of the form"):
        _open("eyepacs", root)


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"task": "severity"}, r"task='severity' is not allowed; expected one of \('grade', 'referable'\)"),
        ({"split_fractions": (0.8, 0.3, 0.1)}, r"split_fractions=\(0\.8, 0\.3, 0\.1\) must be 3 non-negative fractions summing to 1"),
        ({"split_fractions": (0.9, 0.1)}, r"must be 3 non-negative fractions"),
    ],
)
def test_unknown_option_values(tmp_path, kw, msg):
    with pytest.raises(DataError, match=msg):
        _open("aptos", make_aptos_root(tmp_path), **kw)


def test_missing_root_table_images_and_empty_split(kind, tmp_path):
    name, root, table, id_col, _, pattern = kind
    with pytest.raises(FileNotFoundError, match=rf"{name}: root folder .*absent does not exist; expected a folder holding {table} and"):
        _open(name, tmp_path / "absent")
    with pytest.raises(DataError, match=r"split 'val' with split_fractions=\(0\.8, 0\.0, 0\.2\) leaves zero images"):
        _open(name, root, "val", split_fractions=(0.8, 0.0, 0.2))
    ds = _open(name, root, "test")
    first = ds.table[id_col][0]
    (root / pattern.format(first)).unlink()
    with pytest.raises(FileNotFoundError, match=rf"1 of {len(ds)} images listed in .*{table} are missing, e\.g\. .*{first}"):
        _open(name, root, "test")
    with pytest.warns(DataWarning):
        skipped = _open(name, root, "test", missing="skip")
    assert skipped.skipped == 1 and len(skipped) == len(ds) - 1
    truncate_file(root / pattern.format(skipped.table[id_col][0]))
    with pytest.raises(DataError, match=rf"{name}: cannot decode image .*{skipped.table[id_col][0]}"):
        skipped.load_uint8(0)
    (root / table).unlink()
    with pytest.raises(FileNotFoundError, match=rf"table .*{table} does not exist"):
        _open(name, root)


def test_label_only_and_cache_identity(kind, tmp_path):
    name, root, table, *_ = kind
    a, b = _open(name, root), _open(name, root, task="referable", check_files=False)
    assert a.cache_identity() == b.cache_identity()  # the task changes labels, not pixels
    assert a.cache_identity()["root"] == str(root.resolve())
    assert _open(name, root, "val").cache_identity()["images"] != a.cache_identity()["images"]
