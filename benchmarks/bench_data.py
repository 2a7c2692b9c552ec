"""Data benchmarks: synthetic rendering speed, image cache vs decoding, difficulty calibration.

Run (2 CPU cores, about 2-3 minutes)::

    .venv/bin/python benchmarks/bench_data.py                 # everything
    .venv/bin/python benchmarks/bench_data.py --only cache    # one part
    .venv/bin/python benchmarks/bench_data.py --no-write      # print only

Results go to ``benchmarks/results/data-cpu.json`` (the layout of ``benchmarks/common.py``).

Parts:

* ``generation``: images/s of ``image_array()`` for the synthetic chest and fundus
  sets at 64 px (target >= 2,000 images/s on 2 cores).
* ``cache``: 500 realistic 512 x 512 grey files (half PNG, half JPEG) decoded and
  resized to 224 px, versus random-order batches of 32 read from the image cache
  memmap into a torch tensor (targets: >= 2,000 images/s and >= 5x decoding).
* ``calibration``: a tiny CNN (4 conv layers, Adam 1e-3) trained on institution C
  with 300 vs 5,000 images and on institution B with 5,000 images, macro AUC on
  a C test set. Targets: large >= small + 0.08, 0.6 < small < 0.9, and
  0.5 << B-on-C < C-on-C. ``tests/test_data_synthetic.py`` runs a reduced version.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kdmed.data.cache import cached_image_array, fill_image_array
from kdmed.data.folder import FolderDataset
from kdmed.data.subsets import subsample
from kdmed.data.synthetic import SyntheticChest, SyntheticFundus
from kdmed.utils import atomic_path


# ---------------------------------------------------------------------------- generation
def bench_generation(image_size: int = 64, n: int = 4000, workers: int = 2) -> dict:
    """Images/s of rendering whole synthetic splits with ``image_array`` (in memory)."""
    out = {}
    for name, ds in (
        ("chest", SyntheticChest(split="train", image_size=image_size, institution="C", n=n)),
        ("fundus", SyntheticFundus(split="train", image_size=image_size, n=n)),
    ):
        ds.take(np.arange(16)).image_array(progress=False)  # warm-up (label table, allocations)
        for w in sorted({1, workers}):
            t0 = time.perf_counter()
            fill_image_array(ds, np.empty((len(ds), ds.channels, image_size, image_size), np.uint8), progress=False, workers=w)
            out[f"{name}_{image_size}px_workers{w}_img_per_s"] = round(n / (time.perf_counter() - t0), 1)
    return out


# ---------------------------------------------------------------------------- cache
def write_source_files(folder: Path, n: int = 500, size: int = 512) -> list[Path]:
    """``n`` grey chest-like files of ``size`` px (half PNG, half JPEG q90), written atomically."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    small = SyntheticChest(split="test", image_size=128, n=n).image_array(progress=False)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        im = Image.fromarray(small[i, 0]).resize((size, size), Image.Resampling.BICUBIC)
        arr = np.clip(np.asarray(im, dtype=np.int16) + rng.integers(-4, 5, (size, size)), 0, 255).astype(np.uint8)
        path = folder / (f"img{i:04d}.png" if i % 2 == 0 else f"img{i:04d}.jpg")
        with atomic_path(path) as tmp:
            Image.fromarray(arr).save(tmp, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)
        paths.append(path)
    return paths


def bench_cache(n_files: int = 500, source_size: int = 512, image_size: int = 224, batch: int = 32, workers: int = 2) -> dict:
    """Decode+resize of files vs random batch reads from the cache memmap (images/s)."""
    import torch

    with tempfile.TemporaryDirectory(prefix="kdmed-bench-") as tmp:
        tmp = Path(tmp)
        paths = write_source_files(tmp / "files", n_files, source_size)
        ds = FolderDataset(paths, image_size=image_size)
        res = {"files": n_files, "file_size_px": source_size, "image_size": image_size,
               "mean_file_kb": round(float(np.mean([p.stat().st_size for p in paths])) / 1024, 1)}
        for w in sorted({1, workers}):
            t0 = time.perf_counter()
            fill_image_array(ds, np.empty((len(ds), 1, image_size, image_size), np.uint8), progress=False, workers=w)
            res[f"decode_workers{w}_img_per_s"] = round(n_files / (time.perf_counter() - t0), 1)
        t0 = time.perf_counter()
        arr = cached_image_array(ds, cache_dir=tmp / "cache", progress=False, workers=workers)
        res["cache_build_s"] = round(time.perf_counter() - t0, 2)
        rng = np.random.default_rng(0)
        reads, t0 = 0, time.perf_counter()
        for _ in range(5):  # five epochs of random-order batches
            order = rng.permutation(len(arr))
            for i in range(0, len(order), batch):
                xb = torch.from_numpy(arr[np.sort(order[i : i + batch])])
                reads += xb.shape[0]
        res["cache_read_img_per_s"] = round(reads / (time.perf_counter() - t0), 1)
        best_decode = max(v for k, v in res.items() if k.startswith("decode_"))
        res["cache_speedup_vs_best_decode"] = round(res["cache_read_img_per_s"] / best_decode, 1)
        del arr
    return res


# ---------------------------------------------------------------------------- calibration
def tiny_cnn(in_channels: int, n_classes: int):
    """4 conv blocks (16-32-64-64), global average pooling, a linear head."""
    from torch import nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    return nn.Sequential(
        block(in_channels, 16), nn.MaxPool2d(2),
        block(16, 32), nn.MaxPool2d(2),
        block(32, 64), nn.MaxPool2d(2),
        block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, n_classes),
    )  # fmt: skip


