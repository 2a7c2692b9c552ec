"""Shared teacher outputs: a student that reads them gets the bits of one that computes them; the cache is bounded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kdmed.config import DataSpec, RunConfig, TrainSpec
from kdmed.grid import run_grid
from kdmed.store import ResultStore
from kdmed.teacher_views import cache_size, prune

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

TRAIN = TrainSpec(epochs=3, batch_size=16, lr=1e-3, patience=3, plateau_patience=1, augment=True, train_eval_n=0,
                  device="cpu")
DATA = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 96}, val_n=32, test_n=32)
TEACHER = RunConfig(name="teacher", data=DataSpec(**{**DATA.__dict__, "options": {"institution": "B", "n": 96}}),
                    arch="small_densenet", train=TRAIN)
TARGET = dataclasses.replace(DATA, train_n=64)


def _students(seed: int = 1) -> list[RunConfig]:
    return [RunConfig(name="kd", data=TARGET, strategy="kd", teacher=TEACHER, temperature=2.0, train=TRAIN, seed=seed),
            RunConfig(name="kd-T8", data=TARGET, strategy="kd", teacher=TEACHER, temperature=8.0, train=TRAIN, seed=seed),
            RunConfig(name="kd+at", data=TARGET, strategy="kd+at", teacher=TEACHER, taps=("block2", "block3"),
                      train=TRAIN, seed=seed),
            RunConfig(name="at", data=TARGET, strategy="at", teacher=TEACHER, taps=("block2", "block3"), train=TRAIN,
                      seed=seed)]


@pytest.mark.slow
def test_students_reading_shared_outputs_equal_students_computing_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_TEACHER_CACHE", str(tmp_path / "views"))
    shared = ResultStore(tmp_path / "shared")
    run_grid(_students(), shared, progress=False)
    results = {c.name: shared.load_result(c) for c in _students()}
    passes = {k: r["timings"]["teacher_passes"] for k, r in results.items()}
    # the first kd student computed the 3 views, the second read them; the same for the AT pair
    assert passes["kd"] == {"computed": 3, "read_from_cache": 0} and passes["kd-T8"] == {"computed": 0, "read_from_cache": 3}
    assert passes["kd+at"]["computed"] == 3 and passes["at"] == {"computed": 0, "read_from_cache": 3}
    assert results["kd-T8"]["timings"]["teacher_pass_seconds"] == 0.0 < results["kd"]["timings"]["teacher_pass_seconds"]
    assert all(r["teacher_mode"] == "shared" for r in results.values())

    monkeypatch.setenv("KDMED_TEACHER_CACHE", "off")
    alone = ResultStore(tmp_path / "alone")
    run_grid(_students(), alone, progress=False)
    for cfg in _students():
        assert np.array_equal(shared.load_scores(cfg)["y_score"], alone.load_scores(cfg)["y_score"]), cfg.name
        assert [h["train_loss"] for h in shared.load_result(cfg)["history"]] == \
               [h["train_loss"] for h in alone.load_result(cfg)["history"]], cfg.name
        assert alone.load_result(cfg)["timings"]["teacher_passes"]["read_from_cache"] == 0


def test_the_cache_is_pruned_to_its_bound(tmp_path):
    for k in range(5):
        entry = tmp_path / f"entry{k}"
        entry.mkdir()
        (entry / "epoch-0.npz").write_bytes(b"x" * 1000)
    assert cache_size(tmp_path) == 5000
    removed = prune(tmp_path, 2500)
    assert len(removed) == 3 and cache_size(tmp_path) == 2000
