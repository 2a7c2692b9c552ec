"""Golden hashes of everything ``kdmed.data`` produces: pixels, labels, ids, tables, splits, subsets, cache keys.

The hashes below were computed with the code as it stood before ``kdmed.data`` was
restructured into single-job modules; the restructuring had to leave every one of them
unchanged. A failing case names what changed (e.g. ``chest-val-B/images``).

The real-format loaders are hashed on the fixture trees of :mod:`fixtures_data`; their
cache identities are hashed with the temporary root replaced by ``<root>`` and file
modification times dropped (those change from run to run, nothing else may).

``python tests/test_data_golden.py`` prints the current values in the form of ``GOLDEN``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_data import (  # noqa: E402
    make_aptos_root,
    make_chexpert_root,
    make_eyepacs_root,
    make_medmnist_root,
    make_nih_root,
)

from kdmed.data import open_dataset, subsample  # noqa: E402
from kdmed.data.cache import cache_key, fill_image_array  # noqa: E402
from kdmed.data.subsets import split_by_patient  # noqa: E402


# ---------------------------------------------------------------------------- hashing
def _h(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype.str}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _images(ds) -> np.ndarray:
    """Every image, filled in memory (no cache entry written)."""
    shape = (len(ds), int(ds.channels), int(ds.image_size), int(ds.image_size))
    return fill_image_array(ds, np.empty(shape, dtype=np.uint8), progress=False, workers=1)


def _normalise(value, root: str):
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if k != "mtime_ns"}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, root) for v in value]
    if isinstance(value, str) and value.startswith(root):
        return "<root>" + value[len(root) :]
    return value


def _digest(items) -> str:
    """An independent rewrite of the cache identity's ``images`` digest (ordered paths or names)."""
    h = hashlib.sha256()
    for p in items:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")
    return f"{len(items)}:{h.hexdigest()[:16]}"


def _row_files(ds) -> list | None:
    """What identifies each row's image file (a path, or NIH's image name), as the loader keeps it."""
    for attr in ("_files", "_paths", "_names"):
        if hasattr(ds, attr):
            return list(getattr(ds, attr))
    return None


def _identity(ds) -> dict:
    """``ds.cache_identity()`` with the digest of absolute image paths replaced by what it digests."""
    ident = dict(ds.cache_identity())
    files = _row_files(ds)
    if "images" in ident and files is not None and ident["images"] == _digest(files):
        ident["images"] = "digest of the row files"
    return ident


def _image_paths(ds, root: Path) -> list[str]:
    """The file behind each row, relative to the dataset root."""
    if hasattr(ds, "_image_path"):
        paths = [ds._image_path(int(r)) for r in ds.source_rows]
    elif hasattr(ds, "_paths"):
        paths = list(ds._paths)
    else:  # NIH resolves image names through its folder index
        paths = [ds.images.path(nm) for nm in ds._names]
    return [str(Path(p).resolve().relative_to(root.resolve())) for p in paths]


def _dataset_hashes(ds, root: Path | None = None, pixels: bool = True) -> dict[str, str]:
    out = {
        "labels": _h(ds.labels),
        "patient_ids": _h([str(p) for p in ds.patient_ids], str(ds.patient_ids.dtype)),
        "table": _h(ds.table.to_csv(index=True), [f"{c}:{t}" for c, t in ds.table.dtypes.items()]),
        "meta": _h(list(ds.classes), ds.task, ds.split, ds.image_size, ds.channels, ds.name, ds.describe()),
        "source_rows": _h(ds.source_rows),
    }
    if pixels:
        out["images"] = _h(_images(ds))
    if root is None:
        out["identity"] = _h(ds.cache_identity())
        out["cache_key"] = cache_key(ds)
    else:
        out["identity"] = _h(_normalise(_identity(ds), str(root.resolve())))
        out["paths"] = _h(_image_paths(ds, root)) if _row_files(ds) is not None else "-"
        if hasattr(ds, "skipped"):
            out["skipped"] = str(ds.skipped)
    return out


# ---------------------------------------------------------------------------- synthetic cases
SYNTHETIC = {
    "chest-train-A": ("synthetic-chest", dict(split="train", institution="A", n=40)),
    "chest-val-B": ("synthetic-chest", dict(split="val", institution="B", n=30)),
    "chest-test-C": ("synthetic-chest", dict(split="test", institution="C", n=30)),
    "chest-train-C-seed3": ("synthetic-chest", dict(split="train", institution="C", n=25, seed=3)),
    "chest-val-C-48px": ("synthetic-chest", dict(split="val", institution="C", n=12, image_size=48)),
    "fundus-train-grade": ("synthetic-fundus", dict(split="train", n=40)),
    "fundus-val-referable": ("synthetic-fundus", dict(split="val", n=30, task="referable")),
    "fundus-test-grade-seed1": ("synthetic-fundus", dict(split="test", n=25, seed=1)),
    "fundus-train-48px": ("synthetic-fundus", dict(split="train", n=10, image_size=48)),
}


