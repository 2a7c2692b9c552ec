"""Cost of each strategy per training epoch, with augmentation on, relative to training from labels only.

Every row trains with ``kdmed.train.Trainer`` on augmented batches (flip and
±15° rotation, as every book profile does). A taught student's teacher outputs come
from the canonical teacher pass of its epoch's view (:mod:`kdmed.teacher_views`):

* ``computes``: the first student of a teacher/view computes the pass in its epoch
  (``pass s``: the pass alone, also inside ``epoch s``);
* ``reads``: every further student of that teacher, images and view seed (kd and
  kd+at, transfer+kd, each T × alpha cell of one seed) reads it from the shared cache.

``amortised`` is the cost of one taught run when ``--share`` runs share each pass:
``(reads epoch + pass / share) / scratch epoch`` (the book's default study shares each
pass between 6 taught methods). Rows take turns, one epoch each, for ``--rounds``
rounds; each reports its fastest epoch (the least disturbed on a shared machine).
The teacher is a randomly initialised ``--teacher``; its weights do not change the cost.

Usage::

    python benchmarks/bench_strategies.py                 # CPU, a few minutes
    python benchmarks/bench_strategies.py --device cuda --n 8192 --teacher densenet121
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

import kdmed  # noqa: F401  (numerics first)
from kdmed.config import TrainSpec
from kdmed.loader import ArrayLoader
from kdmed.models import build_model
from kdmed.strategies import Strategy
from kdmed.train import Trainer
from kdmed.utils import set_seed

STRATEGIES = ("scratch", "kd", "at", "kd+at")
SETTINGS = {"kd": dict(temperature=4.0, alpha=0.5), "at": dict(beta=0.2, at_p=2.0),
            "kd+at": dict(temperature=4.0, alpha=0.5, beta=0.2, at_p=2.0), "scratch": {}}


def _epoch(arch: str, name: str, teacher, key: str | None, args, images, labels, val) -> tuple[float, float, str]:
    set_seed(0)
    student = build_model(arch, labels.shape[1])
    strategy = Strategy(name, "multilabel", teacher=teacher, student_arch=arch, shared_outputs_key=key,
                        **SETTINGS[name])
    train = ArrayLoader(images, labels, batch_size=args.batch_size, shuffle=True, seed=0, augment=True,
                        device=args.device, drop_last=True)
    spec = TrainSpec(epochs=1, lr=1e-3, patience=1, amp=args.amp, train_eval_n=0)
    result = Trainer(student, strategy, spec, device=args.device, quiet=True).fit(train, val)
    pass_s = strategy.teacher_pass_seconds
    strategy.close()
    return result.history[-1]["train_seconds"], pass_s, result.teacher_mode


def bench_student(arch: str, args: argparse.Namespace, images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Time scratch and each taught strategy (computing and reading its teacher pass) for one student."""
    val = ArrayLoader(images[:64], labels[:64], batch_size=args.batch_size, shuffle=False, device=args.device)
    teacher = build_model(args.teacher, labels.shape[1])
    best: dict[tuple[str, str], tuple[float, float]] = {}
    modes = {}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="kdmed-bench-views-") as cache:
            os.environ["KDMED_TEACHER_CACHE"] = cache
            for name in STRATEGIES:
                if name == "scratch":
                    runs = (("scratch", None),)
                else:
                    runs = (("computes", f"{arch}-{name}-{r}"), ("reads", f"{arch}-{name}-{r}"))
                for role, key in runs:
                    epoch_s, pass_s, modes[name] = _epoch(arch, name, teacher if key else None, key, args,
                                                          images, labels, val)
                    cell = (name, role)
                    best[cell] = min(best.get(cell, (np.inf, 0.0)), (epoch_s, pass_s))
    scratch = best[("scratch", "scratch")][0]
    rows = [{"student": arch, "strategy": "scratch", "teacher_mode": "none", "role": "", "epoch_s": scratch,
             "pass_s": 0.0, "images_per_s": len(images) / scratch, "ratio": 1.0, "amortised": 1.0}]
    for name in STRATEGIES[1:]:
        computes, reads = best[(name, "computes")], best[(name, "reads")]
        pass_s = computes[1]
        for role, (epoch_s, _) in (("computes", computes), ("reads", reads)):
            rows.append({"student": arch, "strategy": name, "teacher_mode": modes[name], "role": role,
                         "epoch_s": epoch_s, "pass_s": pass_s if role == "computes" else 0.0,
                         "images_per_s": len(images) / epoch_s, "ratio": epoch_s / scratch,
                         "amortised": (reads[0] + pass_s / args.share) / scratch})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    from common import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--students", default="small_cnn,resnet18", help="comma-separated student archs")
    parser.add_argument("--teacher", default="small_cnn", help="teacher arch (default small_cnn, the study's)")
    parser.add_argument("--n", type=int, default=None, help="training images (default 512 on CPU, 8192 on CUDA)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--share", type=int, default=6, help="taught runs sharing each teacher pass (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="epochs per row, taken in turns; the fastest is reported")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    torch.set_num_threads(1) if not args.device.startswith("cuda") else None
    n = args.n or (8192 if args.device.startswith("cuda") else 512)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 1, args.image_size, args.image_size), dtype=np.uint8)
    labels = (rng.random((n, 14)) < 0.2).astype(np.float32)
    start = time.perf_counter()
    rows = []
    for arch in args.students.split(","):
        rows += bench_student(arch.strip(), args, images, labels)
    print(f"\nstrategy cost per augmented epoch: {n} images {args.image_size}px, batch {args.batch_size}, "
          f"teacher {args.teacher}, {args.share} runs per shared pass ({time.perf_counter() - start:.0f} s)")
    print(f"{'student':<10} {'strategy':<8} {'role':<9} {'epoch s':>8} {'pass s':>7} {'x scratch':>9} {'amortised':>9}")
    for r in rows:
        print(f"{r['student']:<10} {r['strategy']:<8} {r['role']:<9} {r['epoch_s']:>8.2f} {r['pass_s']:>7.2f} "
              f"{r['ratio']:>9.2f} {r['amortised']:>9.2f}")
    path = write_results("strategies", args.device, rows,
                         {"n": n, "image_size": args.image_size, "batch_size": args.batch_size,
                          "teacher": args.teacher, "share": args.share, "augment": True}, teacher=args.teacher)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
