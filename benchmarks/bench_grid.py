"""A grid of the default study's runs: worker processes against one process, on a quiet and on a busy machine.

The same fixed grid (the default profile's learning-curve students at the smallest
size, their teachers and inits trained first, on ``--pool`` images to keep it short) is trained cold into a fresh store four
times, in one script:

* ``before``: one process, torch's native kernels and threads (what the previous
  version of the runner did);
* ``after``: the grid runner's worker processes, one torch thread each, reproducible
  kernels;

each on a quiet machine and with a competing CPU-bound process (a busy loop on one
core) running the whole time. The speed-up is ``before / after`` on the quiet machine;
the busy case should cost at most 1.5 × the quiet one.

Usage::

    python benchmarks/bench_grid.py          # about 20 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

CHILD = r'''
import json, sys, time
from kdmed import experiments
from kdmed.grid import run_grid
from kdmed.study import Study
from kdmed.store import ResultStore

def main():
    root, workers, size, overrides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    study = Study.from_profile("default", overrides)
    grid = experiments.learning_curve(study).select(n=size)
    start = time.perf_counter()
    run_grid(grid.configs, ResultStore(root), progress=False, workers=workers)
    print(json.dumps({"seconds": time.perf_counter() - start, "runs": len(grid)}))

if __name__ == "__main__":
    main()
'''


def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def _run(workers: int, numerics: str, busy: bool, size: int, overrides: dict) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["KDMED_NUMERICS"] = numerics
    stop = multiprocessing.Event()
    hog = multiprocessing.Process(target=_busy, args=(stop,), daemon=True) if busy else None
    if hog:
        hog.start()
    try:
        with tempfile.TemporaryDirectory(prefix="kdmed-bench-grid-") as tmp:
            env["KDMED_TEACHER_CACHE"] = os.path.join(tmp, "views")
            script = os.path.join(tmp, "child.py")
            with open(script, "w", encoding="utf-8") as fh:
                fh.write(CHILD)
            out = subprocess.run([sys.executable, script, os.path.join(tmp, "store"), str(workers), str(size),
                                  json.dumps(overrides)], env=env, capture_output=True, text=True, check=True)
    finally:
        if hog:
            stop.set()
            hog.join()
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def main(argv: list[str] | None = None) -> list[dict]:
    from common import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100, help="target size of the grid's students (default 100)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--pool", type=int, default=1200, help="teacher and init pools (default 1200: a short grid)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = {"curve_seeds": seeds, "teacher_pool_n": args.pool, "teacher_pool_sizes": [args.pool],
                 "init_pool_n": args.pool}
    cores = len(os.sched_getaffinity(0))
    settings = [("before: one process, native kernels and threads", 1, "native"),
                (f"after: {cores} worker processes, one thread each", cores, "reproducible")]
    rows = []
    for label, workers, numerics in settings:
        for busy in (False, True):
            seconds = _run(workers, numerics, busy, args.size, overrides)
            rows.append({"setting": label, "competing process": busy, "seconds": seconds})
            print(f"{label:<52} {'busy' if busy else 'quiet':<6} {seconds:7.1f} s", flush=True)
    quiet = {r["setting"]: r["seconds"] for r in rows if not r["competing process"]}
    busy = {r["setting"]: r["seconds"] for r in rows if r["competing process"]}
    for r in rows:
        r["busy / quiet"] = busy[r["setting"]] / quiet[r["setting"]]
    before, after = (s[0] for s in settings)
    speedup = quiet[before] / quiet[after]
    print(f"speed-up of the worker processes on a quiet machine: {speedup:.2f} x; busy / quiet: "
          f"before {busy[before] / quiet[before]:.2f}, after {busy[after] / quiet[after]:.2f}")
    path = write_results("grid", "cpu", rows, {"size": args.size, "cores": cores, **overrides},
                         speedup=speedup, date=time.strftime("%Y-%m-%d"))
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
