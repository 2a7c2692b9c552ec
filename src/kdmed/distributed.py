"""Multi-process training with DistributedDataParallel, launched by ``torchrun``.

One run config trains on several processes (one per GPU, or several CPU processes
for testing) with the same code as on one device: :class:`kdmed.train.Trainer`
and :func:`kdmed.runner.run_one` notice an initialised process group and then

* shard every loader by rank (:class:`kdmed.loader.ArrayLoader`'s ``rank`` /
  ``world_size``; the configured ``batch_size`` is the *global* batch, each rank
  takes ``batch_size / world_size`` of it);
* wrap the student in ``DistributedDataParallel`` (gradients averaged across
  ranks, so one step equals a single-process step on the global batch);
* all-gather the validation and test predictions, padding removed, so the
  validation macro-AUC, the LR schedule and early stopping see the whole split
  and agree on every rank;
* write files (checkpoints, results) from rank 0 only.

BatchNorm: on CUDA the student's BatchNorm layers become ``SyncBatchNorm``, so
the statistics are those of the global batch, as on one device. PyTorch's
``SyncBatchNorm`` has no CPU kernel, so on CPU (gloo, used for testing) each
rank normalises with its own half-batch and rank 0's running statistics are
broadcast after every epoch; a model without BatchNorm trains exactly as on one
process (``tests/test_distributed.py``). Augmentation draws depend on the rank,
so an augmented multi-process run is statistically, not bitwise, equal to a
single-process one.

This module is a leaf of process-group helpers: it imports nothing of kdmed. The
command line that trains under torchrun is ``python -m kdmed.cli train-ddp``
(see :mod:`kdmed.cli`)::

    torchrun --nproc_per_node=2 -m kdmed.cli train-ddp --config run.yml --results results/x
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

#: the variables torchrun sets for each process
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
BACKENDS = ("gloo", "nccl")
# numpy dtypes that all_gather_array carries, coded as ints so no pickling is needed
_DTYPES = (np.float32, np.float64, np.int64, np.int32, np.uint8)
_MAX_DIMS = 6


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, GPU ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    backend: str | None


# ---------------------------------------------------------------------------- set-up
def _env_int(name: str, low: int) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={raw!r} must be an int >= {low} (set by torchrun)") from None
    if value < low:
        raise ValueError(f"environment variable {name}={value} must be an int >= {low} (set by torchrun)")
    return value


def env_info() -> DistInfo | None:
    """The rank layout torchrun put in the environment, or None when ``WORLD_SIZE`` is unset."""
    if "WORLD_SIZE" not in os.environ:
        return None
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0) if "LOCAL_RANK" in os.environ else rank
    if rank >= world:
        raise ValueError(f"environment variable RANK={rank} must be < WORLD_SIZE={world}")
    return DistInfo(rank, world, local, None)


def default_backend(device: str = "auto") -> str:
    """"nccl" when training on CUDA ("auto" with a visible GPU, or "cuda..."), else "gloo"."""
    if device == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_from_env(backend: str | None = None, device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    ``backend``: "nccl" or "gloo" (default :func:`default_backend` of ``device``).
    On CUDA the process uses GPU ``LOCAL_RANK``. Without ``WORLD_SIZE`` in the
    environment (a plain ``python`` start) nothing is initialised and rank 0 of 1
    is returned, so the same script runs on one device. Calling it again in an
    initialised process returns the current layout.
    """
    if is_initialized():
        return info()
    env = env_info()
    if env is None:
        return DistInfo(0, 1, 0, None)
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start the script with torchrun "
                           "(or set all of " + ", ".join(ENV_VARS) + ")")
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("backend 'nccl' needs CUDA GPUs but none is visible; use backend 'gloo' on CPU")
        if env.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK={env.local_rank} but only {torch.cuda.device_count()} GPU(s) are visible")
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    return info()