def _open_synthetic(case: str):
    name, opts = SYNTHETIC[case]
    opts = dict(opts)
    size = opts.pop("image_size", 32)
    split = opts.pop("split")
    return open_dataset(name, split=split, image_size=size, **opts)


def synthetic_hashes(case: str) -> dict[str, str]:
    ds = _open_synthetic(case)
    out = _dataset_hashes(ds)
    sub = ds.take([5, 3, 17, 3] if len(ds) > 17 else [5, 3, 1])
    out["take/images"] = _h(_images(sub))
    out["take/cache_key"] = cache_key(sub)
    out["take/labels"] = _h(sub.labels)
    return out


SUBSETS = {
    "chest-A-300": ("synthetic-chest", dict(split="train", institution="A", n=300)),
    "chest-C-val-200": ("synthetic-chest", dict(split="val", institution="C", n=200, seed=2)),
    "fundus-400": ("synthetic-fundus", dict(split="train", n=400)),
    "fundus-ref-150": ("synthetic-fundus", dict(split="test", n=150, task="referable")),
}


def subset_hashes(case: str) -> dict[str, str]:
    name, opts = SUBSETS[case]
    opts = dict(opts)
    ds = open_dataset(name, split=opts.pop("split"), image_size=32, **opts)
    out = {"labels": _h(ds.labels), "patient_ids": _h([str(p) for p in ds.patient_ids])}
    for n in (7, 50):
        for by in ("patient", "image"):
            for stratify in (True, False):
                for seed in (0, 4):
                    sub = subsample(ds, n, by=by, stratify=stratify, seed=seed)
                    out[f"subsample/{n}/{by}/{int(stratify)}/{seed}"] = _h(sub.source_rows, sub.labels)
    sub = subsample(ds, 50, seed=1)
    out["subsample/cache_key"] = cache_key(sub)
    for fr in ((0.7, 0.1, 0.2), (0.5, 0.5)):
        for seed in (0, 3):
            out[f"split_by_patient/{fr}/{seed}"] = _h(split_by_patient(ds.patient_ids, fr, seed=seed))
    return out


# ---------------------------------------------------------------------------- real-format cases
#: case -> (fixture tree, dataset, fixture options, split, dataset options); cases sharing a tree share its files
_BOTH = ("frontal", "lateral")
_OVERRIDES = {"Edema": "ones", "Atelectasis": "zeros"}
_NIH_2020 = {"header": "v2020", "layout": "split", "sex_column": "Patient Sex"}
REAL = {
    "chexpert-train": ("chexpert", "chexpert", {}, "train", {}),
    "chexpert-val": ("chexpert", "chexpert", {}, "val", {"val_fraction": 0.3}),
    "chexpert-test": ("chexpert", "chexpert", {}, "test", {"views": _BOTH}),
    "chexpert-train-ones-both": ("chexpert", "chexpert", {}, "train", {"uncertain": "ones", "views": _BOTH[::-1]}),
    "chexpert-train-ignore-overrides": (
        "chexpert",
        "chexpert",
        {},
        "train",
        {"uncertain": "ignore", "uncertain_overrides": _OVERRIDES, "val_fraction": 0.3, "split_seed": 2},
    ),
    "chexpert-big-val": ("chexpert-big", "chexpert", {"small": False, "n_patients": 12}, "val", {"val_fraction": 0.25}),
    "chexpert-labels-only": ("chexpert-noimg", "chexpert", {"images": False}, "train", {"check_files": False}),
    "nih-2017-flat-train": ("nih-2017-flat", "nih", {}, "train", {}),
    "nih-2017-flat-test": ("nih-2017-flat", "nih", {}, "test", {}),
    "nih-v2020-split-val": ("nih-v2020-split", "nih", _NIH_2020, "val", {"val_fraction": 0.3}),
    "nih-v2020-split-train-cxr8": ("nih-v2020-split", "nih", _NIH_2020, "train", {"labels": "chestxray8", "split_seed": 1}),
    "eyepacs-train": ("eyepacs", "eyepacs", {}, "train", {}),
    "eyepacs-test-referable": ("eyepacs", "eyepacs", {}, "test", {"task": "referable"}),
    "eyepacs-val-fractions": ("eyepacs", "eyepacs", {}, "val", {"split_fractions": (0.5, 0.3, 0.2), "split_seed": 5}),
    "aptos-train": ("aptos", "aptos", {}, "train", {}),
    "aptos-test-referable": ("aptos", "aptos", {}, "test", {"task": "referable"}),
    "medmnist-chest-train": ("medmnist-chest", "medmnist-chest", {}, "train", {}),
    "medmnist-chest-val-64": ("medmnist-chest", "medmnist-chest", {}, "val", {"size": 64}),
    "medmnist-retina-test": ("medmnist-retina", "medmnist-retina", {}, "test", {}),
}
_MAKERS = {
    "chexpert": make_chexpert_root,
    "nih": make_nih_root,
    "eyepacs": make_eyepacs_root,
    "aptos": make_aptos_root,
}
_IMAGE_SIZE = {"chexpert": 24, "nih": 20, "eyepacs": 24, "aptos": 20, "medmnist-chest": 32, "medmnist-retina": 28}


