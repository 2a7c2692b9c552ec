"""What reproducible numerics cost: epoch time with torch's AVX2 kernels on one thread vs the native ones.

Each setting runs in a fresh process (the kernels are chosen when torch starts), the
settings take turns for ``--rounds`` rounds, and each reports its fastest epoch of
each architecture (the least disturbed on a shared machine):

* ``reproducible``: ``KDMED_NUMERICS=reproducible`` (AVX2 kernels, one thread: the
  published profiles' mode, bitwise equal on any x86-64 machine with AVX2);
* ``native, 1 thread``: the machine's fastest kernels (e.g. AVX-512), one thread;
* ``native, N threads``: the machine's kernels and torch's default thread count.

Usage::

    python benchmarks/bench_numerics.py            # CPU, a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r'''
import json, sys, time
import numpy as np, torch
import kdmed
from kdmed import numerics
from kdmed.config import TrainSpec
from kdmed.loader import ArrayLoader
from kdmed.models import build_model
from kdmed.strategies import Strategy
from kdmed.train import Trainer
threads = int(sys.argv[2])
if numerics.mode() == "reproducible":
    numerics.enforce()
elif threads:
    torch.set_num_threads(threads)
n, size = int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, size=(n, 1, size, size), dtype=np.uint8)
y = (rng.random((n, 14)) < 0.2).astype(np.float32)
out = {"isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(), "epoch_s": {}}
for arch in sys.argv[1].split(","):
    torch.manual_seed(0)
    model = build_model(arch, 14)
    train = ArrayLoader(x, y, batch_size=32, shuffle=True, seed=0, augment=True, drop_last=True)
    val = ArrayLoader(x[:64], y[:64], batch_size=32, shuffle=False)
    fit = Trainer(model, Strategy("scratch", "multilabel"), TrainSpec(epochs=2, lr=1e-3, patience=2, train_eval_n=0),
                  device="cpu", quiet=True).fit(train, val)
    out["epoch_s"][arch] = min(h["train_seconds"] for h in fit.history)
print(json.dumps(out))
'''


def _run(mode: str, threads: int, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["KDMED_NUMERICS"] = mode
    out = subprocess.run([sys.executable, "-c", CHILD, args.archs, str(threads), str(args.n), str(args.image_size)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    from common import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="small_cnn,small_densenet")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = [("reproducible", "reproducible", 1), ("native, 1 thread", "native", 1),
                (f"native, {cores} threads", "native", 0)]
    best: dict[tuple[str, str], float] = {}
    seen: dict[str, dict] = {}
    for _ in range(args.rounds):
        for label, mode, threads in settings:
            rec = _run(mode, threads, args)
            seen[label] = rec
            for arch, s in rec["epoch_s"].items():
                best[(label, arch)] = min(best.get((label, arch), float("inf")), s)
    rows = []
    for arch in args.archs.split(","):
        ref = best[("reproducible", arch)]
        for label, _, _ in settings:
            rows.append({"arch": arch, "setting": label, "isa": seen[label]["isa"], "threads": seen[label]["threads"],
                         "epoch_s": best[(label, arch)], "images_per_s": args.n / best[(label, arch)],
                         "vs_reproducible": best[(label, arch)] / ref})
    for r in rows:
        print(f"{r['arch']:<15} {r['setting']:<20} {r['isa']:<8} {r['threads']:>2} thr  {r['epoch_s']:6.2f} s/epoch  "
              f"{r['images_per_s']:7.0f} img/s  {r['vs_reproducible']:.2f} x reproducible")
    path = write_results("numerics", "cpu", rows, {"n": args.n, "image_size": args.image_size, "augment": True,
                                                    "rounds": args.rounds})
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
