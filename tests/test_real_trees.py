"""The format-exact real-dataset trees of :mod:`real_trees`, opened with the project's own loaders.

The trees are written once (scale "small", the CI size) for this module. Checked: every
split of every dataset opens, lengths are what was written, label rows are the real
tables' rows (the loader's label policy applied to them), patients never straddle splits,
images decode at the asked size, the pixels carry some signal, and the writer is fast,
small, deterministic and usable from the command line.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import real_trees as rt
from PIL import Image

from kdmed.data import open_dataset
from kdmed.data.chexpert import CLASSES as CHEXPERT_CLASSES
from kdmed.data.nih import CHESTXRAY8, CHESTXRAY14

SPLITS = ("train", "val", "test")
SIZE = 32


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    out = tmp_path_factory.mktemp("real_trees")
    t0 = time.perf_counter()
    roots = rt.write_real_trees(out, "small", seed=0)
    return {"roots": roots, "seconds": time.perf_counter() - t0, "out": out}


def _open(name, root, split, **kw):
    if not name.startswith("medmnist"):
        kw.setdefault("progress", False)
    return open_dataset(name, root, split, SIZE, **kw)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _real_index(name: str, column: str) -> dict[str, int]:
    df = rt._table(name)
    return dict(zip(df[column], range(len(df))))


# ---------------------------------------------------------------------------- writer
def test_write_time_size_and_roots(trees):
    out, roots = trees["out"], trees["roots"]
    assert set(roots) == {"chexpert", "nih", "aptos", "eyepacs", "medmnist-chest", "medmnist-retina",
                          "medmnist-pneumonia"}
    assert roots["medmnist-chest"] == roots["medmnist-retina"] == roots["medmnist-pneumonia"] == out / "medmnist"
    n_files, n_bytes = rt.tree_size(out)
    print(f"\nreal trees (small): {n_files} files, {n_bytes / 1e6:.1f} MB in {trees['seconds']:.1f} s")
    assert trees["seconds"] < 60
    assert n_bytes < 50e6


def test_existing_trees_are_refused_unless_overwrite(trees):
    with pytest.raises(FileExistsError, match="overwrite"):
        rt.write_real_trees(trees["out"], "small")
    with pytest.raises(ValueError, match="unknown scale"):
        rt.write_real_trees(trees["out"], "huge")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_command_line_writes_the_same_trees_as_the_function(tmp_path):
    script = Path(rt.__file__)
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cli"), "--scale", "tiny", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    printed = dict(line.split("\t") for line in res.stdout.splitlines())
    roots = rt.write_real_trees(tmp_path / "fn", "tiny", seed=3)
    assert printed == {name: str(tmp_path / "cli" / root.name) for name, root in roots.items()}
    assert "MB in" in res.stderr
    assert _digests(tmp_path / "cli") == _digests(tmp_path / "fn")
    other = rt.write_real_trees(tmp_path / "other", "tiny", seed=4)
    assert _digests(other["nih"]) != _digests(tmp_path / "fn" / "nih")


# ---------------------------------------------------------------------------- CheXpert
def _chexpert_csvs(root: Path) -> tuple[list[str], list[str]]:
    folder = root / "CheXpert-v1.0-small"
    return _lines(folder / "train.csv"), _lines(folder / "valid.csv")


def _patient(path: str) -> str:
    return next(part for part in path.split("/") if part.startswith("patient"))


def test_chexpert_tables_are_real_rows_of_whole_patients(trees):
    root = trees["roots"]["chexpert"]
    train, valid = _chexpert_csvs(root)
    real = rt.real_lines("chexpert")
    assert train[0] == valid[0] == real[0]
    real_set = set(real[1:])
    assert set(train[1:]) <= real_set and len(set(train[1:])) == len(train) - 1
    assert 1300 <= len(train) - 1 <= 1500 and 130 <= len(valid) - 1 <= 200
    # rows keep the real table's order
    order = [real.index(ln) for ln in train[1:4]]
    assert order == sorted(order)

    df = rt._table("chexpert")
    per_patient = df["Path"].map(_patient).value_counts()
    train_patients = pd.Series([_patient(ln.split(",")[0]) for ln in train[1:]]).value_counts()
    valid_patients = pd.Series([_patient(ln.split(",")[0]) for ln in valid[1:]]).value_counts()
    assert (per_patient.loc[train_patients.index].to_numpy() == train_patients.to_numpy()).all()
    assert (per_patient.loc[valid_patients.index].to_numpy() == valid_patients.to_numpy()).all()
    assert not set(train_patients.index) & set(valid_patients.index)
    assert max(train_patients.max(), valid_patients.max()) <= rt.SCALES["small"].max_images_per_patient

    # valid.csv: the official format (valid/ paths, only 0/1), labels 1 where the real row is 1
    index = _real_index("chexpert", "Path")
    for ln in valid[1:]:
        cells = ln.split(",")
        assert cells[0].startswith("CheXpert-v1.0-small/valid/patient")
        real_cells = real[index[cells[0].replace("/valid/", "/train/")] + 1].split(",")
        assert cells[1:5] == real_cells[1:5]
        assert cells[5:] == ["1.0" if v == "1.0" else "0.0" for v in real_cells[5:]]
    assert {v for ln in valid[1:] for v in ln.split(",")[5:]} == {"0.0", "1.0"}
    # the uncertain and blank values of the real table are there
    values = {v for ln in train[1:] for v in ln.split(",")[5:]}
    assert {"", "-1.0", "0.0", "1.0"} <= values


def test_chexpert_images_exist_at_their_paths(trees):
    root = trees["roots"]["chexpert"]
    train, valid = _chexpert_csvs(root)
    for ln in train[1:] + valid[1:]:
        cells = ln.split(",")
        with Image.open(root / cells[0]) as img:
            assert img.format == "JPEG" and img.mode == "L"
            w, h = img.size
            assert (h > w) == (cells[3] == "Frontal")


@pytest.mark.parametrize("uncertain", ["zeros", "ones", "ignore"])
def test_chexpert_loader_labels_are_the_policy_on_the_real_rows(trees, uncertain):
    root = trees["roots"]["chexpert"]
    train, valid = _chexpert_csvs(root)
    df = rt._table("chexpert")
    index = _real_index("chexpert", "Path")
    values = rt.chexpert_label_values(df)
    fill = {"zeros": 0.0, "ones": 1.0, "ignore": np.nan}[uncertain]
    opened = {s: _open("chexpert", root, s, uncertain=uncertain, views=("frontal", "lateral")) for s in SPLITS}
    assert len(opened["train"]) + len(opened["val"]) == len(train) - 1
    assert len(opened["test"]) == len(valid) - 1
    for split, ds in opened.items():
        assert ds.classes == CHEXPERT_CLASSES
        paths = ds.table["Path"].str.replace("/valid/", "/train/", regex=False)
        v = values[[index[p] for p in paths]]
        if split == "test":
            expected = (v == 1.0).astype(np.float32)
        else:
            expected = np.where(v == -1.0, fill, np.nan_to_num(v, nan=0.0)).astype(np.float32)
        np.testing.assert_array_equal(ds.labels, expected)
    _assert_patient_disjoint(opened)
    frontal = {s: _open("chexpert", root, s) for s in SPLITS}
    assert all(0 < len(frontal[s]) < len(opened[s]) for s in SPLITS)
    assert (frontal["train"].table["Frontal/Lateral"] == "Frontal").all()
    assert 40 <= len(frontal["val"]) and 100 <= len(frontal["test"])


def _assert_patient_disjoint(opened) -> None:
    ids = {s: set(map(str, ds.patient_ids)) for s, ds in opened.items()}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]


def _assert_images(ds, channels: int) -> None:
    for i in (0, len(ds) // 2, len(ds) - 1):
        arr = ds.load_uint8(i)
        assert arr.dtype == np.uint8 and arr.shape == (channels, SIZE, SIZE)
    img, target = ds[0]
    assert tuple(img.shape) == (3, SIZE, SIZE) and tuple(target.shape) == (len(ds.classes),)


def test_chexpert_images_load(trees):
    for split in SPLITS:
        _assert_images(_open("chexpert", trees["roots"]["chexpert"], split), 1)


# ---------------------------------------------------------------------------- NIH
def test_nih_table_lists_and_folders(trees):
    root = trees["roots"]["nih"]
    table = _lines(root / "Data_Entry_2017_v2020.csv")
    real = rt.real_lines("nih")
    assert table[0] == real[0]
    assert set(table[1:]) <= set(real[1:])
    df = pd.read_csv(root / "Data_Entry_2017_v2020.csv")
    real_df = rt._table("nih")
    per_patient = real_df["Patient ID"].value_counts()
    mine = df["Patient ID"].value_counts()
    assert (per_patient.loc[mine.index].to_numpy() == mine.to_numpy()).all()  # whole patients

    train_val, test = _lines(root / "train_val_list.txt"), _lines(root / "test_list.txt")
    assert train_val == sorted(train_val) and test == sorted(test)
    assert sorted(train_val + test) == sorted(df["Image Index"])
    assert 1350 <= len(train_val) <= 1500 and 380 <= len(test) <= 450
    assert 0.18 <= len(test) / len(df) <= 0.28
    pid = dict(zip(df["Image Index"], df["Patient ID"]))
    assert not {pid[n] for n in train_val} & {pid[n] for n in test}

    files = sorted(root.glob("images_*/images/*.png"))
    assert sorted(p.name for p in files) == sorted(df["Image Index"])
    folders = sorted({p.parent.parent.name for p in files})
    assert folders[0] == "images_001" and len(folders) >= 3 and not (root / "images").exists()
    with Image.open(files[0]) as img:
        assert img.format == "PNG" and img.mode == "L"


@pytest.mark.parametrize("labels", ["chestxray14", "chestxray8"])
def test_nih_loader_labels_are_the_real_findings(trees, labels):
    root = trees["roots"]["nih"]
    classes = CHESTXRAY14 if labels == "chestxray14" else CHESTXRAY8
    opened = {s: _open("nih", root, s, labels=labels) for s in SPLITS}
    assert len(opened["train"]) + len(opened["val"]) == len(_lines(root / "train_val_list.txt"))
    assert len(opened["test"]) == len(_lines(root / "test_list.txt"))
    real_df = rt._table("nih")
    index = _real_index("nih", "Image Index")
    known = set(real_df["Finding Labels"])
    for ds in opened.values():
        assert ds.classes == classes
        rows = [index[n] for n in ds.table["Image Index"]]
        assert (ds.table["Finding Labels"].to_numpy() == real_df["Finding Labels"].to_numpy()[rows]).all()
        assert set(ds.table["Finding Labels"]) <= known
        expected = rt.nih_findings_matrix(real_df["Finding Labels"].to_numpy()[rows], classes)
        np.testing.assert_array_equal(ds.labels, expected.astype(np.float32))
    assert len(opened["val"]) >= 60
    _assert_patient_disjoint(opened)
    _assert_images(opened["test"], 1)


# ---------------------------------------------------------------------------- fundus
def test_aptos_tree(trees):
    root = trees["roots"]["aptos"]
    df = pd.read_csv(root / "train.csv", dtype={"id_code": str})
    assert list(df.columns) == ["id_code", "diagnosis"] and len(df) == rt.SCALES["small"].aptos
    assert df["id_code"].str.fullmatch(r"[0-9a-f]{12}").all() and df["id_code"].is_monotonic_increasing
    with Image.open(root / "train_images" / f"{df['id_code'].iloc[0]}.png") as img:
        assert img.format == "PNG" and img.mode == "RGB"
    _check_fundus("aptos", root, df.set_index("id_code")["diagnosis"], "id_code")


def test_eyepacs_tree(trees):
    root = trees["roots"]["eyepacs"]
    df = pd.read_csv(root / "trainLabels.csv", dtype={"image": str})
    assert list(df.columns) == ["image", "level"] and len(df) == 2 * rt.SCALES["small"].eyepacs_patients
    patient = df["image"].str.extract(r"^(\d+)_(left|right)$")
    assert patient.notna().all().all()
    assert (patient.groupby(0)[1].apply(sorted).map(tuple) == ("left", "right")).all()  # both eyes
    with Image.open(root / "train" / f"{df['image'].iloc[0]}.jpeg") as img:
        assert img.format == "JPEG" and img.mode == "RGB"
    _check_fundus("eyepacs", root, df.set_index("image")["level"], "image")


def _check_fundus(name, root, grade_of, id_column) -> None:
    opened = {s: _open(name, root, s) for s in SPLITS}
    assert sum(len(ds) for ds in opened.values()) == len(grade_of)
    for ds in opened.values():
        grades = grade_of.loc[ds.table[id_column]].to_numpy()
        np.testing.assert_array_equal(ds.labels, np.eye(5, dtype=np.float32)[grades])
        assert set(grades) == set(range(5))  # every grade in every default split
    _assert_patient_disjoint(opened)
    _assert_images(opened["val"], 3)
    ref = _open(name, root, "test", task="referable")
    assert ref.classes == ["referable DR"] and 0 < ref.labels.mean() < 1


# ---------------------------------------------------------------------------- MedMNIST
def test_medmnist_files_and_loaders(trees):
    root = trees["roots"]["medmnist-chest"]
    counts = dict(zip(SPLITS, rt.SCALES["small"].medmnist))
    real_rows = {tuple(r) for r in rt.nih_findings_matrix(rt._table("nih")["Finding Labels"].to_numpy())}
    with np.load(root / "chestmnist_64.npz") as z, np.load(root / "retinamnist_64.npz") as r:
        assert sorted(z.files) == sorted(f"{s}_{k}" for s in SPLITS for k in ("images", "labels")) == sorted(r.files)
        for s in SPLITS:
            assert z[f"{s}_images"].shape == (counts[s], 64, 64) and z[f"{s}_images"].dtype == np.uint8
            assert z[f"{s}_labels"].shape == (counts[s], 14) and z[f"{s}_labels"].dtype == np.uint8
            assert {tuple(row) for row in z[f"{s}_labels"]} <= real_rows
            assert r[f"{s}_images"].shape == (counts[s], 64, 64, 3) and r[f"{s}_labels"].shape == (counts[s], 1)
            assert set(r[f"{s}_labels"][:, 0]) == set(range(5))
    for name, channels in (("medmnist-chest", 1), ("medmnist-retina", 3), ("medmnist-pneumonia", 1)):
        for split in SPLITS:
            ds = _open(name, root, split)
            assert len(ds) == counts[split] and ds.size == 64
            _assert_images(ds, channels)
    chest = _open("medmnist-chest", root, "train")
    assert chest.classes == CHESTXRAY14
    prevalence = chest.labels.mean(axis=0)
    assert 0.05 < prevalence[CHESTXRAY14.index("Infiltration")] < 0.35  # real NIH rows, not uniform noise
    pneumonia = _open("medmnist-pneumonia", root, "train")
    assert pneumonia.classes == ["Pneumonia"] and 0.6 < pneumonia.labels.mean() < 0.9


# ---------------------------------------------------------------------------- signal
def test_images_are_weakly_informative(trees):
    """The class blobs are visible on average, yet far below the noise of one image."""
    with np.load(trees["roots"]["medmnist-chest"] / "chestmnist_64.npz") as z:
        images, labels = z["train_images"].astype(np.float64), z["train_labels"]
    templates = rt._blob_templates(64, 64)
    score = np.einsum("nhw,chw->nc", images, templates) / templates.sum(axis=(1, 2))
    for j in range(14):
        pos, neg = score[labels[:, j] == 1, j], score[labels[:, j] == 0, j]
        if len(pos) >= 10:
            gap = pos.mean() - neg.mean()
            assert 0.3 * rt.CHEST_GAIN < gap < rt.CHEST_GAIN
    eyepacs = {s: _open("eyepacs", trees["roots"]["eyepacs"], s, task="referable") for s in ("train",)}
    ds = eyepacs["train"]
    brightness = np.array([ds.load_uint8(i)[:2].mean() for i in range(len(ds))])
    y = ds.labels[:, 0] == 1
    assert brightness[y].mean() > brightness[~y].mean()
