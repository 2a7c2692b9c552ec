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
calls, and rows measured on another CPU model stay beside them (each row carries its
call's ``run`` time stamp and its ``cpu``; ratios only pair rows of one call).

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


def summary(rows: list[dict]) -> list[dict]:
    """busy / quiet per setting and the speed-ups of ``after``, each from rows of one call (one machine) only."""
    ratios = []
    for r in rows:
        if r["competing process"]:
            continue
        same_call = [o for o in rows if o["run"] == r["run"] and o is not r]
        busy = [o for o in same_call if o["setting"] == r["setting"] and o["competing process"]]
        if busy:
            ratios.append({"name": "busy / quiet", "setting": r["setting"], "value": busy[0]["seconds"] / r["seconds"],
                           "cpu": r["cpu"], "run": r["run"]})
        if r["setting"].startswith("after"):
            for key in ("before", "sequential"):
                other = [o for o in same_call if o["setting"] == SETTINGS[key] and not o["competing process"]]
                if other:
                    ratios.append({"name": f"{key} / after", "setting": r["setting"],
                                   "value": other[0]["seconds"] / r["seconds"], "cpu": r["cpu"], "run": r["run"]})
    return ratios


def main(argv: list[str] | None = None) -> list[dict]:
    from common import RESULTS_DIR, cpu_name, write_results

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
    old = json.loads(path.read_text()) if path.exists() else {"rows": [], "params": None, "machine": {}}
    params = {"size": args.size, "cores": cores, **overrides}
    # rows of the first files carry neither their call nor their machine: both are the file's own
    rows = [{"run": "2026-12-02T03:25:33+0000", "cpu": old["machine"].get("cpu"), **r} for r in old["rows"]]
    if old["params"] is not None and old["params"] != params:
        rows = []  # another grid: its rows do not compare with these
    cpu = cpu_name()
    for key in chosen:
        label = SETTINGS[key].format(cores=cores)
        workers, numerics = WORKERS_NUMERICS[key]
        for busy in (False,) if args.quiet_only else (False, True):
            seconds = _run(workers or cores, numerics, busy, args.size, overrides)
            rows = [r for r in rows if (r["setting"], r["competing process"], r["cpu"]) != (label, busy, cpu)]
            rows.append({"setting": label, "competing process": busy, "seconds": seconds, "run": run, "cpu": cpu,
                         "load_1min_after": round(os.getloadavg()[0], 2)})
            print(f"{label:<58} {'busy' if busy else 'quiet':<6} {seconds:7.1f} s", flush=True)
    ratios = summary(rows)
    for r in ratios:
        print(f"{r['name']} ({r['setting'].split(':')[0]}, {r['cpu']}): {r['value']:.2f}")
    path = write_results("grid", "cpu", rows, params, date=time.strftime("%Y-%m-%d"), ratios=ratios)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
