"""CPU numerics that give the same bits on every machine of one CPU model, and a record of what a run used.

The same training run printed different losses on two x86-64 machines: torch picks
its CPU kernels by the instruction set (AVX2, AVX-512, AMX), oneDNN and MKL do the
same, and each kernel rounds differently. Each machine is bitwise repeatable on its
own. The **reproducible** mode pins every one of them to AVX2, which every x86-64
machine of the last decade has, and trains on one thread (a reduction split over
threads can add in another order), so the bits no longer depend on the core count,
the number of worker processes or AVX-512::

    ATEN_CPU_CAPABILITY=avx2  ONEDNN_MAX_CPU_ISA=AVX2  MKL_CBWR=AVX2
    OMP_NUM_THREADS=1  MKL_NUM_THREADS=1  torch.set_num_threads(1)

The mode comes from ``KDMED_NUMERICS`` (``reproducible``, the default, or
``native``: the machine's fastest kernels and torch's own thread count). The
variables only take effect when set before torch creates its first kernel, so
:func:`apply_environment` runs when :mod:`kdmed` is imported; :func:`enforce`
(called before every training run) checks that torch really uses the pinned
kernels and says how to fix it when it does not. Parallel speed comes from
running several one-thread runs at once (:mod:`kdmed.runner`), not from threads.

Measured limit: this makes machines of one CPU model agree (a cold rebuild of the
default book on an Intel Xeon gave its 172 published runs bitwise), not CPU models
with each other. On an AMD EPYC (AVX2, no AVX-512) the same runs, in this mode, differ
from the Intel ones from the first epoch, in the sixth significant digit of the loss,
and then in their best epochs. Which library's kernel choice differs was not isolated.

On CUDA the mode changes nothing: GPU results are recorded with the device name
and are comparable only on the same kind of GPU.

:func:`compute_record` is what every result stores: mode, CPU model, the kernel
ISA torch reports, threads and library versions.
"""

from __future__ import annotations

import os
import platform
from typing import Any

MODES = ("reproducible", "native")
NUMERICS_ENV = "KDMED_NUMERICS"
#: what the reproducible mode sets before torch loads its kernels
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
PINNED_ISA = "AVX2"
PINNED_THREADS = 1


class NumericsError(RuntimeError):
    """The reproducible mode was asked for but torch already runs other kernels."""


def mode() -> str:
    """The numerics mode of this process, from ``KDMED_NUMERICS`` (default ``reproducible``)."""
    value = os.environ.get(NUMERICS_ENV, "reproducible").strip().lower() or "reproducible"
    if value not in MODES:
        raise NumericsError(f"{NUMERICS_ENV}={value!r} is not a numerics mode; expected one of {', '.join(MODES)}")
    return value


def apply_environment() -> None:
    """Set the pinned variables in this process's environment (reproducible mode only).

    Child processes (the book's Jupyter kernels, the runner's workers) inherit them.
    """
    if mode() == "reproducible":
        os.environ.update(PINNED_ENV)


def enforce() -> dict[str, Any]:
    """Make this process train in its mode, or raise :class:`NumericsError` saying why it cannot.

    Returns :func:`compute_record`.
    """
    import torch

    if mode() == "reproducible":
        apply_environment()
        torch.set_num_threads(PINNED_THREADS)
        isa = torch.backends.cpu.get_cpu_capability()
        if isa != PINNED_ISA:
            raise NumericsError(
                f"reproducible numerics need torch's {PINNED_ISA} CPU kernels, but torch reports {isa}: "
                f"it chose its kernels before kdmed pinned them (torch ran an operation before `import kdmed`), "
                f"or this CPU has no AVX2. Start a fresh process that imports kdmed first, or set "
                f"{' '.join(f'{k}={v}' for k, v in PINNED_ENV.items())} before starting Python; "
                f"{NUMERICS_ENV}=native trains with the machine's own kernels instead (results then differ "
                "between machines)."
            )
    return compute_record()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_record(device: str = "cpu") -> dict[str, Any]:
    """What produced a run's numbers: mode, CPU, kernel ISA, threads, device and versions."""
    import numpy
    import torch

    record: dict[str, Any] = {
        "numerics": mode(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record


def numerics_label(record: dict[str, Any]) -> str:
    """A short description of a compute record, e.g. ``reproducible (AVX2, 1 thread, cpu)``."""
    threads = record.get("threads")
    device = record.get("gpu") or record.get("device", "cpu")
    return f"{record.get('numerics', '?')} ({record.get('isa', '?')}, {threads} thread{'s' if threads != 1 else ''}, {device})"


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two compute records promise the same bits (same mode, kernels, threads and device kind)."""
    keys = ("numerics", "isa", "threads", "torch")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    return (a.get("gpu") or a.get("device")) == (b.get("gpu") or b.get("device"))


__all__ = ["MODES", "PINNED_ENV", "NumericsError", "apply_environment", "comparable", "compute_record",
           "enforce", "mode", "numerics_label"]