def shutdown() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    """Whether a default process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """The GPU index of this process on its node (``LOCAL_RANK``; 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() else 0


def info() -> DistInfo:
    """The current layout as a :class:`DistInfo`."""
    return DistInfo(rank(), world_size(), local_rank(), dist.get_backend() if is_initialized() else None)


def is_distributed() -> bool:
    """Whether more than one process trains together."""
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that writes files and shows progress bars."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if is_distributed():
        dist.barrier()


def local_device(device: str) -> str:
    """``device`` for this rank: a bare "cuda" becomes ``cuda:<LOCAL_RANK>`` under a process group."""
    if device == "cuda" and is_distributed():
        return f"cuda:{local_rank()}"
    return device


def per_rank_batch_size(global_batch: int, world: int | None = None) -> int:
    """The batch each rank takes so that the ranks together make ``global_batch``."""
    world = world_size() if world is None else world
    if global_batch % world:
        raise ValueError(f"batch_size {global_batch} is the global batch and must be divisible by the "
                         f"{world} processes (each takes batch_size / {world})")
    return global_batch // world


def check_loader(loader: Any) -> None:
    """Refuse a sharded loader whose rank/world_size do not match the process group."""
    loader_world = getattr(loader, "world_size", 1)
    if loader_world == 1:
        return
    if not is_initialized():
        raise RuntimeError(f"the loader is sharded for world_size={loader_world} but no process group is "
                           "initialised: start with torchrun and call kdmed.distributed.init_from_env()")
    if loader_world != world_size() or getattr(loader, "rank", 0) != rank():
        raise RuntimeError(f"the loader is rank {loader.rank} of {loader_world} but this process is rank "
                           f"{rank()} of {world_size()}")


# ---------------------------------------------------------------------------- collectives
def _comm_device() -> torch.device:
    # nccl moves CUDA tensors only; gloo works on CPU tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Sums of ``values`` (scalars or tensors, any device) over all ranks, on their original devices."""
    if not is_distributed():
        return list(values)
    dev = _comm_device()
    flat = torch.cat([v.detach().reshape(-1).to(dev, torch.float64) for v in values])
    dist.all_reduce(flat)
    out, start = [], 0
    for v in values:
        out.append(flat[start : start + v.numel()].reshape(v.shape).to(v.device, v.dtype))
        start += v.numel()
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one rank."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_gather_array(arr: np.ndarray) -> list[np.ndarray]:
    """Every rank's ``arr``, in rank order; the first axis may differ in length between ranks.

    Each rank sends its array padded to the longest first axis; the padding is cut
    off again, so element ``r`` is exactly rank ``r``'s array. dtype and trailing
    shape must agree across ranks (checked).
    """
    arr = np.ascontiguousarray(arr)
    if not is_distributed():
        return [arr.copy()]
    if arr.ndim == 0 or arr.ndim > _MAX_DIMS:
        raise ValueError(f"all_gather_array takes arrays with 1 to {_MAX_DIMS} dimensions, got shape {arr.shape}")
    codes = [np.dtype(d) for d in _DTYPES]
    if arr.dtype not in codes:
        raise ValueError(f"all_gather_array: unsupported dtype {arr.dtype}; supported: {', '.join(map(str, codes))}")
    dev = _comm_device()
    meta = torch.full((2 + _MAX_DIMS,), -1, dtype=torch.int64)
    meta[0], meta[1] = codes.index(arr.dtype), arr.ndim
    meta[2 : 2 + arr.ndim] = torch.tensor(arr.shape, dtype=torch.int64)
    metas = [torch.empty_like(meta, device=dev) for _ in range(world_size())]
    dist.all_gather(metas, meta.to(dev))
    metas = [m.cpu() for m in metas]
    for r, m in enumerate(metas):
        if m[0] != meta[0] or m[1] != meta[1] or not torch.equal(m[3 : 2 + arr.ndim], meta[3 : 2 + arr.ndim]):
            theirs = tuple(int(x) for x in m[2 : 2 + int(m[1])])
            raise ValueError(f"all_gather_array: rank {r} sends {codes[int(m[0])]} {theirs} but rank {rank()} "
                             f"sends {arr.dtype} {arr.shape}; only the first axis may differ")
    lengths = [int(m[2]) for m in metas]
    longest = max(lengths)
    tensor = torch.from_numpy(arr)
    padded = torch.zeros((longest, *arr.shape[1:]), dtype=tensor.dtype, device=dev)
    padded[: arr.shape[0]] = tensor.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return [p[:n].cpu().numpy() for p, n in zip(parts, lengths)]


def gather_loader_scores(loader: Any, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Put every rank's predictions of a sharded loader back together, in ``loader.rows`` order.

    ``scores`` ``[n_r, K]`` and ``index`` ``[n_r]`` (image rows) are this rank's. The
    repeated rows a sharded loader pads with are dropped; every row of
    ``loader.rows`` must be covered (a ``drop_last`` loader is refused).
    """
    all_scores = np.concatenate(all_gather_array(np.asarray(scores)))
    all_index = np.concatenate(all_gather_array(np.asarray(index, dtype=np.int64)))
    rows = np.asarray(loader.rows, dtype=np.int64)
    sorter = np.argsort(rows, kind="stable")
    where = np.searchsorted(rows, all_index, sorter=sorter)
    ok = where < rows.size
    ok[ok] = rows[sorter[where[ok]]] == all_index[ok]
    if not ok.all():
        raise ValueError(f"gathered predictions name image rows {all_index[~ok][:5].tolist()} that the loader "
                         "does not hold")
    pos = sorter[where]
    seen = np.zeros(rows.size, dtype=bool)
    seen[pos] = True
    if not seen.all():
        raise ValueError(f"the ranks predicted {int(seen.sum())} of the loader's {rows.size} rows; a sharded "
                         "prediction needs every row (do not use drop_last for validation/test loaders)")
    out = np.empty((rows.size, *all_scores.shape[1:]), dtype=all_scores.dtype)
    # padded duplicates are the same row predicted twice by the same weights; the first copy is kept
    first = np.unique(pos, return_index=True)[1]
    out[pos[first]] = all_scores[first]
    return out


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if not is_distributed():
        return
    for buf in model.buffers():
        if dist.get_backend() == "nccl" or buf.device.type == "cpu":
            dist.broadcast(buf, src=0)
        else:
            tmp = buf.cpu()
            dist.broadcast(tmp, src=0)
            buf.copy_(tmp)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` for ``device`` (BatchNorm synchronised on CUDA).

    The wrapper shares the module's parameters, so an optimiser built on ``model``
    keeps working; the module's BatchNorm layers are replaced in place by
    ``SyncBatchNorm`` on CUDA (same parameters and state-dict keys).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = torch.device(device)
    if device.type == "cuda":
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if converted is not model:
            raise ValueError("the model itself is a BatchNorm layer; wrap it in a module first")
        return DDP(model, device_ids=[device.index if device.index is not None else torch.cuda.current_device()])
    return DDP(model)
