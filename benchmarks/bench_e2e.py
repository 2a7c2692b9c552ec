"""End-to-end training throughput vs the model-only ceiling.

For each model the script

1. renders ``--n`` synthetic chest X-rays at the model's profile size and builds
   the on-disk image cache (``kdmed.data.cache.cached_image_array``: a uint8
   memmap, as a real dataset is read);
2. measures the input pipeline alone: one epoch of :class:`kdmed.loader.ArrayLoader`
   batches (shuffled, augmented: flip + rotation ±15°, normalised, on the device)
   with no model;
3. trains with the real loop, :class:`kdmed.train.Trainer` (strategy ``scratch``,
   Adam, bf16 + channels_last on CUDA), for ``--epochs`` epochs fed by that
   loader, and takes the training images/s of the fastest epoch after the first
   (the first one warms up allocators and cuDNN);
4. measures the model-only ceiling (``bench_models.model_ceiling``: same model,
   batch and device, a random batch already on the device) in the same process;

and reports ``ratio = end-to-end / ceiling``. The target on a GPU is >= 0.9 (the
loader then costs at most 10 %). On a CPU the augmentation runs on the same cores
as the model, so the ratio is lower there by design.

Usage::

    python benchmarks/bench_e2e.py                        # CPU: small_cnn, small_densenet, resnet18 at 64 px
    python benchmarks/bench_e2e.py --device cuda          # + densenet121 at 224 px, 8192 images

Writes ``benchmarks/results/e2e-<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_models import PROFILE_SIZE, default_batch_size, model_ceiling, parse_sizes
from common import (
    Clock,
    add_common_args,
    format_table,
    machine_info,
    setup,
    write_results,
)

from kdmed.config import TrainSpec
from kdmed.data.cache import cached_image_array
from kdmed.data.synthetic import SyntheticChest
from kdmed.loader import ArrayLoader
from kdmed.models import ARCHS, build_model
from kdmed.strategies import Strategy
from kdmed.train import Trainer
from kdmed.utils import set_seed

COLUMNS = [
    ("model", "model", ""), ("image_size", "px", "d"), ("batch_size", "batch", "d"), ("n_images", "images", "d"),
    ("loader_images_per_s", "loader img/s", ".0f"), ("e2e_images_per_s", "e2e img/s", ".1f"),
    ("ceiling_images_per_s", "ceiling img/s", ".1f"), ("ratio", "e2e/ceiling", ".2f"),
]


def cached_images(image_size: int, n: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """``n`` synthetic chest images at ``image_size`` through the disk cache: (memmap, labels, build seconds)."""
    ds = SyntheticChest(split="train", image_size=image_size, institution="C", n=n)
    t0 = time.perf_counter()
    images = cached_image_array(ds, cache_dir=cache_dir, progress=False)
    return images, ds.labels, time.perf_counter() - t0


def loader_only(loader: ArrayLoader) -> float:
    """Images/s of one epoch of ``loader`` with no model (the input pipeline's own ceiling)."""
    loader.set_epoch(0)
    seen = 0
    with Clock(loader.device) as clock:
        for batch in loader:
            seen += batch.x.shape[0]
    return seen / clock.seconds


def e2e_row(arch: str, image_size: int, batch_size: int, n: int, epochs: int, device: str, cache_dir: Path,
            *, amp: bool = True, compile: bool = False, ceiling_seconds: float = 4.0) -> dict[str, Any]:
    """Build the cache, time the loader alone, the Trainer epochs and the model-only ceiling for one model."""
    images, labels, cache_s = cached_images(image_size, n, cache_dir)
    train = ArrayLoader(images, labels, batch_size=batch_size, shuffle=True, seed=0, augment=True, device=device,
                        drop_last=True)
    n_val = min(256, n)
    val = ArrayLoader(images[:n_val], labels[:n_val], batch_size=batch_size, shuffle=False, device=device)
    loader_ips = loader_only(train)

    set_seed(0)
    model = build_model(arch, labels.shape[1])
    spec = TrainSpec(epochs=epochs, lr=1e-4, patience=epochs, amp=amp, compile=compile, train_eval_n=0)
    trainer = Trainer(model, Strategy("scratch", "multilabel"), spec, device=device, quiet=True)
    history = trainer.fit(train, val).history
    timed = history[1:] if len(history) > 1 else history
    best = max(timed, key=lambda h: h["images_per_s"])

    ceiling = model_ceiling(arch, image_size, batch_size, device, amp=amp, compile=compile,
                            min_seconds=ceiling_seconds, max_steps=300)
    return {
        "model": arch,
        "image_size": image_size,
        "batch_size": batch_size,
        "n_images": n,
        "epochs": epochs,
        "augment": True,
        "cache_build_s": cache_s,
        "loader_images_per_s": loader_ips,
        "e2e_images_per_s": best["images_per_s"],
        "e2e_images_per_s_mean": float(np.mean([h["images_per_s"] for h in timed])),
        "epoch_train_s": best["train_seconds"],
        "ceiling_images_per_s": ceiling["images_per_s"],
        "ratio": best["images_per_s"] / ceiling["images_per_s"],
        "ratio_mean_epoch": float(np.mean([h["images_per_s"] for h in timed])) / ceiling["images_per_s"],
        "amp": ceiling["amp"],
        "channels_last": ceiling["channels_last"],
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--models", default=None,
                        help="comma-separated architectures (default: small_cnn,small_densenet,resnet18 on CPU; "
                             "all four on CUDA)")
    parser.add_argument("--sizes", default=None, help="override image sizes, e.g. densenet121=256")
    parser.add_argument("--n", type=int, default=None, help="training images (default 512 on CPU, 8192 on CUDA)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is a warm-up; default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 64 on CUDA")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (Trainer and ceiling)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="image cache folder (default: a temporary one)")
    args = parser.parse_args(argv)
    setup(parser, args)
    cuda = args.device.startswith("cuda")
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as err:
        parser.error(str(err))
    default_models = list(PROFILE_SIZE) if cuda else ["small_cnn", "small_densenet", "resnet18"]
    models = [m.strip() for m in args.models.split(",")] if args.models else default_models
    unknown = [m for m in models if m not in ARCHS]
    if unknown:
        parser.error(f"--models: unknown architecture(s) {unknown}; choose from {', '.join(ARCHS)}")
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is a warm-up)")
    n = args.n or (8192 if cuda else 512)
    batch = args.batch_size or default_batch_size(args.device)
    params = {"n": n, "epochs": args.epochs, "batch_size": batch, "amp": args.amp and cuda, "compile": args.compile,
              "augment": {"hflip": True, "rotate": 15.0}, "sizes": {m: sizes[m] for m in models}}

    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kdmed-e2e-") as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        for arch in models:
            rows.append(e2e_row(arch, sizes[arch], batch, n, args.epochs, args.device, cache_dir, amp=args.amp,
                                compile=args.compile, ceiling_seconds=3.0 if cuda else 4.0))
            r = rows[-1]
            print(f"  {arch}: e2e {r['e2e_images_per_s']:.1f} img/s, ceiling {r['ceiling_images_per_s']:.1f}, "
                  f"ratio {r['ratio']:.2f}", flush=True)
    info = machine_info(args.device)
    print()
    print(format_table(rows, COLUMNS, f"end-to-end training vs model-only ceiling on {info['device_name']}, torch "
                                      f"{info['torch']}, amp={params['amp']} ({time.perf_counter() - t0:.0f} s)"))
    if not args.no_write:
        path = write_results("e2e", args.device, rows, params, args.results_dir,
                             min_ratio=min(r["ratio"] for r in rows))
        print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    main()