def _make_root(tree: str, dataset: str, kw: dict, tmp: Path) -> Path:
    folder = tmp / tree
    if dataset.startswith("medmnist"):
        flag = "chestmnist" if dataset == "medmnist-chest" else "retinamnist"
        return make_medmnist_root(folder, flag=flag)
    return _MAKERS[dataset](folder, **kw)


def real_hashes(case: str, tmp: Path, roots: dict) -> dict[str, str]:
    tree, dataset, kw, split, opts = REAL[case]
    if tree not in roots:
        roots[tree] = _make_root(tree, dataset, kw, tmp)
    root = roots[tree]
    if not dataset.startswith("medmnist"):
        opts = {"progress": False, **opts}
    ds = open_dataset(dataset, root, split, _IMAGE_SIZE[dataset], **opts)
    return _dataset_hashes(ds, root=root, pixels=opts.get("check_files", True))


def folder_hashes(tmp: Path) -> dict[str, str]:
    """FolderDataset on 8-bit grey, RGB, RGBA and palette PNGs of odd sizes (resized without cropping)."""
    from PIL import Image

    from kdmed.data.folder import FolderDataset

    rng = np.random.default_rng(0)
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    files = [("L", (40, 30)), ("RGB", (17, 33)), ("RGBA", (24, 24)), ("P", (31, 9)), ("L", (12, 50))]
    for i, (mode, wh) in enumerate(files):
        shape = (wh[1], wh[0]) if mode in ("L", "P") else (wh[1], wh[0], len(mode))
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), "L" if mode == "P" else mode)
        if mode == "P":
            img = img.convert("P")
        p = tmp / f"im{i}.png"
        img.save(p)
        paths.append(p)
    out = {}
    for channels in (1, 3):
        for size in (16, 24):
            ds = FolderDataset(paths, image_size=size, channels=channels)
            out[f"{channels}ch/{size}px/images"] = _h(_images(ds))
            out[f"{channels}ch/{size}px/meta"] = _h(
                ds.labels, [str(p) for p in ds.patient_ids], list(ds.table.columns), ds.describe()
            )
    return out


