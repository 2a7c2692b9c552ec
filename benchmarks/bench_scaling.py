"""Cost of one run as the training subset grows: is fit time proportional to n?

Each size ``n`` is one :func:`kdmed.runner.run_one` of a ``scratch`` student on
synthetic institution-C chest X-rays (``train_n = n`` drawn by patient from one
pool, augmentation on, a fixed number of epochs: ``patience`` exceeds
``epochs``, so nothing stops early) into a fresh results store. The validation
and test subsets have a fixed size, so only the training part grows.

Each size runs ``--repeats`` times (sizes taking turns) and the fastest run is
reported. Reported per size: the training seconds (epochs only), the whole run (data,
training, per-epoch validation, test evaluation, files), and the training
seconds per image per epoch, which should stay flat; the log-log slope of
training time vs ``n`` should be about 1. A small warm-up run (not in the table)
goes first so one-off start-up costs do not land on the smallest ``n``.

Usage::

    python benchmarks/bench_scaling.py                # CPU: small_cnn 64 px, n up to 5000, 3 epochs, 3 repeats
    python benchmarks/bench_scaling.py --device cuda  # n up to 50,000 (same model and size)
    python benchmarks/bench_scaling.py --device cuda --arch densenet121 --image-size 224

Writes ``benchmarks/results/scaling-<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
from common import add_common_args, format_table, machine_info, setup, write_results

from kdmed.config import DataSpec, RunConfig, TrainSpec
from kdmed.models import ARCHS
from kdmed.runner import clear_data_cache, run_one
from kdmed.store import ResultStore

CPU_SIZES = (500, 1000, 2000, 5000)
CUDA_SIZES = (500, 1000, 2000, 5000, 10000, 20000, 50000)
COLUMNS = [
    ("n", "n", "d"), ("n_train", "n_train", "d"), ("epochs", "epochs", "d"), ("train_s", "train s", ".2f"),
    ("total_s", "run s", ".2f"), ("data_s", "data s", ".2f"), ("us_per_image_epoch", "us/img/epoch", ".1f"),
    ("images_per_s", "img/s", ".0f"),
]


def run_config(n: int, pool: int, args: argparse.Namespace) -> RunConfig:
    """The run of size ``n`` drawn from a pool of ``pool`` training images."""
    data = DataSpec("synthetic-chest", image_size=args.image_size, options={"institution": "C", "n": pool},
                    train_n=n, val_n=args.eval_n, test_n=args.eval_n, subset_seed=0)
    train = TrainSpec(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, patience=args.epochs + 1,
                      augment=True, amp=True, compile=args.compile, device=args.device)
    return RunConfig(name=f"scaling-n{n}", data=data, arch=args.arch, strategy="scratch", train=train, seed=0)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log(y) against log(x)."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def scaling_rows(sizes: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per size, the fastest of ``args.repeats`` runs (each repeat trains in a fresh store).

    The sizes take turns (all sizes, then all sizes again): on a shared machine a burst
    of load from another process then slows one repeat of several sizes instead of every
    repeat of one size.
    """
    pool = max(sizes)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="kdmed-scaling-") as tmp:
        run_one(run_config(min(100, pool), pool, args), ResultStore(f"{tmp}/warmup"), quiet=True)  # not reported
        for rep in range(args.repeats):
            store = ResultStore(f"{tmp}/repeat{rep}")
            for n in sizes:
                clear_data_cache()  # every run renders its own images, so "run s" means the same for all
                result = run_one(run_config(n, pool, args), store, quiet=True)
                runs[n].append(result)
                t = result["timings"]
                print(f"  repeat {rep + 1}/{args.repeats} n={n}: train {t['train_seconds']:.2f} s, "
                      f"run {t['total_seconds']:.2f} s", flush=True)
    clear_data_cache()
    rows = []
    for n in sizes:
        result = min(runs[n], key=lambda r: r["timings"]["train_seconds"])
        t = result["timings"]
        n_train, epochs = result["n_train"], result["epochs_run"]
        rows.append({
            "n": n,
            "n_train": n_train,
            "epochs": epochs,
            "train_s": t["train_seconds"],
            "total_s": t["total_seconds"],
            "data_s": t["data_seconds"],
            "eval_s": t["eval_seconds"],
            "train_s_all": [r["timings"]["train_seconds"] for r in runs[n]],
            "us_per_image_epoch": 1e6 * t["train_seconds"] / (n_train * epochs),
            "images_per_s": n_train * epochs / t["train_seconds"],
            "test_macro_auc": result["metrics"].get("macro_auc"),
        })
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--sizes", default=None,
                        help=f"comma-separated n (default {','.join(map(str, CPU_SIZES))} on CPU, "
                             f"{','.join(map(str, CUDA_SIZES))} on CUDA)")
    parser.add_argument("--arch", default="small_cnn", choices=ARCHS)
    parser.add_argument("--image-size", type=int, default=None, help="default 64 (the default profile's size)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 64 on CUDA")
    parser.add_argument("--eval-n", type=int, default=200, help="validation and test images (fixed)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the fastest is reported (default 3)")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args(argv)
    setup(parser, args)
    cuda = args.device.startswith("cuda")
    try:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(CUDA_SIZES if cuda else CPU_SIZES)
    except ValueError:
        parser.error(f"--sizes must be comma-separated ints, got {args.sizes!r}")
    if args.repeats < 1 or args.epochs < 1:
        parser.error("--repeats and --epochs must be >= 1")
    if len(sizes) < 2 or min(sizes) < 1:
        parser.error("--sizes needs at least two positive sizes for a slope")
    args.image_size = args.image_size or 64
    args.batch_size = args.batch_size or (64 if cuda else 32)
    params = {"sizes": sizes, "arch": args.arch, "image_size": args.image_size, "epochs": args.epochs,
              "batch_size": args.batch_size, "eval_n": args.eval_n, "repeats": args.repeats, "augment": True,
              "compile": args.compile,
              "strategy": "scratch", "dataset": "synthetic-chest (institution C)"}

    t0 = time.perf_counter()
    rows = scaling_rows(sizes, args)
    n_train = np.array([r["n_train"] for r in rows])
    slope_train = loglog_slope(n_train, np.array([r["train_s"] for r in rows]))
    slope_total = loglog_slope(n_train, np.array([r["total_s"] for r in rows]))
    per_image = np.array([r["us_per_image_epoch"] for r in rows])
    spread = float(per_image.max() / per_image.min())
    info = machine_info(args.device)
    print()
    print(format_table(rows, COLUMNS, f"run time vs subset size: {args.arch} {args.image_size} px, {args.epochs} "
                                      f"epochs, {info['device_name']}, torch {info['torch']} "
                                      f"({time.perf_counter() - t0:.0f} s)"))
    print(f"\nlog-log slope of training time vs n: {slope_train:.3f} (whole run: {slope_total:.3f}); "
          f"us/image/epoch max/min = {spread:.2f}")
    summary = {"slope_train": slope_train, "slope_total": slope_total, "per_image_max_over_min": spread}
    if not args.no_write:
        path = write_results("scaling", args.device, rows, params, args.results_dir, **summary)
        print(f"wrote {path}")
    return {"rows": rows, **summary}


if __name__ == "__main__":
    main()
