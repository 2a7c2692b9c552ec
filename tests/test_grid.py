"""Grids: the plan, parallel worker processes and a Dask cluster give the sequential run's bits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from kdmed.config import DataSpec, RunConfig, TrainSpec, run_key
from kdmed.grid import available_cpus, default_workers, plan, run_grid
from kdmed.store import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

TRAIN = TrainSpec(epochs=2, batch_size=16, lr=1e-3, patience=2, plateau_patience=1, augment=True, train_eval_n=32,
                  device="cpu")
DATA_C = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 96}, val_n=32, test_n=32)
DATA_A = DataSpec("synthetic-chest", image_size=32, options={"institution": "A", "n": 96}, val_n=32, test_n=32)
TEACHER = RunConfig(name="teacher", data=DATA_C, strategy="scratch", train=TRAIN, seed=0)
INIT = RunConfig(name="init", data=DATA_A, strategy="scratch", train=TRAIN, seed=0)
TARGET = dataclasses.replace(DATA_C, train_n=64)


def _grid() -> list[RunConfig]:
    runs = []
    for seed in (0, 1):
        runs += [RunConfig(name=f"scratch{seed}", data=dataclasses.replace(TARGET, subset_seed=seed), train=TRAIN,
                           seed=seed),
                 RunConfig(name=f"kd{seed}", data=dataclasses.replace(TARGET, subset_seed=seed), strategy="kd",
                           teacher=TEACHER, train=TRAIN, seed=seed),
                 RunConfig(name=f"tkd{seed}", data=dataclasses.replace(TARGET, subset_seed=seed), strategy="kd",
                           init=INIT, teacher=TEACHER, train=TRAIN, seed=seed)]
    return runs


def _scores(store: ResultStore, configs) -> dict[str, np.ndarray]:
    return {c.name: store.load_scores(c)["y_score"] for c in configs}


def test_plan_orders_dependencies_first_and_lists_each_run_once(tmp_path):
    tasks = plan(_grid(), ResultStore(tmp_path))
    names = [t.cfg.name for t in tasks]
    assert names.count("teacher") == 1 and names.count("init") == 1 and len(names) == 8
    assert names.index("teacher") < names.index("kd0") and names.index("init") < names.index("tkd0")
    by_name = {t.cfg.name: t for t in tasks}
    assert set(by_name["tkd1"].after) == {f"train:{run_key(TEACHER)}", f"train:{run_key(INIT)}"}
    assert by_name["scratch0"].after == ()


@pytest.mark.slow
def test_worker_processes_give_the_sequential_bits(tmp_path):
    configs = _grid()
    seq = ResultStore(tmp_path / "seq")
    par = ResultStore(tmp_path / "par")
    table_seq = run_grid(configs, seq, progress=False, workers=1)
    table_par = run_grid(configs, par, progress=False, workers=2)
    a, b = _scores(seq, configs), _scores(par, configs)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert table_seq["macro_auc"].tolist() == table_par["macro_auc"].tolist()
    assert sorted(par.trained) == sorted(seq.trained)


@pytest.mark.slow
def test_a_dask_cluster_gives_the_sequential_bits(tmp_path):
    distributed = pytest.importorskip("distributed")
    configs = _grid()[:3]
    seq = ResultStore(tmp_path / "seq")
    run_grid(configs, seq, progress=False, workers=1)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dask = ResultStore(tmp_path / "dask")
        run_grid(configs, dask, progress=False, executor=client.get_executor())
    a, b = _scores(seq, configs), _scores(dask, configs)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_worker_count(monkeypatch):
    assert available_cpus() >= 1
    monkeypatch.setenv("KDMED_WORKERS", "3")
    assert default_workers(_grid()) == 3
    monkeypatch.setenv("KDMED_WORKERS", "zero")
    with pytest.raises(ValueError, match="KDMED_WORKERS='zero' is not a number"):
        default_workers(_grid())
    monkeypatch.delenv("KDMED_WORKERS")
    assert default_workers(_grid()) == available_cpus()


_POOL_OWNER = """
import json, os, sys, time
from kdmed.grid import _local_pool

pool = _local_pool(2)
sids = {pool.submit(os.getsid, 0).result() for _ in range(4)}
print(json.dumps({"sid": os.getsid(0), "workers": sorted(sids)}), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for a reaper."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sessions as scheduling groups are Linux's")
def test_pool_workers_are_sessions_of_their_own_and_exit_when_their_parent_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", _POOL_OWNER], stdout=subprocess.PIPE, text=True)
    try:
        seen = json.loads(owner.stdout.readline())
        workers = seen["workers"]
        # a worker is the leader of its own session (its session id is its pid), not in the owner's
        assert workers and seen["sid"] not in workers
        assert all(_running(pid) for pid in workers)
        assert all(os.getsid(pid) == pid for pid in workers)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 15
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers), f"pool workers {workers} outlived their killed parent"
