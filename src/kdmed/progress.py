"""One channel for the lines a long build prints about its runs.

:func:`report` prints a line to this process's stderr and, when the book builder
set ``KDMED_PROGRESS_FILE``, appends it to that file: a chapter's kernel (and the
runner's worker processes) write there, and the builder, which cannot see a
kernel's stderr, prints the file's new lines as they come (:class:`Tail`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

PROGRESS_ENV = "KDMED_PROGRESS_FILE"


def report(line: str) -> None:
    """Show ``line`` on stderr and append it to the progress file, if one is set."""
    print(line, file=sys.stderr, flush=True)
    path = os.environ.get(PROGRESS_ENV)
    if path:
        # one write of a short line in append mode: lines of concurrent workers do not interleave
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")


class Tail:
    """Follow a progress file from a background thread, handing each new line to ``emit``."""

    def __init__(self, path: str | Path, emit: Callable[[str], None], interval_s: float = 0.5) -> None:
        self.path, self.emit, self.interval_s = Path(path), emit, interval_s
        self._stop = threading.Event()
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._thread = threading.Thread(target=self._follow, name="kdmed-progress-tail", daemon=True)

    def __enter__(self) -> "Tail":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._drain()

    def _drain(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data[: data.rfind("\n") + 1]
        self._offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            self.emit(line)

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._drain()
            time.sleep(self.interval_s)
