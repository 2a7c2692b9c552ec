"""Format-exact real-dataset trees for CI: the official folders and tables, real label rows, small images.

:func:`write_real_trees` writes, under one output folder, a tree for each real dataset in
exactly the on-disk format its loader in :mod:`kdmed.data` reads, so the whole book can be
built in the real-data settings without the real images:

* ``chexpert/CheXpert-v1.0-small/train.csv`` and ``valid.csv`` + JPEGs at ``root/Path``;
* ``nih/Data_Entry_2017_v2020.csv``, ``train_val_list.txt``, ``test_list.txt`` + PNGs
  under ``images_001/images/``, ``images_002/images/`` ...;
* ``aptos/train.csv`` + ``train_images/<id_code>.png``;
* ``eyepacs/trainLabels.csv`` + ``train/<image>.jpeg`` (both eyes of every patient);
* ``medmnist/chestmnist_64.npz``, ``retinamnist_64.npz`` and ``pneumoniamnist_64.npz``.

The chest label rows are the REAL ones: whole patients are sampled (seeded) from the label
tables shipped in the torchxrayvision wheel (:func:`kdmed.data.real_tables.real_table`) and
their lines are copied byte for byte (same header, same values, blanks and ``-1.0``
included). Only the pixels are made up: seeded noise on a smooth gradient plus, for each
positive label, a faint Gaussian blob at a position fixed per class (chest; half as bright
for an uncertain CheXpert ``-1.0``), or a haze and lesion dots that grow with the grade
(fundus), so models learn something and AUCs are not pure noise (a linear model on 32 px
reaches about 0.8-0.9 with 1,200 training images, 0.7-0.8 with 200). Details per dataset:

* CheXpert ``train.csv``: the sampled patients' rows of the real train.csv, in its order.
  ``valid.csv``: the rows of *other* sampled patients in the official valid.csv format:
  the ``Path`` becomes ``CheXpert-v1.0-small/valid/patientNNNNN/...`` (the patient number,
  study and view are the real row's, so ``/valid/`` -> ``/train/`` gives back the real
  row) and, as the official valid.csv has only 0/1, every observation is ``1.0`` where
  the real row says ``1.0`` and ``0.0`` otherwise (blank and uncertain ``-1.0`` -> ``0.0``,
  the loader's default "U-Zeros" reading, so the test labels are the train labels' policy).
  Frontal images are portrait, lateral ones landscape (64 x 56 px).
* NIH: the sampled patients' rows of the real ``Data_Entry_2017_v2020.csv`` (its header);
  the first patients drawn go to ``test_list.txt`` until its target is reached (about the
  official test share), the next ones to ``train_val_list.txt``; both lists sorted by name
  as the official ones are. PNGs (64 x 64 grey) in chunks of 500 sorted names per
  ``images_0NN/images/`` folder.
* Patients with more than ``max_images_per_patient`` (20) images are never drawn, so one
  patient cannot swamp a small split (this leaves out the long follow-up series).
* APTOS: 12-hex-digit ``id_code`` rows sorted by id, grades in the real training set's
  proportions, 72 x 64 colour PNGs.
* EyePACS: patient numbers from the real range (10..44349), ``<n>_left`` / ``<n>_right``
  rows sorted by patient, patient grades in the real proportions, the second eye the same
  grade or a neighbour; 72 x 64 colour JPEGs.
* Both fundus sets: the grades are dealt out within each split the loaders make by default
  (``split_fractions`` 0.7/0.1/0.2, ``split_seed`` 0), so every grade 0-4 is in every
  default split (given five patients or more in it).
* MedMNIST (``npz``, uint8, keys ``{train,val,test}_{images,labels}``): ChestMNIST label
  rows are the 14 findings (ChestX-ray14 order) of real NIH rows drawn at random;
  RetinaMNIST grades follow the real RetinaMNIST proportions.

Command line: ``python tests/real_trees.py OUTDIR [--scale small] [--seed 0] [--force]``
writes every tree and prints ``name<TAB>root`` per dataset (time and size on stderr).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kdmed.data.nih import CHESTXRAY14
from kdmed.data.real_tables import real_table, real_table_path

__all__ = [
    "SCALES",
    "Scale",
    "chexpert_label_values",
    "nih_findings_matrix",
    "real_lines",
    "tree_size",
    "write_real_trees",
]


@dataclass(frozen=True)
class Scale:
    """Target sizes of the trees (images; a split may exceed its target by less than one patient)."""

    chexpert_train: int
    chexpert_valid: int
    nih_train_val: int
    nih_test: int
    aptos: int
    eyepacs_patients: int
    medmnist: tuple[int, int, int]  # train, val, test
    max_images_per_patient: int = 20


#: "small": what a CI book needs (val >= 60 and test >= 100 images in every default split; the fundus
#: loaders' default 0.7/0.1/0.2 split is why APTOS has 600 images and EyePACS 300 patients);
#: "tiny": about a tenth of it, for quick checks of the writer
SCALES: dict[str, Scale] = {
    "small": Scale(1400, 150, 1400, 400, 600, 300, (1200, 200, 300)),
    "tiny": Scale(140, 30, 140, 40, 60, 30, (120, 20, 30)),
}

CHEXPERT_FOLDER = "CheXpert-v1.0-small"
#: columns 5.. of CheXpert's train.csv / valid.csv are the 14 observations
CHEXPERT_FIRST_LABEL = 5
NIH_TABLE = "Data_Entry_2017_v2020.csv"
NIH_CHUNK = 500
#: real grade shares: APTOS 2019 train.csv (3,662), EyePACS trainLabels.csv (35,126), RetinaMNIST train (1,080)
APTOS_GRADES = np.array([1805, 370, 999, 193, 295]) / 3662
EYEPACS_GRADES = np.array([25810, 2443, 5292, 873, 708]) / 35126
RETINAMNIST_GRADES = np.array([486, 128, 206, 194, 66]) / 1080
#: the fundus loaders' default ``split_fractions`` (kdmed.data.retina)
DEFAULT_FUNDUS_SPLIT = (0.7, 0.1, 0.2)
#: blob amplitude (grey levels) per positive label, and the noise around it
CHEST_GAIN = 7.0
CHEST_NOISE = 22.0
#: brightness of one fundus lesion dot, of the haze per grade, and the fundus noise
FUNDUS_DOT = 25.0
FUNDUS_HAZE = 3.0
FUNDUS_NOISE = 8.0


# ---------------------------------------------------------------------------- the real tables
@functools.cache
def real_lines(name: str) -> tuple[str, ...]:
    """The shipped table ``name`` ("chexpert" / "nih") as text lines, header first: line ``i + 1`` is row ``i``."""
    with gzip.open(real_table_path(name), "rt", newline="") as fh:
        lines = tuple(fh.read().splitlines())
    if len(lines) != len(_table(name)) + 1:
        raise RuntimeError(f"{name}: {len(lines) - 1} lines but {len(_table(name))} table rows (quoted newlines?)")
    return lines


@functools.cache
def _table(name: str):
    return real_table(name)


def chexpert_label_values(df) -> np.ndarray:
    """The 14 observations of CheXpert rows as float ``[N, 14]`` (NaN for blank), CSV order."""
    from kdmed.data.chexpert import CLASSES

    return df[CLASSES].to_numpy(dtype=np.float64)


def nih_findings_matrix(findings, classes=CHESTXRAY14) -> np.ndarray:
    """``Finding Labels`` strings as 0/1 uint8 ``[N, len(classes)]`` ("No Finding" = all zeros)."""
    col = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(findings), len(classes)), dtype=np.uint8)
    for i, f in enumerate(findings):
        for tok in str(f).split("|"):
            j = col.get(tok.strip())
            if j is not None:
                out[i, j] = 1
    return out


def _draw_patients(patient_of_row: np.ndarray, rng: np.random.Generator, targets, cap: int) -> list[np.ndarray]:
    """Whole patients in a seeded order, group k filled until it holds ``targets[k]`` images; sorted rows per group."""
    uniq, inverse, counts = np.unique(patient_of_row, return_inverse=True, return_counts=True)
    order = rng.permutation(len(uniq))
    order = order[counts[order] <= cap]
    rows_of = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    groups, k, have = [[] for _ in targets], 0, 0
    for p in order:
        groups[k].append(rows_of[p])
        have += counts[p]
        if have >= targets[k]:
            k, have = k + 1, 0
            if k == len(targets):
                break
    return [np.sort(np.concatenate(g)) if g else np.zeros(0, dtype=np.int64) for g in groups]


# ---------------------------------------------------------------------------- pixels
@functools.cache
def _blob_templates(h: int, w: int, n: int = 14) -> np.ndarray:
    """``n`` unit Gaussian blobs ``[n, h, w]`` on a 4 x 4 grid inside the image (class j at cell j)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sigma = 0.07 * min(h, w)
    out = np.empty((n, h, w))
    for j in range(n):
        cy, cx = (0.2 + 0.2 * (j // 4)) * h, (0.2 + 0.2 * (j % 4)) * w
        out[j] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return out


def _chest_pixels(rng: np.random.Generator, wh: tuple[int, int], amps: np.ndarray) -> np.ndarray:
    """Grey uint8 ``[h, w]``: a vertical gradient, noise and ``amps[j]`` times blob j."""
    w, h = wh
    base = 70.0 + 90.0 * np.linspace(0, 1, h)[:, None] * np.ones((1, w))
    img = base + rng.normal(0.0, CHEST_NOISE, (h, w)) + np.tensordot(amps, _blob_templates(h, w, len(amps)), 1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@functools.cache
def _fundus_disc(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot((yy - h / 2) / (0.46 * h), (xx - w / 2) / (0.46 * h))
    return np.clip(1.15 - r**2, 0, None) * (r <= 1.0)


def _fundus_pixels(rng: np.random.Generator, wh: tuple[int, int], grade: int) -> np.ndarray:
    """Colour uint8 ``[h, w, 3]``: an orange disc on black (random illumination), an optic disc on a random
    side, a faint yellow haze in the middle and ``2 * grade`` yellow lesion dots at random places (both
    brighter with the grade)."""
    w, h = wh
    disc = _fundus_disc(h, w)
    colour = np.array([175.0, 85.0, 40.0]) * rng.uniform(0.95, 1.05)
    img = disc[..., None] * colour + rng.normal(0.0, FUNDUS_NOISE, (h, w, 3)) * (disc[..., None] > 0)
    side = int(rng.integers(0, 2))
    oy, ox = h // 2 - 3, (w // 2 - w // 5) if side == 0 else (w // 2 + w // 5 - 6)
    img[oy : oy + 6, ox : ox + 6] += 60.0
    img += (FUNDUS_HAZE * grade) * _blob_templates(h, w, 6)[5][..., None] * np.array([1.0, 1.0, 0.3])
    for _ in range(2 * grade):
        y, x = int(rng.integers(h // 4, 3 * h // 4)), int(rng.integers(w // 4, 3 * w // 4))
        img[y : y + 3, x : x + 3] += FUNDUS_DOT * np.array([1.0, 1.0, 0.3])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _exact_counts(n: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` grades in (largest-remainder) proportion to ``shares``, shuffled; each grade at least once if ``n`` allows."""
    raw = shares * n
    least = 1 if n >= len(shares) else 0
    counts = np.maximum(np.floor(raw).astype(int), least)
    while counts.sum() < n:
        counts[int(np.argmax(raw - counts))] += 1
    while counts.sum() > n:
        counts[int(np.argmax(np.where(counts > least, counts - raw, -np.inf)))] -= 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def _grades_by_default_split(patients: np.ndarray, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One grade per patient, in proportion to ``shares`` within each split the fundus loaders make by default
    (``split_fractions`` 0.7/0.1/0.2, ``split_seed`` 0), so every grade is in every default split."""
    from kdmed.data.subsets import split_by_patient

    grades = np.empty(len(patients), dtype=np.int64)
    for group in split_by_patient(np.asarray(patients), DEFAULT_FUNDUS_SPLIT, seed=0):
        grades[group] = _exact_counts(len(group), shares, rng)
    return grades


# ---------------------------------------------------------------------------- writers
def _save(path: Path, arr: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def _write_csv(path: Path, header, rows) -> None:
    _write_lines(path, [",".join(header), *(",".join(map(str, r)) for r in rows)])


def _write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))


def _write_chexpert(root: Path, sc: Scale, rng: np.random.Generator) -> None:
    df, lines = _table("chexpert"), real_lines("chexpert")
    patients = df["Path"].str.extract(r"(patient\d+)", expand=False).to_numpy()
    valid_rows, train_rows = _draw_patients(patients, rng, [sc.chexpert_valid, sc.chexpert_train], sc.max_images_per_patient)
    folder = root / CHEXPERT_FOLDER
    _write_lines(folder / "train.csv", [lines[0], *(lines[i + 1] for i in train_rows)])
    valid = []
    for i in valid_rows:
        cells = lines[i + 1].split(",")
        cells[0] = cells[0].replace(f"{CHEXPERT_FOLDER}/train/", f"{CHEXPERT_FOLDER}/valid/", 1)
        cells[CHEXPERT_FIRST_LABEL:] = ["1.0" if v == "1.0" else "0.0" for v in cells[CHEXPERT_FIRST_LABEL:]]
        valid.append(",".join(cells))
    _write_lines(folder / "valid.csv", [lines[0], *valid])

    values = chexpert_label_values(df)
    for part, rows, texts in (("train", train_rows, None), ("valid", valid_rows, valid)):
        for k, i in enumerate(rows):
            path = (texts[k] if texts is not None else lines[i + 1]).split(",", 1)[0]
            v = values[i] if part == "train" else (values[i] == 1.0).astype(np.float64)
            amps = CHEST_GAIN * np.where(v == 1.0, 1.0, np.where(v == -1.0, 0.5, 0.0))
            wh = (56, 64) if df["Frontal/Lateral"].iat[i] == "Frontal" else (64, 56)
            _save(root / path, _chest_pixels(rng, wh, amps), quality=90)


def _write_nih(root: Path, sc: Scale, rng: np.random.Generator) -> None:
    df, lines = _table("nih"), real_lines("nih")
    test_rows, tv_rows = _draw_patients(
        df["Patient ID"].to_numpy(), rng, [sc.nih_test, sc.nih_train_val], sc.max_images_per_patient
    )
    rows = np.sort(np.concatenate([test_rows, tv_rows]))
    _write_lines(root / NIH_TABLE, [lines[0], *(lines[i + 1] for i in rows)])
    names = df["Image Index"].to_numpy()
    _write_lines(root / "train_val_list.txt", sorted(names[tv_rows]))
    _write_lines(root / "test_list.txt", sorted(names[test_rows]))
    findings = nih_findings_matrix(df["Finding Labels"].to_numpy()[rows])
    order = np.argsort(names[rows], kind="stable")
    for k, j in enumerate(order):
        folder = root / f"images_{1 + k // NIH_CHUNK:03d}" / "images"
        _save(folder / names[rows[j]], _chest_pixels(rng, (64, 64), CHEST_GAIN * findings[j].astype(np.float64)))


def _write_aptos(root: Path, sc: Scale, rng: np.random.Generator) -> None:
    ids: set[str] = set()
    while len(ids) < sc.aptos:
        ids.add(f"{int(rng.integers(0, 16**12)):012x}")
    ids_sorted = sorted(ids)
    grades = _grades_by_default_split(np.array(ids_sorted), APTOS_GRADES, rng)
    _write_csv(root / "train.csv", ["id_code", "diagnosis"], list(zip(ids_sorted, grades.tolist())))
    for id_code, g in zip(ids_sorted, grades):
        _save(root / "train_images" / f"{id_code}.png", _fundus_pixels(rng, (72, 64), int(g)))


def _write_eyepacs(root: Path, sc: Scale, rng: np.random.Generator) -> None:
    pids = np.sort(rng.choice(np.arange(10, 44350), size=sc.eyepacs_patients, replace=False))
    first = _grades_by_default_split(pids.astype(str), EYEPACS_GRADES, rng)
    step = rng.choice([-1, 0, 0, 0, 1], size=len(pids))
    second = np.clip(first + step, 0, 4)
    rows = []
    for pid, a, b in zip(pids, first, second):
        left_first = rng.random() < 0.5  # which eye carries the patient's grade
        rows += [[f"{pid}_left", int(a if left_first else b)], [f"{pid}_right", int(b if left_first else a)]]
    _write_csv(root / "trainLabels.csv", ["image", "level"], rows)
    for image, level in rows:
        _save(root / "train" / f"{image}.jpeg", _fundus_pixels(rng, (72, 64), level), quality=90)


def _write_medmnist(root: Path, sc: Scale, rng: np.random.Generator) -> None:
    root.mkdir(parents=True, exist_ok=True)
    nih = _table("nih")
    drawn = rng.choice(len(nih), size=sum(sc.medmnist), replace=False)
    chest_labels = nih_findings_matrix(nih["Finding Labels"].to_numpy()[drawn])
    chest, retina, start = {}, {}, 0
    for split, n in zip(("train", "val", "test"), sc.medmnist):
        lab = chest_labels[start : start + n]
        start += n
        chest[f"{split}_images"] = np.stack([_chest_pixels(rng, (64, 64), CHEST_GAIN * r.astype(np.float64)) for r in lab])
        chest[f"{split}_labels"] = lab
        grades = _exact_counts(n, RETINAMNIST_GRADES, rng).astype(np.uint8)
        retina[f"{split}_images"] = np.stack([_fundus_pixels(rng, (64, 64), int(g)) for g in grades])
        retina[f"{split}_labels"] = grades[:, None]
    np.savez_compressed(root / "chestmnist_64.npz", **chest)
    np.savez_compressed(root / "retinamnist_64.npz", **retina)
    # PneumoniaMNIST (paediatric, another institution): 0/1 labels at its real share (74 % pneumonia)
    pneumonia, slot = {}, CHESTXRAY14.index("Pneumonia")
    for split, n in zip(("train", "val", "test"), sc.medmnist):
        lab = (rng.random(n) < 0.74).astype(np.uint8)
        amps = np.zeros((n, len(CHESTXRAY14)))
        amps[:, slot] = CHEST_GAIN * lab
        pneumonia[f"{split}_images"] = np.stack([_chest_pixels(rng, (64, 64), a) for a in amps])
        pneumonia[f"{split}_labels"] = lab[:, None]
    np.savez_compressed(root / "pneumoniamnist_64.npz", **pneumonia)


#: tree folder -> writer; the registry names (:data:`kdmed.data.DATASETS`) each folder serves
_WRITERS = {
    "chexpert": (_write_chexpert, ("chexpert",)),
    "nih": (_write_nih, ("nih",)),
    "aptos": (_write_aptos, ("aptos",)),
    "eyepacs": (_write_eyepacs, ("eyepacs",)),
    "medmnist": (_write_medmnist, ("medmnist-chest", "medmnist-retina", "medmnist-pneumonia")),
}


def write_real_trees(outdir, scale: str = "small", seed: int = 0, overwrite: bool = False) -> dict[str, Path]:
    """Write every tree under ``outdir`` at ``scale`` (a key of :data:`SCALES`); return dataset name -> root.

    The keys are the registry names of :func:`kdmed.data.open_dataset` ("chexpert", "nih",
    "aptos", "eyepacs", "medmnist-chest", "medmnist-retina"; the two MedMNIST ones share
    ``outdir/medmnist``). The same ``scale`` and ``seed`` give the same files. A tree folder
    that already exists and is not empty is refused unless ``overwrite`` (then it is
    replaced). Each dataset draws from its own generator, so trees do not depend on each other.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    sc = SCALES[scale]
    outdir = Path(outdir)
    for folder in _WRITERS:
        path = outdir / folder
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True (--force) to replace it")
            shutil.rmtree(path)
    roots: dict[str, Path] = {}
    for k, (folder, (writer, names)) in enumerate(_WRITERS.items()):
        writer(outdir / folder, sc, np.random.default_rng([seed, k]))
        roots.update({name: outdir / folder for name in names})
    return roots


def tree_size(path) -> tuple[int, int]:
    """(files, bytes) under ``path``."""
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace tree folders that already exist")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        roots = write_real_trees(args.outdir, args.scale, args.seed, overwrite=args.force)
    except FileExistsError as err:
        print(f"real_trees: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - t0
    for name, root in roots.items():
        print(f"{name}\t{root}")
    n_files, n_bytes = tree_size(args.outdir)
    print(f"real_trees: {n_files} files, {n_bytes / 1e6:.1f} MB in {elapsed:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