# ---------------------------------------------------------------------------- golden values
# computed before the restructuring (see the module docstring); never regenerate to make a change pass
GOLDEN: dict[str, dict[str, str]] = {
    "folder": {
        "1ch/16px/images": "40a110d02a5d6d8d7d982bfa",
        "1ch/16px/meta": "156e2a01fd440d3f5f3cc9a2",
        "1ch/24px/images": "177cf41aca1fdee31f68b08b",
        "1ch/24px/meta": "9405b57b1997a4c8c874ad50",
        "3ch/16px/images": "b7366afd3cffeefcd0c3a34c",
        "3ch/16px/meta": "156e2a01fd440d3f5f3cc9a2",
        "3ch/24px/images": "ddc86b61918066435673533a",
        "3ch/24px/meta": "9405b57b1997a4c8c874ad50",
    },
    "real/aptos-test-referable": {
        "identity": "b13afb6fcd25b6705dd44692",
        "images": "9ba494c61a8257b5bb063956",
        "labels": "46dabfaad21598c21c04f6f4",
        "meta": "f12bf03aa8f3b017b8cfd702",
        "paths": "749792e8aaf60641ed28ed32",
        "patient_ids": "358b8c7710d7f2b8bd349947",
        "skipped": "0",
        "source_rows": "e29ce7e6a4102decdf47dd8c",
        "table": "73ba5a768a9feb02bfdebd8a",
    },
    "real/aptos-train": {
        "identity": "38242d2a7674f39dd8f9d6ba",
        "images": "58e8e5156bce8df616f1a135",
        "labels": "f09c2e9b7e6fc6cf1e6b213e",
        "meta": "509edaaadfec3dd8f92c096d",
        "paths": "740649912257d090ddc4a865",
        "patient_ids": "7b7355ca1a727032f9e99fdd",
        "skipped": "0",
        "source_rows": "fd4f2cb25f4daff2e493b3ad",
        "table": "8ce02d27927351f1e0327110",
    },
    "real/chexpert-big-val": {
        "identity": "a63bea086ac4ae63c2d12693",
        "images": "5bb73d9a538281b5c2cbaa11",
        "labels": "8a3e7878a5ebf815450dc47f",
        "meta": "d4ab62e79cf422bb640b7190",
        "paths": "ac67fa99bad06e3d6afe2bb1",
        "patient_ids": "834511acd8d6ee9c3cd0839b",
        "skipped": "0",
        "source_rows": "0a6aeb64cde2b0f40bae147e",
        "table": "bd6377617ac9379541d53ff7",
    },
    "real/chexpert-labels-only": {
        "identity": "7874e4a7312b9255cb12e926",
        "labels": "f0b5e558ddba963bb78108f9",
        "meta": "791890308ec83d7e8d1cfa87",
        "paths": "014a958dc7ee91980c00faec",
        "patient_ids": "fc1fe61c4e1a1e4785ffc0be",
        "skipped": "0",
        "source_rows": "c9a4746afcc24ede53b62e78",
        "table": "5dbeb99ee9c07d88d46fc1d0",
    },
    "real/chexpert-test": {
        "identity": "7c852e08f8e6c7681e8f5987",
        "images": "b3319245287e30f8480660bc",
        "labels": "a60b518b119b4983c7d4d6cd",
        "meta": "6a81a4878a5b0c6bfe216515",
        "paths": "27bcd521b23a23c80717c0f7",
        "patient_ids": "dc2c3e4b7f872218ac49f5ad",
        "skipped": "0",
        "source_rows": "a2dea76933c58a42d15da042",
        "table": "f00ff78ce58d81972422671f",
    },
    "real/chexpert-train": {
        "identity": "7874e4a7312b9255cb12e926",
        "images": "91f5f61324f0a2be1e11f7e5",
        "labels": "f0b5e558ddba963bb78108f9",
        "meta": "791890308ec83d7e8d1cfa87",
        "paths": "014a958dc7ee91980c00faec",
        "patient_ids": "fc1fe61c4e1a1e4785ffc0be",
        "skipped": "0",
        "source_rows": "c9a4746afcc24ede53b62e78",
        "table": "5dbeb99ee9c07d88d46fc1d0",
    },
    "real/chexpert-train-ignore-overrides": {
        "identity": "b9204140406549f035a89410",
        "images": "4365d960e45b4f2b5f1ad588",
        "labels": "16a73582bad17f28472441dc",
        "meta": "bacaf21c8c6532413af0ada7",
        "paths": "9715f349de60f52aef3a29de",
        "patient_ids": "85bbe654cff3a54203d1693c",
        "skipped": "0",
        "source_rows": "0724420812a516e0adeb811e",
        "table": "36df63a75d9c74b165f2561e",
    },
    "real/chexpert-train-ones-both": {
        "identity": "434fa9cde38a1d05366681da",
        "images": "194f600e7a0294f3fc8caa0c",
        "labels": "4e4eae84428abc6c4282faf3",
        "meta": "0c04f550828b19e31fec5f6a",
        "paths": "c47a7ca96b750907f8964e88",
        "patient_ids": "90f6a89624c636e878a6123b",
        "skipped": "0",
        "source_rows": "006cc5f78c68bcdf5ef61312",
        "table": "d48f82fbddc574696b25cf16",
    },
    "real/chexpert-val": {
        "identity": "4fcd15e8d28e7df84487834d",
        "images": "00e2645c4e1bd4bae327a77d",
        "labels": "0210705a13fffc3021e1ede8",
        "meta": "63f2019f3ed42a3d03ec9637",
        "paths": "6ba1cfec40aca2b7bbf5e6e6",
        "patient_ids": "82a6552d923129f390e01018",
        "skipped": "0",
        "source_rows": "a2dea76933c58a42d15da042",
        "table": "fc8acfa3798ff129cf20f897",
    },
    "real/eyepacs-test-referable": {
        "identity": "1400504567d9092fbeb0e504",
        "images": "400796d3503dad2e0a97ce26",
        "labels": "ea9b525de01e0a36cb8eb4b6",
        "meta": "3b0b7162e6f3c587bbc78948",
        "paths": "027610b4adcf74f1ba41dbcc",
        "patient_ids": "ad47387b849e009d3100126a",
        "skipped": "0",
        "source_rows": "a2dea76933c58a42d15da042",
        "table": "a243d53947ecc77fbbbd7e23",
    },
    "real/eyepacs-train": {
        "identity": "555e06f135fde8f7a28f6119",
        "images": "b8d5500e09b7bd6764b01d3c",
        "labels": "7cabb4384872243d148f3db1",
        "meta": "d6be55af57a925d7d16a6e31",
        "paths": "e3e3d1b14e80012dca395b8c",
        "patient_ids": "aa03118edf76155516bf4c1b",
        "skipped": "0",
        "source_rows": "d25f832848428852f2df69b6",
        "table": "7a0b9e86b098e3b51928c8ec",
    },
    "real/eyepacs-val-fractions": {
        "identity": "d9b10fe3883cb3fbbaa06146",
        "images": "9d844bc4f136f16b263160e0",
        "labels": "1955eb887713b2e0c8bc7872",
        "meta": "a5288e5ff80ffe35322955d7",
        "paths": "bc8f6915205facf403b1141f",
        "patient_ids": "ce6364750a6aa6b560e12d8d",
        "skipped": "0",
        "source_rows": "2d43c00537aa71c13b205d20",
        "table": "462c197c72bbbbd815bfe881",
    },
    "real/medmnist-chest-train": {
        "identity": "7c7dedca8a58918bc7bcfe0a",
        "images": "45de3fa2d9ba72d18932c08f",
        "labels": "577344c57300c7538c80ac7f",
        "meta": "59c80fdf639ee0dcc06cf3d8",
        "paths": "-",
        "patient_ids": "1f74e01018886e6fe604704d",
        "source_rows": "fd4f2cb25f4daff2e493b3ad",
        "table": "3ceab66eaeba0ddabd480b96",
    },
    "real/medmnist-chest-val-64": {
        "identity": "16a6c24eb4f948ad1f063f79",
        "images": "23a7484b79f39bbcb44437a0",
        "labels": "92ae667f10c7d35a954077e7",
        "meta": "edd26bc72675826c27b12f75",
        "paths": "-",
        "patient_ids": "75f560fa8daf591d2de32e60",
        "source_rows": "ea3855a04000ed16b15cd0e7",
        "table": "8e8ab74ad8c2fad044880f2d",
    },
    "real/medmnist-retina-test": {
        "identity": "391653ab8d3d9281eaa13cf3",
        "images": "d95368b7d9e813b6bb3c1ba4",
        "labels": "78b35192f4f910a1aa4be863",
        "meta": "0de048fa1ef4a3c657da6e7a",
        "paths": "-",
        "patient_ids": "24206c8dfc84f194e2c3c816",
        "source_rows": "a2dea76933c58a42d15da042",
        "table": "a4e06e7162141fada5be22b6",
    },
    "real/nih-2017-flat-test": {
        "identity": "2937e47e45d9396d2dc41e14",
        "images": "18d6ce644d5498c6dec7f480",
        "labels": "755cb139335f09980ee92768",
        "meta": "2b10f4ba0e132eba85515189",
        "paths": "9dbb3f9bfd07eb8e2dcbf370",
        "patient_ids": "12d5c4fabcaaa6709f9b5a06",
        "skipped": "0",
        "source_rows": "0a6aeb64cde2b0f40bae147e",
        "table": "4cc39d83f031040335f2c2b9",
    },
    "real/nih-2017-flat-train": {
        "identity": "cf30dc56a5fd54c0082ab8b1",
        "images": "71b748d07effbadc43d92da6",
        "labels": "59244cdc703ab2a5f404c90e",
        "meta": "9e239ae76a8c22240f7b4267",
        "paths": "2f4c64ba72c7efd2dd163684",
        "patient_ids": "7c1b8eadbd699ce5f1753350",
        "skipped": "0",
        "source_rows": "462506e40b7d056b8cc8d896",
        "table": "e5ab0b65e62133f0ec5f7f90",
    },
    "real/nih-v2020-split-train-cxr8": {
        "identity": "c3ac9913d3e145689f3ccd73",
        "images": "cff8249c455e99eb6917b603",
        "labels": "5218a6c7edd4ce99f021bb87",
        "meta": "57d60ffecf1732e6abcbdfdd",
        "paths": "040a16971d50d67b20533a1f",
        "patient_ids": "d1591fdd4e21bb98c016955f",
        "skipped": "0",
        "source_rows": "462506e40b7d056b8cc8d896",
        "table": "02bc09f34049b8efeb7e8d9a",
    },
    "real/nih-v2020-split-val": {
        "identity": "1a7eee7bcf3e2509d75b5e68",
        "images": "288139700776462b1f170b10",
        "labels": "e6d33a58c0c689d05f04efc2",
        "meta": "f5c4d7faf0223433142fd5a1",
        "paths": "0b1d2aea1bb4f30dbb13d2cf",
        "patient_ids": "24b3c031ab7d7c191118db4b",
        "skipped": "0",
        "source_rows": "2d43c00537aa71c13b205d20",
        "table": "b5563bc5b0c93b47d37c45b1",
    },
    "subsets/chest-A-300": {
        "labels": "073c3f944192aa90f3d5c790",
        "patient_ids": "f2b68c19def033cb13a69129",
        "split_by_patient/(0.5, 0.5)/0": "75ee219bdc468a35b220de94",
        "split_by_patient/(0.5, 0.5)/3": "112044758a428863da790eb5",
        "split_by_patient/(0.7, 0.1, 0.2)/0": "a5cf7602fd183b3973afc026",
        "split_by_patient/(0.7, 0.1, 0.2)/3": "e9173074f0d37e576319fc28",
        "subsample/50/image/0/0": "545aee017d75d42680eb6a33",
        "subsample/50/image/0/4": "2578fad83ee55e564d8de348",
        "subsample/50/image/1/0": "391e7583813fb5ec9ed920dd",
        "subsample/50/image/1/4": "a31e6e8a4c83561899827389",
        "subsample/50/patient/0/0": "1cdf7810525aaab0eab8f49b",
        "subsample/50/patient/0/4": "32bcc6531638cda38acc8db0",
        "subsample/50/patient/1/0": "80f35b0c9419c9a45a55d7ac",
        "subsample/50/patient/1/4": "0707b4d47b44afbf32f785b8",
        "subsample/7/image/0/0": "5d390096d6dd6a4a4071aa6b",
        "subsample/7/image/0/4": "90d7c719731279ca1c97fe15",
        "subsample/7/image/1/0": "6b94324913daa0f442cb22c7",
        "subsample/7/image/1/4": "10106dca7aff1394b09865fa",
        "subsample/7/patient/0/0": "ef47229bd7dbd66b2a592e73",
        "subsample/7/patient/0/4": "209d1792ddfaec614ff7a9ed",
        "subsample/7/patient/1/0": "73fc33cd9fad7211e58ec3f2",
        "subsample/7/patient/1/4": "f02c4f67d4c4ddfc28bf193c",
        "subsample/cache_key": "7f282ed03847937c",
    },
    "subsets/chest-C-val-200": {
        "labels": "706f0f08f3400c4c7696b095",
        "patient_ids": "4531d96f231e3bdbfa71216a",
        "split_by_patient/(0.5, 0.5)/0": "24449b027488fa389db7b50d",
        "split_by_patient/(0.5, 0.5)/3": "a0f564ef1dacf11c95614921",
        "split_by_patient/(0.7, 0.1, 0.2)/0": "99aea3f2e3861a0cb34a514a",
        "split_by_patient/(0.7, 0.1, 0.2)/3": "97cfe9a9e423e1b63a92e823",
        "subsample/50/image/0/0": "70bdfadc004eb24e510ab670",
        "subsample/50/image/0/4": "6bef2f544ccecc00ab7d3647",
        "subsample/50/image/1/0": "03ec2c5eea2bb5ecb573adc4",
        "subsample/50/image/1/4": "673258af3c2b1cc361d85aa5",
        "subsample/50/patient/0/0": "0ff44d53203d52adfa8ce3c3",
        "subsample/50/patient/0/4": "0de3b1b5375ce216bafd90c4",
        "subsample/50/patient/1/0": "3e7e39574061bfc4cd428450",
        "subsample/50/patient/1/4": "e1c3ba1022f1e95fce4374f1",
        "subsample/7/image/0/0": "00612a636311197bac6e2de1",
        "subsample/7/image/0/4": "4ef54bcedbdd4e5915913c91",
        "subsample/7/image/1/0": "d3ea3349dd9deddbdf9165f7",
        "subsample/7/image/1/4": "9513890fb64cdf88218ed5fc",
        "subsample/7/patient/0/0": "2874e63a6056bb4d75100c7c",
        "subsample/7/patient/0/4": "8c5f30180a2f92472a4c9b72",
        "subsample/7/patient/1/0": "624904c1f98254daf6526271",
        "subsample/7/patient/1/4": "a96f081faeb68144e8e537f1",
        "subsample/cache_key": "f48604ddcafee9fb",
    },
    "subsets/fundus-400": {
        "labels": "5500dd26ab72cd491d356873",
        "patient_ids": "1fe419374a08157154a47dcc",
        "split_by_patient/(0.5, 0.5)/0": "69177a47dc2bff712176f9bd",
        "split_by_patient/(0.5, 0.5)/3": "174267f72e895472963c3e2e",
        "split_by_patient/(0.7, 0.1, 0.2)/0": "2fd8a148523c12825e4b9fe7",
        "split_by_patient/(0.7, 0.1, 0.2)/3": "e9626239e1f45bb6de63f2ff",
        "subsample/50/image/0/0": "6996d604d228998341de9f23",
        "subsample/50/image/0/4": "ea748f777ac3ddab5ab65df0",
        "subsample/50/image/1/0": "6fd7cd3b1bc41232af7b3a9a",
        "subsample/50/image/1/4": "6e36acc54fff01f90956aaef",
        "subsample/50/patient/0/0": "729ec866657461ee86053e06",
        "subsample/50/patient/0/4": "4df806e388da459fa1c1a2be",
        "subsample/50/patient/1/0": "ba55fd9c294429944d8cdc92",
        "subsample/50/patient/1/4": "b95a814f5ea9e4cb2ad0a149",
        "subsample/7/image/0/0": "26946618aa2dcb674f3f76a4",
        "subsample/7/image/0/4": "d88ce8018d97fb94261374b7",
        "subsample/7/image/1/0": "4244265ccae139ecb2ca193a",
        "subsample/7/image/1/4": "1e3f5271782ceb7767afbb49",
        "subsample/7/patient/0/0": "b769ae9e40d3ca0fbeac7d0e",
        "subsample/7/patient/0/4": "ebad3eb07dad3d9942825251",
        "subsample/7/patient/1/0": "7f5834e6c0051de5d1160c52",
        "subsample/7/patient/1/4": "0a1c2ae17d64036a38a95d92",
        "subsample/cache_key": "d848f241449b8b57",
    },
    "subsets/fundus-ref-150": {
        "labels": "18b8e97d46d767ce7a26e525",
        "patient_ids": "3906b4dab9911762133df886",
        "split_by_patient/(0.5, 0.5)/0": "c3b75deb8ea3e345c5c4d55c",
        "split_by_patient/(0.5, 0.5)/3": "c202078723df364d9b80ccec",
        "split_by_patient/(0.7, 0.1, 0.2)/0": "8cee46f62eeb890872713838",
        "split_by_patient/(0.7, 0.1, 0.2)/3": "7c07995699e276ed0325c21d",
        "subsample/50/image/0/0": "66171f3245328842323624fc",
        "subsample/50/image/0/4": "49c7cceb9240713fd13a7f54",
        "subsample/50/image/1/0": "e6d0269825cf30537f2d60eb",
        "subsample/50/image/1/4": "a6a3a50cfc48524f66214f99",
        "subsample/50/patient/0/0": "ac5621b71b72cd34bfd711fd",
        "subsample/50/patient/0/4": "201aa17b5b0a1440e8a1ce91",
        "subsample/50/patient/1/0": "f5c458f5700468867e2d8e0d",
        "subsample/50/patient/1/4": "3c582acb0885cde79a0efeea",
        "subsample/7/image/0/0": "c97fb2a3980d03fefd27f1a7",
        "subsample/7/image/0/4": "bce81b1260f8ea9392375c48",
        "subsample/7/image/1/0": "41a0e8b8432f384a2df61524",
        "subsample/7/image/1/4": "ab39c65bf9624ac65aa2f854",
        "subsample/7/patient/0/0": "ff63f2022357cd0e47a431b6",
        "subsample/7/patient/0/4": "689d711dc57bcd1f59a5e245",
        "subsample/7/patient/1/0": "c3f53316b4e9ebe1ae92bd80",
        "subsample/7/patient/1/4": "60ee2e334f3722b765076156",
        "subsample/cache_key": "fe905f5205b12f00",
    },
    "synthetic/chest-test-C": {
        "cache_key": "2bbcb56a1dc422c0",
        "identity": "a6db6fe93c129ad5a2cf40ac",
        "images": "7ff13eaece479cc3e80c929d",
        "labels": "4aa92d0b8a6b9348fd600ae3",
        "meta": "4a4a01a3be85d4e1ffec8de1",
        "patient_ids": "e40a37862212fabd8cd2a259",
        "source_rows": "d1d350a8ffe2aadb6064dc5c",
        "table": "eb1b3232f7ab002ca0a8d678",
        "take/cache_key": "e4d241b5d0c186b7",
        "take/images": "690dc42e56ac3baf40b2c131",
        "take/labels": "63a99738fa2f2c54a9fc94d3",
    },
    "synthetic/chest-train-A": {
        "cache_key": "493663fd8319259e",
        "identity": "04bbe919abc3702cced98ae8",
        "images": "fdfa45720b579b3c0dbfed27",
        "labels": "eda5e4b2a6adcfaa0b58f151",
        "meta": "d90aaf41008ed36d07e4a386",
        "patient_ids": "8f0a4a9a4a5d6c3f7b922175",
        "source_rows": "1c473dd4a5d505106c34ccd2",
        "table": "d54dfbacec9b530c92f02402",
        "take/cache_key": "ba8762f75b8c490b",
        "take/images": "34921ea6149e390171011873",
        "take/labels": "1709d17fd6e819863ac0227a",
    },
    "synthetic/chest-train-C-seed3": {
        "cache_key": "9b47e99d095be992",
        "identity": "77addc4df80e2fd987cbaebf",
        "images": "bb6caa6a16ca932fc4c32c63",
        "labels": "620418dd46d8b57bcc0ed709",
        "meta": "15a1f92a1af720f325a32d7b",
        "patient_ids": "fc51a24e0f8c8bb8bda8c480",
        "source_rows": "286a139320074bc06802f94b",
        "table": "a6cd8464a0633c862addebb7",
        "take/cache_key": "20e8dba99ef4525b",
        "take/images": "9d2d3af7fb7e17bffad192bb",
        "take/labels": "ec2fe63d85d0f19e14eefd69",
    },
    "synthetic/chest-val-B": {
        "cache_key": "397f206308ce2e9f",
        "identity": "857fbc553376a4dd18672b85",
        "images": "dc477a516e38bbb3e926c5f9",
        "labels": "041c204ec1eecd91f3a81253",
        "meta": "f9d47fb658ce6809ab5b91bc",
        "patient_ids": "bbe40218563f975239068a27",
        "source_rows": "d1d350a8ffe2aadb6064dc5c",
        "table": "0d26ada90b688acb4317e759",
        "take/cache_key": "d7134d3bb3515001",
        "take/images": "59f8b610bb220c4ed0e46f8e",
        "take/labels": "79e4f44cf05216e2bd4041b2",
    },
    "synthetic/chest-val-C-48px": {
        "cache_key": "47dd468de3ea3548",
        "identity": "efd01559169d9b4516865ecd",
        "images": "6d9e0e0221ff81796253ed8b",
        "labels": "49329e8b6b50212c6a18e7b0",
        "meta": "53a1012cd4631718d7e75aab",
        "patient_ids": "e5b8e53b7b65a8ce26c06175",
        "source_rows": "462506e40b7d056b8cc8d896",
        "table": "f62a32c1620edf093a0bb139",
        "take/cache_key": "f0779c9985f11deb",
        "take/images": "8f8cc91d92335b171ac7f392",
        "take/labels": "5bc5c29605eeca469cb815c6",
    },
    "synthetic/fundus-test-grade-seed1": {
        "cache_key": "13e87a543a3d2c33",
        "identity": "82d32cd7ddd2ae415741abdd",
        "images": "15403d047dd5ebf3770a8573",
        "labels": "011e04217ecd09ec422658e6",
        "meta": "62e9a6c1ce38923b25b623d3",
        "patient_ids": "3df834aa26ae868bffb9b46b",
        "source_rows": "286a139320074bc06802f94b",
        "table": "74cdf33b54fbca7be9456aae",
        "take/cache_key": "01607878015f1538",
        "take/images": "a95786a9c405752c9c9d50ab",
        "take/labels": "be7bb654de9a3a3aa6660ccd",
    },
    "synthetic/fundus-train-48px": {
        "cache_key": "66bbc576c7e8e4df",
        "identity": "5d6ec941313afd7eeea59fd5",
        "images": "0f65c22b5f5e8cf3f4a6e77a",
        "labels": "abfd7c3230e6023af846588d",
        "meta": "e3bfe691bd15aec536b1a2f7",
        "patient_ids": "8636d71f69a60a545b04970a",
        "source_rows": "29198b1cf65a0cc480943984",
        "table": "e0d69452fd51fd73c67a3899",
        "take/cache_key": "af258960a8d0d074",
        "take/images": "e19bd04750d5fe3d1b6f4975",
        "take/labels": "801ac65c6005c9c78aba503e",
    },
    "synthetic/fundus-train-grade": {
        "cache_key": "cf598f1081bcb2b2",
        "identity": "1dbbed1900b9a9df0d598bf3",
        "images": "04a6c83e70a8ce1e61b55b36",
        "labels": "8fc71c10c7abaa8d69721d7b",
        "meta": "b8334d2109b603e022cc07c7",
        "patient_ids": "1238004554d9b3128ac8e961",
        "source_rows": "1c473dd4a5d505106c34ccd2",
        "table": "04aed080657fd745f55f384f",
        "take/cache_key": "49c318c9d87099f9",
        "take/images": "8ee06ec92343c58d9779ecf6",
        "take/labels": "be7bb654de9a3a3aa6660ccd",
    },
    "synthetic/fundus-val-referable": {
        "cache_key": "f31237de749e9d52",
        "identity": "caabda1988075c787952c72b",
        "images": "e9418e6439e05fdba0d94044",
        "labels": "17718ba3bb7c775fa60e2a80",
        "meta": "bf3444d6df7dd8e131398e09",
        "patient_ids": "51fe2515f7f8fa91bf988531",
        "source_rows": "d1d350a8ffe2aadb6064dc5c",
        "table": "79e5052bcdb381b788ed54df",
        "take/cache_key": "b072935176965752",
        "take/images": "02ee9c0a3691cf5ea13d0a36",
        "take/labels": "3fe104221cef46550e7e5110",
    },
}


