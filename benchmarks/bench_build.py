"""The whole default book built cold, on a quiet machine and beside a competing CPU-bound process.

One call builds the ``default`` profile once, from nothing (a fresh results store, image
cache and teacher-output cache, all in a temporary folder; the checkout's own
``results/default`` is not touched), and records the wall time, each chapter's time and
the load average in ``benchmarks/results/build-cpu.json``. Rows are merged by
(setting, competing process, CPU model), so the four builds of the issue can be
measured in separate calls, even in separate sessions, which an hour-long build needs;
ratios pair only builds on one CPU model (sessions do not always get the same one):

* ``--setting after``: the grid runner as the book runs it (one worker process per
  available core, one torch thread each, reproducible kernels);
* ``--setting before``: one process, native kernels and torch's own threads (what the
  runner did before its worker processes), ``KDMED_WORKERS=1 KDMED_NUMERICS=native``;
* ``--busy``: a busy loop on one core runs for the whole build.

An ``after`` build is then compared with the published ``results/default``: every run's
test macro-AUC and best epoch must be the same, bitwise (the reproducible numerics).

Usage::

    python benchmarks/bench_build.py --setting after          # about 45-60 minutes on 2 quiet cores
    python benchmarks/bench_build.py --setting after --busy
    python benchmarks/bench_build.py --setting after --chapters 01_data,02_teacher   # part of the book
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # common.py, when run as a script from anywhere
SETTINGS = {
    "after": {"label": "after: one worker process per core, one thread each, reproducible kernels", "env": {}},
    "before": {"label": "before: one process, native kernels and threads",
               "env": {"KDMED_WORKERS": "1", "KDMED_NUMERICS": "native"}},
}
CHAPTER_LINE = re.compile(r"\] (\S+): done in ([0-9.]+) s")


def _same_as_published(store: Path, published: Path) -> dict:
    """How many runs of ``store`` have exactly the published test macro-AUC and best epoch."""
    new = pd.read_csv(store / "index.csv").set_index("key")
    old = pd.read_csv(published / "index.csv").set_index("key")
    shared = new.index.intersection(old.index)
    same = ((new.loc[shared, "macro_auc"] == old.loc[shared, "macro_auc"])
            & (new.loc[shared, "best_epoch"] == old.loc[shared, "best_epoch"]))
    return {"runs": int(len(new)), "published": int(len(old)), "same key": int(len(shared)),
            "bitwise same AUC and best epoch": int(same.sum())}


def build_once(setting: str, busy: bool, chapters: str = "") -> dict:
    from common import competing_process, cpu_name

    from kdmed.numerics import PINNED_ENV

    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV and not k.startswith("KDMED_")}
    env.update(SETTINGS[setting]["env"])
    with tempfile.TemporaryDirectory(prefix="kdmed-bench-build-") as tmp:
        env.update({"KDMED_RESULTS_DIR": os.path.join(tmp, "results"), "KDMED_CACHE_DIR": os.path.join(tmp, "images"),
                    "KDMED_TEACHER_CACHE": os.path.join(tmp, "views")})
        load_before = os.getloadavg()[0]
        with competing_process(busy):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "kdmed.book", "build", "--profile", "default",
                                   "--no-progress", "--chapters", chapters], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            seconds = time.perf_counter() - start
        log = proc.stdout + proc.stderr
        Path(ROOT / "_build" / "logs").mkdir(parents=True, exist_ok=True)
        (ROOT / "_build" / "logs" / f"bench-build-{setting}-{'busy' if busy else 'quiet'}.log").write_text(log)
        if proc.returncode != 0:
            raise SystemExit(f"the build failed (rc {proc.returncode}); its log:\n{log[-4000:]}")
        row = {"setting": SETTINGS[setting]["label"], "competing process": busy, "seconds": round(seconds, 1),
               "chapters run": chapters or "all",
               "chapters": {m.group(1): float(m.group(2)) for m in CHAPTER_LINE.finditer(log)},
               "load_1min_before": round(load_before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_name()}
        if setting == "after":
            row["published"] = _same_as_published(Path(env["KDMED_RESULTS_DIR"]), ROOT / "results" / "default")
    return row


def _merge_key(row: dict) -> tuple:
    return row["setting"], row["competing process"], row["cpu"], row["chapters run"]


def ratios(rows: list[dict]) -> list[dict]:
    """busy / quiet per setting and the quiet before / after speed-up, pairing only builds of the same
    chapters on the same CPU model."""
    seconds = {_merge_key(r): r["seconds"] for r in rows}
    out = []
    for setting, busy, cpu, chapters in seconds:
        if busy and (setting, False, cpu, chapters) in seconds:
            out.append({"name": "busy / quiet", "setting": setting, "cpu": cpu, "chapters run": chapters,
                        "value": round(seconds[setting, True, cpu, chapters] / seconds[setting, False, cpu, chapters],
                                       3)})
    for cpu, chapters in dict.fromkeys(k[2:] for k in seconds):
        before, after = (seconds.get((SETTINGS[s]["label"], False, cpu, chapters)) for s in ("before", "after"))
        if before and after:
            out.append({"name": "before / after", "setting": SETTINGS["after"]["label"], "cpu": cpu,
                        "chapters run": chapters, "value": round(before / after, 3)})
    return out


def main(argv: list[str] | None = None) -> dict:
    from common import RESULTS_DIR, write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--busy", action="store_true", help="run a CPU-bound busy loop on one core meanwhile")
    parser.add_argument("--chapters", default="", help="comma-separated chapter stems to execute (default: all); "
                        "a partial build pairs only with builds of the same chapters")
    args = parser.parse_args(argv)
    row = build_once(args.setting, args.busy, args.chapters)
    print(json.dumps(row, indent=1), flush=True)
    path = RESULTS_DIR / "build-cpu.json"
    old = json.loads(path.read_text()) if path.exists() else {"rows": [], "machine": {}}
    # the first file's rows were whole builds on the file's machine
    rows = [{"cpu": old["machine"].get("cpu"), "chapters run": "all", **r} for r in old["rows"]]
    rows = [r for r in rows if _merge_key(r) != _merge_key(row)] + [row]
    print(f"wrote {write_results('build', 'cpu', rows, {'profile': 'default', 'cores': len(os.sched_getaffinity(0))}, ratios=ratios(rows))}")
    return row


if __name__ == "__main__":
    main()
