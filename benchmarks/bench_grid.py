"""A grid of the default study's runs: worker processes against one process, on a quiet and on a busy machine.

The same fixed grid (the default profile's learning-curve students at the smallest
size, their teachers and inits trained first, on ``--pool`` images to keep it short) is trained cold into a fresh store, in
one script, in each of these settings:

* ``before``: one process, torch's native kernels and threads (what the previous
  version of the runner did);
* ``sequential``: one worker, one torch thread, reproducible kernels: the grid
  runner's own numerics, one run after another;
* ``after``: the grid runner's worker processes (one per available core), one torch
  thread each, reproducible kernels;

each on a quiet machine and, unless ``--quiet-only``, with a competing CPU-bound
process (a busy loop on one core) running the whole time. ``after`` is compared with
the others measured in the same call: the parallel speed-up is ``sequential / after``,
the gain over the previous runner ``before / after``, and the busy case should cost
at most 1.5 × the quiet one. Rows of settings not run in a call are kept from earlier
calls (each row carries its call's ``run`` time stamp; ratios only pair rows of one call).

Usage::

    python benchmarks/bench_grid.py                                   # every setting, about 45 minutes on 2 cores
    python benchmarks/bench_grid.py --settings sequential,after --quiet-only   # about 15 minutes
"""

from __future__ import annotations

import argparse
import json
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


def _run(workers: int, numerics: str, busy: bool, size: int, overrides: dict) -> float:
    from common import competing_process

    from kdmed.numerics import PINNED_ENV

    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV}
    env["KDMED_NUMERICS"] = numerics
    with competing_process(busy), tempfile.TemporaryDirectory(prefix="kdmed-bench-grid-") as tmp:
        env["KDMED_TEACHER_CACHE"] = os.path.join(tmp, "views")
        script = os.path.join(tmp, "child.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(CHILD)
        out = subprocess.run([sys.executable, script, os.path.join(tmp, "store"), str(workers), str(size),
                              json.dumps(overrides)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


SETTINGS = {"before": "before: one process, native kernels and threads",
            "sequential": "sequential: one worker, one thread, reproducible kernels",
            "after": "after: {cores} worker processes, one thread each"}
WORKERS_NUMERICS = {"before": (1, "native"), "sequential": (1, "reproducible"), "after": (None, "reproducible")}


def summary(rows: list[dict]) -> dict:
    """busy / quiet per setting and the speed-ups of ``after``, each from rows of one call only."""
    out: dict = {"busy / quiet": {}, "speedup": {}}
    for r in rows:
        twin = [o for o in rows if o["setting"] == r["setting"] and o["run"] == r["run"]
                and o["competing process"] != r["competing process"]]
        if twin and not r["competing process"]:
            out["busy / quiet"][r["setting"]] = twin[0]["seconds"] / r["seconds"]
    after = [r for r in rows if r["setting"].startswith("after") and not r["competing process"]]
    for a in after:
        for key in ("before", "sequential"):
            other = [r for r in rows if r["setting"] == SETTINGS[key] and r["run"] == a["run"]
                     and not r["competing process"]]
            if other:
                out["speedup"][f"{key} / after"] = other[0]["seconds"] / a["seconds"]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    from common import RESULTS_DIR, write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=100, help="target size of the grid's students (default 100)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--pool", type=int, default=1200, help="teacher and init pools (default 1200: a short grid)")
    parser.add_argument("--settings", default="before,sequential,after",
                        help="comma-separated settings to run (default: before,sequential,after)")
    parser.add_argument("--quiet-only", action="store_true", help="skip the runs beside a competing process")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = {"curve_seeds": seeds, "teacher_pool_n": args.pool, "teacher_pool_sizes": [args.pool],
                 "init_pool_n": args.pool}
    cores = len(os.sched_getaffinity(0))
    chosen = [k.strip() for k in args.settings.split(",") if k.strip()]
    unknown = sorted(set(chosen) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)} (choose from {', '.join(SETTINGS)})")
    run = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = RESULTS_DIR / "grid-cpu.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    params = {"size": args.size, "cores": cores, **overrides}
    old_params = json.loads(path.read_text()).get("params") if path.exists() else None
    if old_params is not None and old_params != params:
        rows = []  # another grid: its rows do not compare with these
    for key in chosen:
        label = SETTINGS[key].format(cores=cores)
        workers, numerics = WORKERS_NUMERICS[key]
        for busy in (False,) if args.quiet_only else (False, True):
            seconds = _run(workers or cores, numerics, busy, args.size, overrides)
            rows = [r for r in rows if (r["setting"], r["competing process"]) != (label, busy)]
            rows.append({"setting": label, "competing process": busy, "seconds": seconds, "run": run,
                         "load_1min_after": round(os.getloadavg()[0], 2)})
            print(f"{label:<58} {'busy' if busy else 'quiet':<6} {seconds:7.1f} s", flush=True)
    rows = [{**r, "run": r.get("run", "2026-12-02T03:25:33+0000")} for r in rows]  # the first file had no stamps
    extra = summary(rows)
    for name, value in {**extra["busy / quiet"], **extra["speedup"]}.items():
        print(f"{name}: {value:.2f}")
    path = write_results("grid", "cpu", rows, params, date=time.strftime("%Y-%m-%d"), **extra)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
