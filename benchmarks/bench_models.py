"""Model-only ceiling: training steps/s and images/s of each architecture on random tensors.

The batch (random ``[B, 3, S, S]`` images and 14 random 0/1 labels) is created
once on the device, so nothing but the model trains: forward, the multi-label
task loss, backward and an Adam step, with bf16 autocast and channels_last on
CUDA as in :class:`kdmed.train.Trainer` (fp32 on CPU). It is the ceiling the
end-to-end loop (``bench_e2e.py``) is compared with.

Each model runs at its profile's image size: small_cnn and small_densenet at
64 px (the default profile's student and teacher), resnet18 at 64 px (the
strategy benchmark's student) and densenet121 at 224 px (the gpu and full
profiles). A step of DenseNet-121 at 224 px takes seconds on a CPU, so the
number of timed steps adapts: at least ``--min-steps`` and until
``--min-seconds`` have passed (at most ``--max-steps``).

Usage::

    python benchmarks/bench_models.py                       # CPU, ~1-2 minutes on 2 cores
    python benchmarks/bench_models.py --device cuda         # batch 64, bf16
    python benchmarks/bench_models.py --models small_cnn --sizes small_cnn=128

Writes ``benchmarks/results/models-<cpu|cuda>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from common import (
    Clock,
    add_common_args,
    format_table,
    machine_info,
    setup,
    sync,
    write_results,
)

from kdmed.devices import autocast_context
from kdmed.losses import TaskLoss
from kdmed.models import ARCHS, build_model, count_parameters
from kdmed.utils import set_seed

#: image size of each architecture in the profiles that use it
PROFILE_SIZE = {"small_cnn": 64, "small_densenet": 64, "resnet18": 64, "densenet121": 224}
#: where that size comes from (shown in the table)
PROFILE_OF = {"small_cnn": "default (student)", "small_densenet": "default (teacher)",
              "resnet18": "strategy benchmark", "densenet121": "gpu / full"}
N_CLASSES = 14
COLUMNS = [
    ("model", "model", ""), ("image_size", "px", "d"), ("batch_size", "batch", "d"), ("params_m", "params M", ".2f"),
    ("steps", "steps", "d"), ("step_ms", "ms/step", ".1f"), ("steps_per_s", "steps/s", ".2f"),
    ("images_per_s", "img/s", ".1f"),
]


def default_batch_size(device: str) -> int:
    """32 on CPU (the CPU profiles' batch), 64 on CUDA (the gpu profile's)."""
    return 64 if str(device).startswith("cuda") else 32


def model_ceiling(arch: str, image_size: int, batch_size: int, device: str, *, amp: bool = True,
                  compile: bool = False, warmup: int | None = None, min_steps: int = 3, max_steps: int = 200,
                  min_seconds: float = 3.0, lr: float = 1e-4, seed: int = 0) -> dict[str, Any]:
    """Time training steps of ``arch`` on one random batch already on ``device``; one table row.

    ``warmup`` untimed steps first (default 1 on CPU, 10 on CUDA: cuDNN autotuning,
    allocator, compilation). Then steps run until both ``min_steps`` and
    ``min_seconds`` are reached or ``max_steps`` is. On CUDA the timed steps run
    back to back with one synchronisation at the end; on CPU each step is timed.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    set_seed(seed)
    model = build_model(arch, N_CLASSES).to(dev)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev)
    y = (torch.rand(batch_size, N_CLASSES, device=dev) < 0.2).float()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    forward = torch.compile(model) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = TaskLoss("multilabel")

    def step() -> torch.Tensor:
        with autocast_context(dev, amp):
            loss = loss_fn(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    warmup = (10 if cuda else 1) if warmup is None else warmup
    for _ in range(warmup):
        step()
    sync(dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    step_times: list[float] = []
    steps, seconds = 0, 0.0
    while steps < max_steps and (steps < min_steps or seconds < min_seconds):
        # on CUDA a block of steps between synchronisations keeps the GPU queue full
        block = 1 if not cuda else max(1, min(max_steps - steps, 20))
        with Clock(dev) as clock:
            for _ in range(block):
                loss = step()
        steps += block
        seconds += clock.seconds
        step_times.append(clock.seconds / block)
    if not torch.isfinite(loss.detach()).item():
        raise FloatingPointError(f"{arch}: non-finite loss in the benchmark ({loss.item()})")
    row = {
        "model": arch,
        "profile": PROFILE_OF.get(arch, ""),
        "image_size": image_size,
        "batch_size": batch_size,
        "params_m": count_parameters(model) / 1e6,
        "steps": steps,
        "seconds": seconds,
        "step_ms": 1000 * seconds / steps,
        "step_ms_median": 1000 * statistics.median(step_times),
        "steps_per_s": steps / seconds,
        "images_per_s": steps * batch_size / seconds,
        "amp": bool(amp and cuda),
        "channels_last": cuda,
        "compiled": bool(compile),
    }
    if cuda:
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return row


def parse_sizes(text: str | None) -> dict[str, int]:
    """``"small_cnn=128,densenet121=256"`` -> ``{"small_cnn": 128, "densenet121": 256}``."""
    sizes = dict(PROFILE_SIZE)
    for item in filter(None, (text or "").split(",")):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in ARCHS or not value.strip().isdigit():
            raise ValueError(f"--sizes item {item!r}: expected MODEL=PIXELS with MODEL one of {', '.join(ARCHS)}")
        sizes[name.strip()] = int(value)
    return sizes


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--models", default=",".join(PROFILE_SIZE), help="comma-separated architectures")
    parser.add_argument("--sizes", default=None, help="override image sizes, e.g. small_cnn=128,densenet121=256")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 64 on CUDA")
    parser.add_argument("--min-steps", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=None, help="default 50 on CPU, 300 on CUDA")
    parser.add_argument("--min-seconds", type=float, default=None, help="default 4 on CPU, 3 on CUDA")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA too")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = parser.parse_args(argv)
    setup(parser, args)
    cuda = args.device.startswith("cuda")
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as err:
        parser.error(str(err))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ARCHS]
    if unknown:
        parser.error(f"--models: unknown architecture(s) {unknown}; choose from {', '.join(ARCHS)}")
    batch = args.batch_size or default_batch_size(args.device)
    params = {"batch_size": batch, "amp": args.amp and cuda, "compile": args.compile, "min_steps": args.min_steps,
              "max_steps": args.max_steps or (300 if cuda else 50),
              "min_seconds": args.min_seconds or (3.0 if cuda else 4.0), "sizes": {m: sizes[m] for m in models}}
    rows = []
    t0 = time.perf_counter()
    for arch in models:
        rows.append(model_ceiling(arch, sizes[arch], batch, args.device, amp=args.amp, compile=args.compile,
                                  min_steps=args.min_steps, max_steps=params["max_steps"],
                                  min_seconds=params["min_seconds"]))
        print(f"  {arch}: {rows[-1]['images_per_s']:.1f} img/s", flush=True)
    info = machine_info(args.device)
    print()
    print(format_table(rows, COLUMNS, f"model-only training ceiling on {info['device_name']}, torch {info['torch']}, "
                                      f"amp={params['amp']} ({time.perf_counter() - t0:.0f} s)"))
    if not args.no_write:
        path = write_results("models", args.device, rows, params, args.results_dir)
        print(f"\nwrote {path}")
    return rows


if __name__ == "__main__":
    main()
