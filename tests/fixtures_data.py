"""Tiny dataset folders in exactly the official on-disk formats, for tests.

Each ``make_*_root(tmp_path, ...)`` writes real (small) JPEG/PNG images and tables with
the official headers under ``tmp_path`` and returns the dataset root to pass as ``root``.
Contents are drawn from a seeded generator, so the same arguments give the same files.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

CHEXPERT_HEADER = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA",
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]  # fmt: skip
NIH_FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
]  # fmt: skip
NIH_HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
NIH_HEADER_V2020 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,{sex},View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
#: the size (width, height) of fixture images; deliberately not square
IMAGE_WH = (40, 32)


def _pixels(rng: np.random.Generator, wh: tuple[int, int], channels: int) -> np.ndarray:
    """A smooth gradient plus noise (so resizing and cropping change values measurably)."""
    w, h = wh
    yy, xx = np.mgrid[0:h, 0:w]
    base = 255.0 * (0.6 * xx / max(w - 1, 1) + 0.4 * yy / max(h - 1, 1))
    planes = [np.clip(base * (0.5 + 0.5 * c / 2) + rng.normal(0, 25, (h, w)), 0, 255) for c in range(channels)]
    arr = np.stack(planes, axis=-1).astype(np.uint8)
    return arr[..., 0] if channels == 1 else arr


def _save(path: Path, arr: np.ndarray, mode: str | None = None, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode is not None:
        img = img.convert(mode)
    img.save(path, **kw)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------------------- CheXpert
def _chexpert_rows(rng, folder: str, part: str, first_patient: int, n_patients: int, official_valid: bool):
    rows = []
    for p in range(first_patient, first_patient + n_patients):
        sex, age = rng.choice(["Female", "Male"]), int(rng.integers(18, 90))
        for study in range(1, int(rng.integers(1, 3)) + 1):
            views = [("view1_frontal.jpg", "Frontal", str(rng.choice(["AP", "PA"])))]
            if rng.random() < 0.5:
                views.append(("view2_lateral.jpg", "Lateral", ""))
            for fname, fl, appa in views:
                path = f"{folder}/{part}/patient{p:05d}/study{study}/{fname}"
                if official_valid:  # the official valid.csv has only 0/1, never blank or -1
                    obs = [str(rng.choice(["1.0", "0.0"])) for _ in range(14)]
                else:
                    obs = [str(v) for v in rng.choice(["1.0", "0.0", "-1.0", ""], size=14, p=[0.3, 0.2, 0.2, 0.3])]
                    obs[0] = "1.0" if rng.random() < 0.2 else ""
                rows.append([path, sex, age, fl, appa, *obs])
    return rows


def make_chexpert_root(
    tmp_path: Path,
    n_patients: int = 8,
    small: bool = True,
    n_valid_patients: int = 2,
    seed: int = 0,
    images: bool = True,
) -> Path:
    """A CheXpert root: ``CheXpert-v1.0[-small]/{train,valid}.csv`` and their JPEGs.

    Train patients are ``patient00001...``, valid ones ``patient64541...`` (as in the
    release). Row 1 of train.csv always has uncertain (-1) Atelectasis and Edema and a
    blank Cardiomegaly, so every label policy is exercised.
    """
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / "chexpert_root"
    folder = "CheXpert-v1.0-small" if small else "CheXpert-v1.0"
    train = _chexpert_rows(rng, folder, "train", 1, n_patients, official_valid=False)
    col = {c: j for j, c in enumerate(CHEXPERT_HEADER)}
    train[0][col["Atelectasis"]] = "-1.0"
    train[0][col["Edema"]] = "-1.0"
    train[0][col["Cardiomegaly"]] = ""
    train[0][col["No Finding"]] = ""
    valid = _chexpert_rows(rng, folder, "valid", 64541, n_valid_patients, official_valid=True)
    _write_csv(root / folder / "train.csv", CHEXPERT_HEADER, train)
    _write_csv(root / folder / "valid.csv", CHEXPERT_HEADER, valid)
    if images:
        for r in train + valid:
            wh = IMAGE_WH[::-1] if r[3] == "Frontal" else IMAGE_WH  # frontal portrait, lateral landscape
            _save(root / r[0], _pixels(rng, wh, 1), quality=95)
    return root


# ---------------------------------------------------------------------------- NIH
def make_nih_root(
    tmp_path: Path,
    n_patients: int = 8,
    header: str = "2017",
    layout: str = "flat",
    sex_column: str = "Patient Gender",
    n_test_patients: int = 2,
    seed: int = 0,
    images: bool = True,
) -> Path:
    """An NIH ChestX-ray14 root: table, ``train_val_list.txt``, ``test_list.txt`` and PNGs.

    ``header="2017"`` writes ``Data_Entry_2017.csv`` with its trailing commas; ``"v2020"``
    writes ``Data_Entry_2017_v2020.csv`` (no trailing comma) with ``sex_column`` as the
    sex header. ``layout="flat"`` puts PNGs in ``images/``, ``"split"`` spreads them over
    ``images_001/images/`` and ``images_002/images/``. The last ``n_test_patients`` go to
    the test list. The first image is stored as RGBA (a few real NIH PNGs are).
    """
    if header not in ("2017", "v2020") or layout not in ("flat", "split"):
        raise ValueError(f"header must be '2017' or 'v2020' and layout 'flat' or 'split', got {header!r}, {layout!r}")
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / f"nih_root_{header}_{layout}"
    root.mkdir(parents=True, exist_ok=True)
    rows, test_names, train_val_names = [], [], []
    for k, pid in enumerate(range(1, n_patients + 1)):
        for follow_up in range(int(rng.integers(1, 4))):
            name = f"{pid:08d}_{follow_up:03d}.png"
            if rng.random() < 0.35:
                finding = "No Finding"
            else:
                picks = rng.choice(len(NIH_FINDINGS), size=int(rng.integers(1, 4)), replace=False)
                finding = "|".join(NIH_FINDINGS[i] for i in sorted(picks))
            rows.append(
                [name, finding, follow_up, pid, int(rng.integers(20, 80)), str(rng.choice(["M", "F"])),
                 str(rng.choice(["PA", "AP"])), 2500, 2048, 0.143, 0.143]
            )  # fmt: skip
            (test_names if k >= n_patients - n_test_patients else train_val_names).append(name)
    if header == "2017":
        lines = [NIH_HEADER_2017] + [",".join(map(str, r)) + "," for r in rows]
        (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = [NIH_HEADER_V2020.format(sex=sex_column)] + [",".join(map(str, r)) for r in rows]
        (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in sorted(train_val_names)))
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n in sorted(test_names)))
    if images:
        for i, r in enumerate(rows):
            folder = root / "images" if layout == "flat" else root / f"images_{1 + i % 2:03d}" / "images"
            _save(folder / r[0], _pixels(rng, IMAGE_WH, 1), mode="RGBA" if i == 0 else None)
    return root


# ---------------------------------------------------------------------------- retina
def make_eyepacs_root(tmp_path: Path, n_patients: int = 10, seed: int = 0, images: bool = True) -> Path:
    """A Kaggle EyePACS root: ``trainLabels.csv`` (``image,level``) and ``train/<image>.jpeg``, both eyes per patient."""
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / "eyepacs_root"
    pids = np.sort(rng.choice(np.arange(10, 5000), size=n_patients, replace=False))
    rows = []
    for k, pid in enumerate(pids):
        for eye in ("left", "right"):
            level = (2 * k + (eye == "right")) % 5  # every grade present
            rows.append([f"{pid}_{eye}", level])
    _write_csv(root / "trainLabels.csv", ["image", "level"], rows)
    if images:
        for image, _ in rows:
            _save(root / "train" / f"{image}.jpeg", _pixels(rng, IMAGE_WH, 3), quality=95)
    return root


def make_aptos_root(tmp_path: Path, n_images: int = 12, seed: int = 0, images: bool = True) -> Path:
    """An APTOS 2019 root: ``train.csv`` (``id_code,diagnosis``) and ``train_images/<id_code>.png``."""
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / "aptos_root"
    ids = ["".join(rng.choice(list("0123456789abcdef"), size=12)) for _ in range(n_images)]
    rows = [[i, k % 5] for k, i in enumerate(ids)]
    _write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)
    if images:
        for id_code, _ in rows:
            _save(root / "train_images" / f"{id_code}.png", _pixels(rng, IMAGE_WH[::-1], 3))
    return root


# ---------------------------------------------------------------------------- MedMNIST
def make_medmnist_root(
    tmp_path: Path,
    flag: str = "chestmnist",
    sizes: Sequence[int] = (28, 64),
    n: tuple[int, int, int] = (8, 3, 4),
    seed: int = 0,
) -> Path:
    """MedMNIST ``.npz`` files (``<flag>.npz`` for 28 px, ``<flag>_<size>.npz`` otherwise) in one folder.

    ChestMNIST: images ``[N, s, s]`` uint8, labels ``[N, 14]`` of 0/1; RetinaMNIST: images
    ``[N, s, s, 3]``, labels ``[N, 1]`` of 0..4. The same labels are written for every size.
    """
    if flag not in ("chestmnist", "retinamnist", "pneumoniamnist"):
        raise ValueError(f"flag must be 'chestmnist', 'retinamnist' or 'pneumoniamnist', got {flag!r}")
    rng = np.random.default_rng(seed)
    root = Path(tmp_path) / "medmnist_root"
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for split, count in zip(("train", "val", "test"), n):
        if flag == "chestmnist":
            labels[split] = (rng.random((count, 14)) < 0.3).astype(np.uint8)
        elif flag == "pneumoniamnist":
            labels[split] = (np.arange(count) % 2).astype(np.uint8)[:, None]
        else:
            labels[split] = (np.arange(count) % 5).astype(np.uint8)[:, None]
    for size in sizes:
        arrays = {}
        for split, count in zip(("train", "val", "test"), n):
            channels = 3 if flag == "retinamnist" else 1
            arrays[f"{split}_images"] = np.stack([_pixels(rng, (size, size), channels) for _ in range(count)])
            arrays[f"{split}_labels"] = labels[split]
        name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
        np.savez_compressed(root / name, **arrays)
    return root


# ---------------------------------------------------------------------------- damage
def truncate_file(path: Path, keep: float = 0.5) -> None:
    """Cut ``path`` to the first ``keep`` fraction of its bytes (a half-downloaded image)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


def garble_file(path: Path) -> None:
    """Replace ``path``'s content with bytes that are no image format."""
    Path(path).write_bytes(b"this is not an image\n" * 8)
