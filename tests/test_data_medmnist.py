"""MedMNIST ChestMNIST / RetinaMNIST loaders on fixture .npz files in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from fixtures_data import NIH_FINDINGS, make_medmnist_root
from PIL import Image

from kdmed.data import open_dataset
from kdmed.data._io import DataError


@pytest.fixture
def chest(tmp_path):
    return make_medmnist_root(tmp_path, "chestmnist", sizes=(28, 64))


def test_chestmnist_labels_splits_and_ids(chest):
    for split, n in zip(("train", "val", "test"), (8, 3, 4)):
        ds = open_dataset("medmnist-chest", chest, split, 28)
        with np.load(chest / "chestmnist.npz") as z:
            np.testing.assert_array_equal(ds.labels, z[f"{split}_labels"].astype(np.float32))
        assert len(ds) == n and ds.classes == NIH_FINDINGS and ds.task == "multilabel" and ds.channels == 1
        np.testing.assert_array_equal(ds.patient_ids, np.arange(n))


@pytest.mark.parametrize("image_size, size, expected", [(28, None, 28), (20, None, 28), (32, None, 64), (64, None, 64), (100, None, 64), (64, 28, 28)])
def test_file_choice_follows_image_size(chest, image_size, size, expected):
    ds = open_dataset("medmnist-chest", chest, "val", image_size, size=size)
    assert ds.size == expected
    assert ds.npz_path.name == ("chestmnist.npz" if expected == 28 else f"chestmnist_{expected}.npz")
    with np.load(ds.npz_path) as z:
        src = z["val_images"]
    for i in range(len(ds)):
        ref = np.asarray(TF.center_crop(TF.resize(Image.fromarray(src[i]), image_size, antialias=True), image_size))
        np.testing.assert_array_equal(ds.load_uint8(i)[0], ref)
    if image_size == expected:
        np.testing.assert_array_equal(ds.load_uint8(0)[0], src[0])  # no resampling at the native size
    assert ds.cache_identity()["size"] == expected and ds.cache_identity()["file"]["path"].endswith(ds.npz_path.name)


def test_retinamnist_is_colour_one_hot(tmp_path):
    root = make_medmnist_root(tmp_path, "retinamnist", sizes=(28,))
    ds = open_dataset("medmnist-retina", root, "train", 28)
    with np.load(root / "retinamnist.npz") as z:
        grades, images = z["train_labels"][:, 0], z["train_images"]
    assert ds.classes == [f"grade {g}" for g in range(5)] and ds.task == "multiclass" and ds.channels == 3
    np.testing.assert_array_equal(ds.labels, np.eye(5, dtype=np.float32)[grades])
    np.testing.assert_array_equal(ds.load_uint8(3), images[3].transpose(2, 0, 1))
    img, target = ds[3]
    assert img.shape == (3, 28, 28)
    np.testing.assert_allclose(img.numpy(), images[3].transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert ds.take([4, 1]).load_uint8(1).tolist() == ds.load_uint8(1).tolist()


def test_absent_file_names_the_file_and_how_to_download(tmp_path, chest):
    with pytest.raises(FileNotFoundError) as err:
        open_dataset("medmnist-chest", tmp_path / "empty", "train", 64)
    msg = str(err.value)
    assert f"{tmp_path / 'empty' / 'chestmnist_64.npz'}" in msg and "pip install medmnist" in msg
    assert "medmnist.ChestMNIST(split='train', download=True, size=64" in msg
    with pytest.raises(FileNotFoundError, match=r"expected the file .*chestmnist_224\.npz"):
        open_dataset("medmnist-chest", chest, "train", 64, size=224)
    with pytest.raises(FileNotFoundError, match=r"expected the file .*retinamnist\.npz .*medmnist\.RetinaMNIST"):
        open_dataset("medmnist-retina", chest, "train", 28)
    with pytest.raises(DataError, match=r"medmnist-chest: size=100 is not allowed; expected one of \(28, 64, 128, 224\)"):
        open_dataset("medmnist-chest", chest, "train", 28, size=100)
    with pytest.raises(DataError, match=r"no root given; pass root=<the folder holding chestmnist_64\.npz>"):
        open_dataset("medmnist-chest", None, "train", 64)


def test_malformed_npz_files_are_named(tmp_path):
    root = tmp_path / "m"
    root.mkdir()
    good = dict(train_images=np.zeros((3, 28, 28), np.uint8), train_labels=np.zeros((3, 14), np.uint8))
    cases = [
        (dict(train_images=good["train_images"]), r"chestmnist\.npz has no array 'train_labels'"),
        ({**good, "train_images": np.zeros((3, 28, 28, 3), np.uint8)}, r"array 'train_images' is uint8 \[3, 28, 28, 3\]; expected uint8 \[N, 28, 28\]"),
        ({**good, "train_labels": np.zeros((2, 14), np.uint8)}, r"train_images has 3 images but train_labels has 2 rows"),
        ({**good, "train_labels": np.eye(3, 14, dtype=np.uint8) * 2}, r"array 'train_labels', row 0: value 2; expected 0 or 1 \(column 0, Atelectasis\)"),
        ({**good, "train_labels": np.zeros((3, 5), np.uint8)}, r"'train_labels' has shape \[3, 5\]; expected \[N, 14\]"),
        ({**good, "train_images": np.zeros((0, 28, 28), np.uint8), "train_labels": np.zeros((0, 14), np.uint8)}, r"split 'train' of chestmnist\.npz leaves zero images"),
    ]  # fmt: skip
    for arrays, msg in cases:
        np.savez(root / "chestmnist.npz", **arrays)
        with pytest.raises(DataError, match=msg):
            open_dataset("medmnist-chest", root, "train", 28)
    (root / "chestmnist.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"cannot read .*chestmnist\.npz as a NumPy \.npz archive"):
        open_dataset("medmnist-chest", root, "train", 28)
    np.savez(root / "retinamnist.npz", train_images=np.zeros((2, 28, 28, 3), np.uint8), train_labels=np.array([[1], [7]], np.uint8))
    with pytest.raises(DataError, match=r"retinamnist\.npz, array 'train_labels', row 1: value 7; expected a grade 0\.\.4"):
        open_dataset("medmnist-retina", root, "train", 28)
