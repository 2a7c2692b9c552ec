"""Grids of runs: plan what to train, train it in parallel worker processes, tabulate.

:func:`run_grid` takes a list of :class:`kdmed.config.RunConfig` and

1. **plans**: every config and, recursively, its teacher and initialisation, once
   each, with what it needs: ``reuse`` (a valid stored result), ``train``
   (missing or unfinished), ``retrain`` (stale: computed by other code, the
   reason is printed) or ``restore`` (a stored dependency whose ``model.pt`` is not
   on disk but a run to train needs its weights). A frozen store refuses any
   plan that is not all ``reuse`` and lists every run with its reason.
2. **executes** the plan in dependency order (teachers and inits before their
   students), in ``workers`` processes with one torch thread each, so that results
   do not depend on the number of cores, or on any ``concurrent.futures``-style
   executor passed in (a Dask ``distributed`` client's ``get_executor()``, a
   ``submitit`` executor on Slurm) with the results store on a shared filesystem.
   Each run writes its own folder atomically, so a killed grid resumes.
3. returns one summary row per config, in the order given.

``workers`` defaults to ``KDMED_WORKERS`` or the CPUs this process may use
(affinity and cgroup quota); 1 runs in this process. On CUDA the default is 1.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from kdmed.config import RunConfig, run_key
from kdmed.methods import STRATEGIES
from kdmed.progress import report
from kdmed.store import CodeState, FrozenStoreError, ResultStore

ACTIONS = ("reuse", "train", "retrain", "restore")


@dataclasses.dataclass
class Task:
    """One planned step: ``action`` on ``cfg``, after the tasks named in ``after`` (keys)."""

    cfg: RunConfig
    action: str
    reason: str = ""
    after: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.action}:{run_key(self.cfg)}"


def _dependencies(cfg: RunConfig) -> list[RunConfig]:
    return [d for d in (cfg.teacher, cfg.init) if isinstance(d, RunConfig)]


def _all_runs(configs: Iterable[RunConfig]) -> set[str]:
    keys: set[str] = set()
    stack = list(configs)
    while stack:
        cfg = stack.pop()
        if run_key(cfg) not in keys:
            keys.add(run_key(cfg))
            stack.extend(_dependencies(cfg))
    return keys


def plan(configs: Iterable[RunConfig], store: ResultStore) -> list[Task]:
    """What :func:`run_grid` will do for ``configs`` (and their dependencies), in a valid order.

    A reused run loses what a process killed between its last two writes left in its folder
    (unless the store is frozen).
    """
    tasks: dict[str, Task] = {}
    actions: dict[str, str] = {}  # run key -> reuse / train / retrain

    def visit(cfg: RunConfig) -> None:
        key = run_key(cfg)
        if key in actions:
            return
        for dep in _dependencies(cfg):
            visit(dep)
        status = store.status(cfg)
        action = {"complete": "reuse", "stale": "retrain"}.get(status, "train")
        actions[key] = action
        if action == "reuse":
            if not store.frozen:
                store.discard_leftovers(cfg)  # what a kill between its last two writes left behind
            return
        reason = store.stale_reason(cfg) if action == "retrain" else ("unfinished, resumes" if status == "partial"
                                                                      else "not in the store")
        after = []
        for dep in _dependencies(cfg):
            dep_key = run_key(dep)
            if actions[dep_key] != "reuse":
                after.append(f"{actions[dep_key]}:{dep_key}")
            elif not store.checkpoint(dep).exists():
                restore = Task(dep, "restore", "stored without model.pt; its weights are needed")
                tasks.setdefault(restore.key, restore)
                after.append(restore.key)
        task = Task(cfg, action, reason, tuple(after))
        tasks[task.key] = task

    for cfg in configs:
        visit(cfg)
    return list(tasks.values())


def describe_plan(tasks: Sequence[Task]) -> str:
    """One line per task: action, run name, reason."""
    return "\n".join(f"  {t.action:8s} {t.cfg.name} ({run_key(t.cfg)}): {t.reason}" for t in tasks)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = None
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            p = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            quota = q / p if q > 0 else None
        except (OSError, ValueError):
            quota = None
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def default_workers(configs: Sequence[RunConfig]) -> int:
    """``KDMED_WORKERS`` when set, 1 on CUDA, else :func:`available_cpus`."""
    from kdmed.devices import resolve_device

    env = os.environ.get("KDMED_WORKERS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"KDMED_WORKERS={env!r} is not a number of worker processes") from None
        if value < 1:
            raise ValueError(f"KDMED_WORKERS must be >= 1, got {value}")
        return value
    if any(resolve_device(c.train.device).startswith("cuda") for c in configs):
        return 1
    return available_cpus()


def _worker_init(parent: int) -> None:
    import signal

    import torch

    import kdmed  # noqa: F401  (pins the numerics before torch computes anything)

    # Ctrl-C (or a kernel shutting down) reaches the whole process group: the parent stops
    # the pool; a worker must not die mid-write printing a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _own_session()
    _exit_with(parent)


def _own_session() -> None:
    """Make this worker a session (and so a scheduling group) of its own, on Linux.

    Linux's autogroup scheduler (``/proc/sys/kernel/sched_autogroup_enabled``) shares
    the CPUs equally between *sessions*, not processes, and a Jupyter kernel starts a
    session of its own: all of a chapter's workers then shared one session's share, and
    beside one CPU-bound job started elsewhere two workers got one core of two (the
    default book's chapters 01-02 built 2.00x slower, benchmarks/RESULTS.md). A worker
    in its own session gets one process's share, as under a scheduler without autogroup.
    Leaving the parent's process group is why :func:`_exit_with` exists.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setsid()
        except OSError:  # already a session leader
            pass


def _exit_with(parent: int) -> None:
    """End this worker when ``parent`` (the process that owns the pool) is gone, however it died.

    A pool's idle workers wait on a pipe they also hold open, so they never see their
    parent die; in their own sessions a signal to the parent's process group does not reach
    them either. Every write of a run is atomic, so exiting at any point is safe.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="kdmed-exit-with-parent", daemon=True).start()


#: "1" adds a line per epoch of every run to the progress (the book builder sets it on a terminal)
EPOCHS_ENV = "KDMED_PROGRESS_EPOCHS"


def _epoch_lines(cfg: RunConfig) -> list:
    if os.environ.get(EPOCHS_ENV) != "1":
        return []

    def line(epoch: int, record: dict) -> None:
        report(f"    {cfg.name}: epoch {epoch}/{cfg.train.epochs}, validation macro-AUC "
               f"{record.get('val_macro_auc', float('nan')):.3f}")

    return [line]


def execute_task(cfg: RunConfig, action: str, root: str, code: CodeState) -> dict[str, Any]:
    """Run one task in this process (the body of every worker); returns its timing."""
    from kdmed.runner import ensure_checkpoint, run_one

    start = time.perf_counter()
    store = ResultStore(root, code=code)
    if action == "restore":
        ensure_checkpoint(cfg, store)
    else:
        run_one(cfg, store, quiet=True, callbacks=_epoch_lines(cfg))
    return {"seconds": time.perf_counter() - start}


_POOL: dict[int, Executor] = {}


def _local_pool(workers: int) -> Executor:
    """A pool of ``workers`` spawned processes, kept for the next grid of this process (a chapter runs several)."""
    import atexit
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers not in _POOL:
        _close_local_pool()
        # spawn: a forked child of a process whose torch/OpenMP threads are running can hang
        _POOL[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(os.getpid(),))
        atexit.register(_close_local_pool)
    return _POOL[workers]


def _close_local_pool() -> None:
    while _POOL:
        _, pool = _POOL.popitem()
        pool.shutdown(wait=True, cancel_futures=True)


class _Progress:
    """One line per finished task, with the time so far and an estimate of what is left."""

    def __init__(self, total: int, reused: int, show: bool) -> None:
        self.total, self.done, self.show, self.start = total, 0, show, time.perf_counter()
        if show and (total or reused):
            report(f"runs: {reused} reused from the store, {total} to train")

    def finished(self, task: Task, seconds: float) -> None:
        self.done += 1
        if not self.show:
            return
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done)
        report(f"[{self.done}/{self.total}] {task.action} {task.cfg.name}: {seconds:.0f} s "
               f"(elapsed {elapsed / 60:.1f} min, about {left / 60:.1f} min left)")


def _run_tasks(tasks: list[Task], store: ResultStore, workers: int, executor: Executor | None,
               progress: _Progress) -> None:
    if executor is None and workers <= 1:
        for task in tasks:
            progress.finished(task, execute_task(task.cfg, task.action, str(store.root), store.code)["seconds"])
        return
    own = executor is None
    if own:
        executor = _local_pool(workers)
    pending = {t.key: t for t in tasks}
    done: set[str] = set()
    running: dict[Any, Task] = {}
    try:
        while pending or running:
            ready = [t for t in pending.values() if all(a in done for a in t.after)]
            for task in ready:
                del pending[task.key]
                running[executor.submit(execute_task, task.cfg, task.action, str(store.root), store.code)] = task
            if not running:
                raise RuntimeError(f"grid: {len(pending)} task(s) wait for tasks that never run: "
                                   f"{[t.key for t in pending.values()]}")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                timing = future.result()  # re-raises the worker's error
                done.add(task.key)
                progress.finished(task, timing["seconds"])
    except BaseException:
        if own:  # a failed grid leaves no pool behind: the next one starts clean
            _close_local_pool()
        raise


def run_grid(configs: Iterable[RunConfig], store: ResultStore, progress: bool = True, quiet: bool = True,
             workers: int | None = None, executor: Executor | None = None) -> pd.DataFrame:
    """Train what ``configs`` need (see the module docstring) and return one row per config.

    A frozen store raises :class:`kdmed.store.FrozenStoreError` listing every run it
    would have to train, before anything runs.
    """
    configs = list(configs)
    tasks = plan(configs, store)
    if tasks and store.frozen:
        raise FrozenStoreError(f"the results store {store.root} is frozen (render-only build) but "
                               f"{len(tasks)} run(s) are missing, stale or lack a needed checkpoint:\n"
                               f"{describe_plan(tasks)}\nbuild without --frozen to compute them, or "
                               "regenerate the published results (a cold build) and commit them")
    for task in tasks:
        if task.action == "retrain":
            store.say(f"stale: {task.cfg.name} ({run_key(task.cfg)}) {task.reason}; it is retrained")
    reused = len(_all_runs(configs)) - sum(t.action != "restore" for t in tasks)
    bar = _Progress(len(tasks), reused, show=progress)
    _run_tasks(tasks, store, workers if workers is not None else default_workers(configs), executor, bar)
    if tasks:
        store.write_index()
    store.trained.extend(run_key(t.cfg) for t in tasks if t.action != "restore")
    store.restored.extend(run_key(t.cfg) for t in tasks if t.action == "restore")
    return pd.DataFrame([summary_row(c, store.load_result(c)) for c in configs])


def _init_label(cfg: RunConfig) -> str:
    return cfg.init.name if isinstance(cfg.init, RunConfig) else cfg.init


def _teacher_label(cfg: RunConfig) -> str | None:
    if cfg.teacher == "imagenet":
        return f"imagenet:{cfg.teacher_arch}"
    return cfg.teacher.name if isinstance(cfg.teacher, RunConfig) else None


def summary_row(cfg: RunConfig, result: Mapping[str, Any]) -> dict[str, Any]:
    """One tidy table row for a run (what :func:`run_grid` returns per run)."""
    kd, at = STRATEGIES[cfg.strategy]
    m = result["metrics"]
    return {
        "key": result["key"],
        "name": cfg.name,
        "dataset": cfg.data.dataset,
        "institution": cfg.data.option_dict.get("institution"),
        "arch": cfg.arch,
        "strategy": cfg.strategy,
        "init": _init_label(cfg),
        "teacher": _teacher_label(cfg),
        "freeze_through": cfg.freeze_through,
        "train_n": cfg.data.train_n,
        "n_train": result["n_train"],
        "seed": cfg.seed,
        "temperature": cfg.temperature if kd else None,
        "alpha": cfg.alpha if kd else None,
        "beta": cfg.beta if at else None,
        "macro_auc": m.get("macro_auc"),
        "macro_auprc": m.get("macro_auprc"),
        "best_val_macro_auc": result["best_val_macro_auc"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "stopped_early": result["stopped_early"],
        "train_seconds": result["timings"]["train_seconds"],
        "teacher_mode": result["teacher_mode"],
        "device": result["device"],
    }