def train_tiny_cnn(x, y, epochs: int, seed: int = 0, batch_size: int = 64, lr: float = 1e-3):
    """Train :func:`tiny_cnn` with BCE on uint8 images ``x`` ``[N, C, S, S]`` and labels ``y`` ``[N, K]``."""
    import torch

    torch.manual_seed(seed)
    model = tiny_cnn(x.shape[1], y.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            b = perm[i : i + batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[b].float() / 255.0 - 0.5), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def macro_auc(model, x, y) -> tuple[float, list[float | None]]:
    """Mean ROC AUC (sklearn) over the classes with both values in ``y``; per-class AUCs (None if undefined)."""
    import torch
    from sklearn.metrics import roc_auc_score

    model.eval()
    with torch.no_grad():
        p = torch.cat([model(x[i : i + 512].float() / 255.0 - 0.5) for i in range(0, len(x), 512)]).numpy()
    y = y.numpy()
    per = [float(roc_auc_score(y[:, c], p[:, c])) if 0 < y[:, c].sum() < len(y) else None for c in range(y.shape[1])]
    return float(np.mean([a for a in per if a is not None])), per


def calibration(
    image_size: int = 64,
    n_small: int = 300,
    n_large: int = 5000,
    n_test: int = 3000,
    epochs_small: int = 20,
    epochs_large: int = 6,
    seed: int = 0,
    threads: int = 2,
) -> dict:
    """Macro AUC on a C test set of tiny CNNs trained on C (small and large) and on B (large)."""
    import torch

    torch.set_num_threads(threads)

    def load(ds):
        return torch.from_numpy(np.asarray(ds.image_array(progress=False))), torch.from_numpy(ds.labels)

    t0 = time.perf_counter()
    test = SyntheticChest(split="test", image_size=image_size, institution="C", n=n_test, seed=seed)
    large = SyntheticChest(split="train", image_size=image_size, institution="C", n=n_large, seed=seed)
    source = SyntheticChest(split="train", image_size=image_size, institution="B", n=n_large, seed=seed)
    # the small set is the book's kind of subset: whole patients, stratified, drawn from the large one
    small = subsample(large, n_small, seed=seed)
    x_test, y_test = load(test)
    runs = {
        "C_small": (*load(small), epochs_small),
        "C_large": (*load(large), epochs_large),
        "B_large_on_C": (*load(source), epochs_large),
    }
    classes = test.classes
    res = {"image_size": image_size, "n_small": n_small, "n_large": n_large, "n_test": n_test,
           "epochs_small": epochs_small, "epochs_large": epochs_large, "classes": classes}
    for name, (x, y, ep) in runs.items():
        model = train_tiny_cnn(x, y, ep, seed=seed)
        res[name], res[f"{name}_per_class"] = macro_auc(model, x_test, y_test)
    res["gain_large_minus_small"] = res["C_large"] - res["C_small"]
    res["gap_C_minus_B"] = res["C_large"] - res["B_large_on_C"]
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


# ---------------------------------------------------------------------------- main
def table_rows(results: dict) -> list[dict]:
    """One row per measurement, for ``benchmarks/results/data-cpu.json``."""
    rows = []
    for key, value in results.get("generation", {}).items():
        name, size, workers = key.split("_")[:3]
        rows.append({"part": "generation", "what": f"synthetic {name} {size}", "workers": int(workers[7:]),
                     "images_per_s": value})
    cache = results.get("cache", {})
    for key, value in cache.items():
        if key.startswith("decode_workers"):
            rows.append({"part": "cache", "what": f"decode {cache['file_size_px']} px files -> {cache['image_size']} px",
                         "workers": int(key.split("_")[1][7:]), "images_per_s": value})
    if "cache_read_img_per_s" in cache:
        rows.append({"part": "cache", "what": f"memmap batches of 32, {cache['image_size']} px", "workers": 1,
                     "images_per_s": cache["cache_read_img_per_s"]})
    cal = results.get("calibration", {})
    for run, n in (("C_small", cal.get("n_small")), ("C_large", cal.get("n_large")), ("B_large_on_C", cal.get("n_large"))):
        if run in cal:
            rows.append({"part": "calibration", "what": run, "n_train": n, "macro_auc": round(cal[run], 4)})
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("generation", "cache", "calibration"), action="append")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic world and of training (calibration)")
    ap.add_argument("--results-dir", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="where data-cpu.json goes (the layout of benchmarks/common.py)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    parts = args.only or ["generation", "cache", "calibration"]
    results: dict = {}
    t0 = time.perf_counter()
    if "generation" in parts:
        results["generation"] = bench_generation(workers=args.workers)
        print("generation", json.dumps(results["generation"]), flush=True)
    if "cache" in parts:
        results["cache"] = bench_cache(workers=args.workers)
        print("cache", json.dumps(results["cache"]), flush=True)
    if "calibration" in parts:
        cal = calibration(seed=args.seed, threads=args.workers)
        results["calibration"] = cal
        print("calibration", json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                         for k, v in cal.items() if not k.endswith("per_class") and k != "classes"}))
        print(f"  {'class':28s} C_small C_large B_on_C")
        for c, name in enumerate(cal["classes"]):
            row = [cal[f"{r}_per_class"][c] for r in ("C_small", "C_large", "B_large_on_C")]
            print(f"  {name:28s} " + "  ".join("  -  " if a is None else f"{a:.3f}" for a in row))
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    print("total seconds", results["total_seconds"])
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import (
            write_results,  # the shared layout of benchmarks/results/*.json
        )

        params = {"parts": parts, "workers": args.workers, "seed": args.seed}
        path = write_results("data", "cpu", table_rows(results), params, args.results_dir, **results)
        print("wrote", path)
    return results


if __name__ == "__main__":
    main()