def _compare(case: str, got: dict[str, str]) -> None:
    want = GOLDEN[case]
    changed = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    assert not changed, f"{case}: changed {[f'{case}/{k}' for k in changed]}"


@pytest.fixture(scope="module")
def real_roots():
    return {}


@pytest.mark.parametrize("case", sorted(SYNTHETIC))
def test_synthetic_datasets_are_unchanged(case):
    _compare(f"synthetic/{case}", synthetic_hashes(case))


@pytest.mark.parametrize("case", sorted(SUBSETS))
def test_subsets_and_splits_are_unchanged(case):
    _compare(f"subsets/{case}", subset_hashes(case))


@pytest.mark.parametrize("case", sorted(REAL))
def test_real_format_loaders_are_unchanged(case, tmp_path_factory, real_roots):
    tmp = real_roots.setdefault("_tmp", tmp_path_factory.mktemp("golden"))
    _compare(f"real/{case}", real_hashes(case, tmp, real_roots))


def test_folder_dataset_is_unchanged(tmp_path):
    _compare("folder", folder_hashes(tmp_path / "img"))


def current() -> dict[str, dict[str, str]]:
    import tempfile

    out = {}
    for case in sorted(SYNTHETIC):
        out[f"synthetic/{case}"] = synthetic_hashes(case)
    for case in sorted(SUBSETS):
        out[f"subsets/{case}"] = subset_hashes(case)
    with tempfile.TemporaryDirectory() as d:
        roots: dict = {}
        for case in sorted(REAL):
            out[f"real/{case}"] = real_hashes(case, Path(d), roots)
        out["folder"] = folder_hashes(Path(d) / "img")
    return out


if __name__ == "__main__":
    import pprint

    pprint.pprint(current(), width=120, sort_dicts=True)
