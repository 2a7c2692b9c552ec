"""NIH ChestX-ray14 / ChestX-ray8 loader on fixture folders in the official format."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torchvision.transforms.functional as TF
from fixtures_data import NIH_FINDINGS, garble_file, make_nih_root
from PIL import Image

from kdmed.data import open_dataset
from kdmed.data._io import DataError, DataWarning, MissingDataError
from kdmed.data.nih import CHESTXRAY8, CHESTXRAY14

OPEN = dict(progress=False, val_fraction=0.25)


def _open(root, split="train", **kw):
    return open_dataset("nih", root, split, 16, **{**OPEN, **kw})


def _table(root) -> tuple[str, pd.DataFrame]:
    name = "Data_Entry_2017.csv" if (root / "Data_Entry_2017.csv").exists() else "Data_Entry_2017_v2020.csv"
    return name, pd.read_csv(root / name, dtype={"Image Index": str, "Finding Labels": str})


def _expected(findings: pd.Series, classes: list[str]) -> np.ndarray:
    """Reference parse: one row per image, 1 where the class is among the '|'-separated names."""
    return np.array([[float(c in set(f.split("|"))) for c in classes] for f in findings], dtype=np.float32)


@pytest.mark.parametrize("header", ["2017", "v2020"])
@pytest.mark.parametrize("layout", ["flat", "split"])
def test_both_headers_and_layouts_give_the_official_splits_and_labels(tmp_path, header, layout):
    root = make_nih_root(tmp_path, header=header, layout=layout)
    name, src = _table(root)
    if header == "2017":
        assert src.columns[-1] == "Unnamed: 11" and src["Unnamed: 11"].isna().all()
    test_list = (root / "test_list.txt").read_text().split()
    train_val = (root / "train_val_list.txt").read_text().split()
    parts = {s: _open(root, s) for s in ("train", "val", "test")}
    for ds in parts.values():
        assert ds.classes == CHESTXRAY14 and ds.task == "multilabel"
        assert list(ds.table.columns) == [c for c in src.columns if not c.startswith("Unnamed")]
        np.testing.assert_array_equal(ds.labels, _expected(ds.table["Finding Labels"], CHESTXRAY14))
        np.testing.assert_array_equal(ds.patient_ids, ds.table["Patient ID"].to_numpy())
        assert (ds.labels[(ds.table["Finding Labels"] == "No Finding").to_numpy()] == 0).all()
        assert ds.load_uint8(len(ds) - 1).shape == (1, 16, 16)
    assert sorted(parts["test"].table["Image Index"]) == sorted(test_list)
    assert sorted(pd.concat([parts["train"].table, parts["val"].table])["Image Index"]) == sorted(train_val)
    assert set(parts["train"].patient_ids).isdisjoint(parts["val"].patient_ids)
    assert len(set(parts["val"].patient_ids)) == round(0.25 * len(set(parts["train"].patient_ids) | set(parts["val"].patient_ids)))
    # rows keep the table's order
    order = {n: i for i, n in enumerate(src["Image Index"])}
    assert all(np.diff([order[n] for n in parts["train"].table["Image Index"]]) > 0)


def test_v2020_with_patient_sex_header_is_accepted(tmp_path):
    root = make_nih_root(tmp_path, header="v2020", sex_column="Patient Sex")
    ds = _open(root, "test")
    assert "Patient Sex" in ds.table.columns and "Patient Gender" not in ds.table.columns
    assert set(ds.table["Patient Sex"]) <= {"M", "F"}


def test_header_with_spaces_after_commas_is_accepted(tmp_path):
    root = make_nih_root(tmp_path, header="2017")
    csv = root / "Data_Entry_2017.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0].replace(",", ", ")] + lines[1:]) + "\n")
    ds = _open(root, "test")
    assert "Finding Labels" in ds.table.columns
    np.testing.assert_array_equal(ds.labels, _expected(ds.table["Finding Labels"], CHESTXRAY14))


def test_chestxray8_is_the_first_eight_findings(tmp_path):
    root = make_nih_root(tmp_path, n_patients=12)
    full, eight = _open(root, "train"), _open(root, "train", labels="chestxray8")
    assert eight.classes == CHESTXRAY8 == NIH_FINDINGS[:8]
    np.testing.assert_array_equal(eight.labels, full.labels[:, :8])
    np.testing.assert_array_equal(eight.labels, _expected(eight.table["Finding Labels"], CHESTXRAY8))
    assert full.cache_identity() == eight.cache_identity()


def test_pixels_match_reference_including_the_rgba_png(tmp_path):
    root = make_nih_root(tmp_path, layout="split")
    _, src = _table(root)
    first = src["Image Index"][0]
    ds = open_dataset("nih", root, "train", 24, progress=False, val_fraction=0.0)
    assert first in set(ds.table["Image Index"])
    for i, n in enumerate(ds.table["Image Index"]):
        folder = next(root.glob(f"images_*/images/{n}")).parent
        with Image.open(folder / n) as im:
            assert (im.mode == "RGBA") == (n == first)
            ref = np.asarray(TF.center_crop(TF.resize(im.convert("L"), 24, antialias=True), 24))
        np.testing.assert_array_equal(ds.load_uint8(i)[0], ref)


# ---------------------------------------------------------------------------- bad input
def test_missing_root_table_and_lists_are_named(tmp_path):
    with pytest.raises(DataError, match=r"nih: no root given; pass root=<the folder holding Data_Entry_2017_v2020\.csv or Data_Entry_2017\.csv"):
        open_dataset("nih")
    with pytest.raises(FileNotFoundError, match=r"holds neither Data_Entry_2017_v2020\.csv nor Data_Entry_2017\.csv"):
        _open(tmp_path)
    root = make_nih_root(tmp_path)
    (root / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"split list .*test_list\.txt does not exist"):
        _open(root)


def _rewrite(root, edit):
    name, src = _table(root)
    src = edit(src.drop(columns=[c for c in src.columns if c.startswith("Unnamed")]))
    src.to_csv(root / name, index=False)


def test_table_errors_name_file_row_and_column(tmp_path):
    root = make_nih_root(tmp_path)
    _, src = _table(root)
    cases = [
        (lambda d: d.drop(columns=["Patient ID"]), r"Data_Entry_2017\.csv has no column 'Patient ID'"),
        (lambda d: d.assign(**{"Finding Labels": d["Finding Labels"].where(d.index != 2, "Mass|Covid")}),
         r"row 3 \(line 4\), column 'Finding Labels': 'Covid' is not a finding"),
        (lambda d: d.assign(**{"Finding Labels": d["Finding Labels"].where(d.index != 1, "No Finding|Mass")}),
         r"row 2 \(line 3\), column 'Finding Labels': 'No Finding\|Mass' combines 'No Finding' with findings"),
        (lambda d: d.assign(**{"Patient ID": d["Patient ID"].astype(str).where(d.index != 4, "abc")}),
         r"row 5 \(line 6\), column 'Patient ID': value 'abc' is not an integer patient id"),
        (lambda d: d.assign(**{"Image Index": d["Image Index"].where(d.index != 3, "../x.png")}),
         r"row 4 \(line 5\), column 'Image Index': '\.\./x\.png' is not a plain file name"),
        (lambda d: pd.concat([d, d.iloc[[0]]], ignore_index=True),
         rf"column 'Image Index': '{src['Image Index'][0]}' appears more than once"),
    ]  # fmt: skip
    original = (root / "Data_Entry_2017.csv").read_text()
    for edit, msg in cases:
        (root / "Data_Entry_2017.csv").write_text(original)
        _rewrite(root, edit)
        with pytest.raises(DataError, match=msg):
            _open(root)


def test_list_errors_name_the_list_line_and_image(tmp_path):
    root = make_nih_root(tmp_path)
    tv = (root / "train_val_list.txt").read_text().split()
    test = (root / "test_list.txt").read_text().split()
    (root / "test_list.txt").write_text("\n".join(test + ["99999999_000.png"]) + "\n")
    with pytest.raises(DataError, match=rf"test_list\.txt, line {len(test) + 1}: image '99999999_000\.png' is not in Data_Entry_2017\.csv"):
        _open(root, "test")
    (root / "test_list.txt").write_text("\n".join(test + [tv[0]]) + "\n")
    with pytest.raises(DataError, match=rf"image '{tv[0]}' is in both train_val_list\.txt and test_list\.txt"):
        _open(root)
    (root / "test_list.txt").write_text("\n".join(test + [test[0]]) + "\n")
    with pytest.raises(DataError, match=rf"test_list\.txt, line {len(test) + 1}: image '{test[0]}' is listed twice"):
        _open(root)
    (root / "test_list.txt").write_text("\n")
    with pytest.raises(DataError, match=r"split 'test' \(test_list\.txt\) leaves zero images"):
        _open(root, "test")


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"labels": "chestxray9"}, r"labels='chestxray9' is not allowed; expected one of \('chestxray14', 'chestxray8'\)"),
        ({"val_fraction": -0.1}, r"val_fraction=-0\.1 must be a number in \[0, 1\)"),
        ({"missing": "drop"}, r"missing='drop' is not allowed"),
    ],
)
def test_unknown_option_values(tmp_path, kw, msg):
    with pytest.raises(DataError, match=msg):
        _open(make_nih_root(tmp_path), **kw)


def test_missing_duplicated_and_corrupt_images(tmp_path):
    root = make_nih_root(tmp_path, layout="split")
    ds = _open(root, "test")
    name = ds.table["Image Index"][0]
    (next(root.glob(f"images_*/images/{name}"))).unlink()
    with pytest.raises(FileNotFoundError, match=rf"nih: 1 of {len(ds)} images listed in .*Data_Entry_2017\.csv are missing, e\.g\. images\*/{name}"):
        _open(root, "test")
    with pytest.warns(DataWarning, match="1 of"):
        skipped = _open(root, "test", missing="skip")
    assert skipped.skipped == 1 and skipped.table["Image Index"].tolist() == ds.table["Image Index"][1:].tolist()
    with pytest.raises(MissingDataError, match=rf"image {name} not found under .*images/ or .*images_0NN/images/"):
        _open(root, "test", check_files=False).load_uint8(0)
    other = ds.table["Image Index"][1]
    src = next(root.glob(f"images_*/images/{other}"))
    twin = root / ("images_001" if src.parent.parent.name == "images_002" else "images_002") / "images" / other
    shutil.copy(src, twin)
    with pytest.raises(DataError, match=rf"image '{other}' is present twice"):
        _open(root, "test", missing="skip")
    twin.unlink()
    garble_file(src)
    with pytest.warns(DataWarning):
        bad = _open(root, "test", missing="skip")
    with pytest.raises(DataError, match=rf"nih: cannot decode image .*{other}"):
        bad.load_uint8(0)


def test_label_only_use_without_any_image_folder(tmp_path):
    root = make_nih_root(tmp_path, images=False)
    ds = _open(root, "train", check_files=False)
    assert len(ds) > 0
    with pytest.raises(MissingDataError, match=r"not found under"):
        ds.load_uint8(0)
