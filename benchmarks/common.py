"""Shared helpers of the benchmark scripts: the machine, the timing clock, the table and its JSON file.

Every benchmark prints one table and writes it (atomically) to
``benchmarks/results/<name>-<device>.json`` with the layout::

    {"benchmark": name, "machine": {...}, "params": {...}, "rows": [...], ...extra}

which ``book/appendix_compute.py`` reads. ``<device>`` is "cpu" or "cuda".
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing
import os
import platform
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from kdmed.utils import atomic_write_json

def _busy(stop) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


@contextlib.contextmanager
def competing_process(on: bool = True):
    """A CPU-bound busy loop in another process for the duration of the block (nothing when ``on`` is false)."""
    if not on:
        yield
        return
    stop = multiprocessing.Event()
    hog = multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
    hog.start()
    try:
        yield
    finally:
        stop.set()
        hog.join()


RESULTS_DIR = Path(__file__).resolve().parent / "results"


def device_kind(device: str) -> str:
    """"cuda" for any CUDA device string, else "cpu" (the file-name suffix)."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """What the numbers were measured on: device, CPU, cores, torch threads and versions, date."""
    info = {
        "device": device_kind(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        # other processes on a shared machine slow every number down; the load says how busy it was
        info["load_1min"] = round(os.getloadavg()[0], 2)
    if device_kind(device) == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
        info["device_name"] = info["gpu"]
    else:
        info["device_name"] = f"{info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch threads)"
    return info


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--threads``, ``--results-dir`` and ``--no-write``."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help=f"where <name>-<device>.json goes (default {RESULTS_DIR})")
    parser.add_argument("--no-write", action="store_true", help="print the table only")


def setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse ``--device cuda`` without a GPU; apply ``--threads``."""
    if device_kind(args.device) == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device} but no CUDA device is visible")
    if args.threads:
        torch.set_num_threads(args.threads)


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work (timings must include it); nothing on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


class Clock:
    """Wall-clock seconds of a block, CUDA work included: ``with Clock(dev) as c: ...; c.seconds``."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = device
        self.seconds = float("nan")

    def __enter__(self) -> "Clock":
        sync(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self._t0


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]], title: str = "") -> str:
    """A fixed-width text table; ``columns`` are ``(key, header, format spec)``, a missing value prints "-"."""
    cells = [[h for _, h, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            line.append("-" if value is None else format(value, fmt))
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    text = [title] if title else []
    left = [fmt == "" for _, _, fmt in columns]  # text columns align left, numbers right
    for i, r in enumerate(cells):
        text.append("  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(r, widths, left)).rstrip())
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def results_path(name: str, device: str, results_dir: str | Path = RESULTS_DIR) -> Path:
    """``<results_dir>/<name>-<cpu|cuda>.json``."""
    return Path(results_dir) / f"{name}-{device_kind(device)}.json"


def write_results(name: str, device: str, rows: Iterable[dict[str, Any]], params: dict[str, Any],
                  results_dir: str | Path = RESULTS_DIR, **extra: Any) -> Path:
    """Write the table (and ``extra`` summary values) to :func:`results_path` atomically; return the path."""
    path = results_path(name, device, results_dir)
    atomic_write_json(path, {"benchmark": name, "machine": machine_info(device), "params": params,
                             "rows": list(rows), **extra})
    return path
