"""Cost of each strategy per training epoch, relative to training from labels only.

For each student (resnet18 and small_cnn at 64 px, batch 32 by default) the
script trains with ``kdmed.train.Trainer``, one epoch per strategy in turn for
``--rounds`` rounds, and reports each strategy's fastest epoch (the first round
warms up allocators and caches; the minimum is the least disturbed by other
processes on a shared machine):

* ``scratch``      labels only;
* ``kd (cached)``  Hinton KD, teacher logits computed once before training
                   (the loader does not augment), looked up per batch;
* ``kd (online)``  Hinton KD, teacher forward pass on every batch (what
                   training with augmentation costs);
* ``at``           attention transfer on the four default taps (always online);
* ``kd+at``        both terms (online).

All rows train on the same random uint8 images without augmentation, so the
differences are the strategies' own cost. The teacher is a randomly initialised
``--teacher`` (default resnet18; densenet121 is the research group's backbone
and much slower on a CPU); its weights do not change the cost. ``setup s`` is
the one-off teacher pass that fills the logit cache.

Usage::

    python benchmarks/bench_strategies.py                 # CPU, a few minutes
    python benchmarks/bench_strategies.py --device cuda --n 8192 --teacher densenet121
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from kdmed.loader import ArrayLoader
from kdmed.models import build_model
from kdmed.strategies import Strategy
from kdmed.train import Trainer
from kdmed.utils import set_seed

ROWS = (
    ("scratch", "scratch", True),
    ("kd (cached)", "kd", True),
    ("kd (online)", "kd", False),
    ("at", "at", True),
    ("kd+at", "kd+at", True),
)


def bench_student(arch: str, args: argparse.Namespace, images: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Time every strategy row for one student architecture.

    The rows take turns, one epoch each, for ``--rounds`` rounds, and each row
    reports its fastest epoch: on a shared machine a burst of load from another
    process then slows one epoch of every row instead of every epoch of one row.
    """
    k = labels.shape[1]
    val = ArrayLoader(images[:64], labels[:64], batch_size=args.batch_size, shuffle=False, device=args.device)
    setups = []
    for label, name, cache in ROWS:
        set_seed(0)
        student = build_model(arch, k)
        teacher = build_model(args.teacher, k) if name != "scratch" else None
        strategy = Strategy(name, "multilabel", teacher=teacher, student_arch=arch, cache_teacher_outputs=cache)
        train = ArrayLoader(images, labels, batch_size=args.batch_size, shuffle=True, seed=0, augment=False,
                            device=args.device, drop_last=True)
        setups.append((label, student, strategy, train))
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, *_ in setups}
    modes, setup_s = {}, {}
    for _ in range(args.rounds):
        for label, student, strategy, train in setups:
            t0 = time.perf_counter()
            modes[label] = strategy.prepare(train, amp=args.amp)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            setup_s[label] = time.perf_counter() - t0 if modes[label] == "cached" else 0.0
            # one epoch; prepare() inside fit() repeats the (untimed) cache pass
            result = Trainer(student, strategy, epochs=1, lr=1e-3, patience=1, amp=args.amp, device=args.device,
                             quiet=True).fit(train, val)
            h = result.history[-1]
            times[label].append((h["train_seconds"], h["images_per_s"]))
    out = []
    for label, _, strategy, _ in setups:
        strategy.close()
        epoch_s, ips = min(times[label])
        out.append({"student": arch, "strategy": label, "teacher_mode": modes[label], "epoch_s": epoch_s,
                    "images_per_s": ips, "setup_s": setup_s[label]})
    scratch = out[0]["epoch_s"]
    for row in out:
        row["ratio"] = row["epoch_s"] / scratch
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--students", default="resnet18,small_cnn", help="comma-separated student archs")
    parser.add_argument("--teacher", default="resnet18", help="teacher arch (default resnet18)")
    parser.add_argument("--n", type=int, default=None, help="training images (default 320 on CPU, 8192 on CUDA)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="epochs per row, taken in turns; the fastest is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.n or (8192 if args.device.startswith("cuda") else 320)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 1, args.image_size, args.image_size), dtype=np.uint8)
    labels = (rng.random((n, 14)) < 0.2).astype(np.float32)

    rows = []
    for arch in args.students.split(","):
        rows += bench_student(arch.strip(), args, images, labels)

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"\nstrategy cost per epoch: {n} images {args.image_size}px, batch {args.batch_size}, teacher "
          f"{args.teacher}, {device}, amp={args.amp and args.device.startswith('cuda')}")
    print(f"{'student':<10} {'strategy':<12} {'teacher':<8} {'epoch s':>8} {'img/s':>8} {'x scratch':>9} {'setup s':>8}")
    for r in rows:
        print(f"{r['student']:<10} {r['strategy']:<12} {r['teacher_mode']:<8} {r['epoch_s']:>8.2f} "
              f"{r['images_per_s']:>8.0f} {r['ratio']:>9.2f} {r['setup_s']:>8.2f}")
    if args.json:
        from kdmed.utils import atomic_write_json

        atomic_write_json(args.json, {"device": device, "n": n, "teacher": args.teacher, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
