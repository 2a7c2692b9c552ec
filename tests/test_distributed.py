"""Multi-process training (DistributedDataParallel, gloo on CPU, 2 processes) against one process.

Exactness setting (``test_ddp_trainer_matches_single_process``): a global batch of
16 split as 8 per rank with averaged gradients is one single-process step on the
same 16 images only when nothing depends on the batch composition. So the test
uses a student and a teacher **without BatchNorm** (PyTorch's SyncBatchNorm has
no CPU kernel; on CUDA kdmed converts BatchNorm to SyncBatchNorm), **no
augmentation** (its random draws depend on the rank), labels without NaN (every
loss is then a plain mean over equal halves) and an even training set
(no padding). The validation set is odd-sized, so the gathered predictions must
drop the padded duplicate. Under these conditions the per-epoch history
(losses, train/val macro-AUC) and the final weights equal the single-process
run up to float error.

``test_torchrun_cli_trains_a_run_config`` runs the real command line
(``torchrun -m kdmed.cli train-ddp``) on a small_cnn run (BatchNorm per rank,
augmentation on, so not bitwise equal to one process) and checks what it wrote
against an independent single-process evaluation of the saved model.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from kdmed import distributed
from kdmed.cli import read_configs

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

WORKER = textwrap.dedent(
    '''
    """One rank (or the single process) of the DDP exactness test."""
    import json
    import sys
    from pathlib import Path

    import numpy as np
    import torch
    from torch import nn

    from kdmed import distributed
    from kdmed.loader import ArrayLoader
    from kdmed.strategies import Strategy
    from kdmed.config import TrainSpec
    from kdmed.train import Trainer, TIMING_COLUMNS

    GLOBAL_BATCH = 16


    def tiny_net(seed, k=3):
        """conv-ReLU-pool x2, average pool, linear: no BatchNorm, so samples never interact."""
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(16, k))


    def data(n, seed):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, size=(n, 1, 16, 16), dtype=np.uint8)
        # label c: is the mean of band c (rows 5c..5c+5) brighter than the median image's
        bands = np.stack([x[:, 0, 5 * c : 5 * c + 5].mean(axis=(1, 2)) for c in range(3)], axis=1)
        y = (bands > np.median(bands, axis=0)).astype(np.float32)
        return x, y


    def run(out: Path, rank: int, world: int):
        torch.set_num_threads(1)
        x_train, y_train = data(64, 0)
        x_val, y_val = data(45, 1)  # odd: one padded duplicate per epoch on 2 ranks
        shard = dict(rank=rank, world_size=world)
        train = ArrayLoader(x_train, y_train, batch_size=GLOBAL_BATCH // world, shuffle=True, seed=3,
                            augment=False, drop_last=True, **shard)
        val = ArrayLoader(x_val, y_val, batch_size=10, shuffle=False, **shard)
        student, teacher = tiny_net(0), tiny_net(1)
        strategy = Strategy("kd", "multilabel", teacher=teacher, temperature=2.0, alpha=0.5)
        ckpt = out / f"last-{world}-{rank}.pt"
        fit = Trainer(student, strategy, TrainSpec(epochs=3, lr=1e-2, patience=10), quiet=True, device="cpu",
                      checkpoint_path=ckpt, fingerprint="ddp-test").fit(train, val)
        history = [{k: v for k, v in h.items() if k not in TIMING_COLUMNS} for h in fit.history]
        record = {"history": history, "best_epoch": fit.best_epoch, "teacher_mode": fit.teacher_mode,
                  "seen": [h["images_per_s"] * h["train_seconds"] for h in fit.history]}
        if world > 1:
            # unequal lengths, padding removed; and a trailing-shape mismatch refused on every rank
            parts = distributed.all_gather_array(np.arange(rank + 2, dtype=np.int64) * 10 + rank)
            record["gathered"] = [p.tolist() for p in parts]
            try:
                distributed.all_gather_array(np.zeros((2, 3 + rank), dtype=np.float32))
            except ValueError as err:
                record["mismatch_error"] = str(err)
        (out / f"record-{world}-{rank}.json").write_text(json.dumps(record))
        torch.save({k: v.clone() for k, v in student.state_dict().items()}, out / f"weights-{world}-{rank}.pt")
        return record


    if __name__ == "__main__":
        layout = distributed.init_from_env()
        try:
            run(Path(sys.argv[1]), layout.rank, layout.world_size)
        finally:
            distributed.shutdown()
    '''
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_ddp_trainer_matches_single_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = str(_free_port())
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                             MASTER_PORT=port))
        for r in range(2)
    ]
    # the single-process reference runs here while the two ranks train (it sets 1 torch thread: undone after)
    threads = torch.get_num_threads()
    try:
        single = runpy.run_path(str(script))["run"](tmp_path, 0, 1)
    finally:
        torch.set_num_threads(threads)
    for r, p in enumerate(procs):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, f"rank {r} failed:\n{out}"

    ranks = [json.loads((tmp_path / f"record-2-{r}.json").read_text()) for r in range(2)]
    # every rank computed the same numbers from the same gathered/summed values
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["teacher_mode"] == single["teacher_mode"] == "cached"
    # the global batch: 64 training images per epoch in total, 32 on each rank
    assert np.allclose(ranks[0]["seen"], 64) and np.allclose(single["seen"], 64)
    assert len(single["history"]) == len(ranks[0]["history"]) == 3
    for h1, h2 in zip(single["history"], ranks[0]["history"]):
        assert set(h1) == set(h2) >= {"train_loss", "train_task", "train_kd", "val_loss", "val_macro_auc"}
        for k in h1:
            assert h2[k] == pytest.approx(h1[k], rel=1e-5, abs=1e-6), (h1["epoch"], k)
    assert ranks[0]["best_epoch"] == single["best_epoch"]
    # training changed the model, so equal AUCs are not the trivial untrained value
    assert single["history"][-1]["train_loss"] < single["history"][0]["train_loss"]

    w_single, w0, w1 = (_weights(tmp_path / f) for f in ("weights-1-0.pt", "weights-2-0.pt", "weights-2-1.pt"))
    for k in w_single:
        assert torch.equal(w0[k], w1[k]), k  # DDP keeps the replicas identical
        torch.testing.assert_close(w0[k], w_single[k], rtol=1e-4, atol=1e-5)

    # only rank 0 writes the training checkpoint
    assert (tmp_path / "last-2-0.pt").is_file() and not (tmp_path / "last-2-1.pt").exists()
    assert torch.load(tmp_path / "last-2-0.pt", weights_only=True)["epoch"] == 3

    assert ranks[0]["gathered"] == ranks[1]["gathered"] == [[0, 10], [1, 11, 21]]
    for r in range(2):
        assert "only the first axis may differ" in ranks[r]["mismatch_error"]


def test_torchrun_cli_trains_a_run_config(tmp_path):
    from kdmed.metrics import macro_auc
    from kdmed.models import load_model
    from kdmed.config_files import load_config
    from kdmed.runner import load_split
    from kdmed.store import ResultStore
    from kdmed.predict import predict

    run = {
        "name": "teacher-ddp",
        "data": {"dataset": "synthetic-chest", "image_size": 32, "options": {"institution": "B", "n": 300},
                 "val_n": 61, "test_n": 61},
        "arch": "small_cnn",
        "strategy": "scratch",
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.002, "augment": True, "device": "cpu", "patience": 5},
        "seed": 0,
    }
    config = tmp_path / "run.yml"
    config.write_text(yaml.safe_dump(run))
    store_dir = tmp_path / "store"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "kdmed.cli", "train-ddp",
           "--config", str(config), "--results", str(store_dir), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("teacher-ddp: key") == 1  # rank 0 reports, once

    cfg = load_config(config)
    store = ResultStore(store_dir)
    result = store.load_result(cfg)
    run_dir = store.run_dir(cfg)
    assert result["world_size"] == 2 and result["n_train"] == len(load_split(cfg.data, "train", progress=False).dataset)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.pt", "result.json", "scores.npz"]
    assert len(result["history"]) == 2

    # independent check of the gathered validation: the saved (best-epoch) model, evaluated in this
    # one process on the whole validation split, gives the validation AUC the ranks agreed on
    model, _ = load_model(run_dir / "model.pt")
    val = load_split(cfg.data, "val", progress=False)
    from kdmed.loader import ArrayLoader

    scores = predict(model, ArrayLoader(val.images, val.labels, batch_size=17, shuffle=False))
    assert len(scores) == 61
    assert macro_auc(val.labels, scores) == pytest.approx(result["best_val_macro_auc"], abs=1e-6)
    best = result["history"][result["best_epoch"] - 1]
    assert best["val_macro_auc"] == pytest.approx(result["best_val_macro_auc"], abs=1e-12)

    # the stored test scores cover every test image once, in dataset order
    test = load_split(cfg.data, "test", progress=False)
    with np.load(run_dir / "scores.npz", allow_pickle=False) as z:
        y_score, y_true = z["y_score"], z["y_true"]
    ref = predict(model, ArrayLoader(test.images, test.labels, batch_size=64, shuffle=False))
    np.testing.assert_allclose(y_score, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(y_true, test.labels.astype(np.float32))
    known = [c for c in range(y_true.shape[1]) if 0 < np.nansum(y_true[:, c]) < np.sum(~np.isnan(y_true[:, c]))]
    sk = np.mean([roc_auc_score(y_true[~np.isnan(y_true[:, c]), c], ref[~np.isnan(y_true[:, c]), c]) for c in known])
    assert result["metrics"]["macro_auc"] == pytest.approx(sk, abs=1e-5)


# ---------------------------------------------------------------------------- one process, no group
def test_single_process_helpers(monkeypatch):
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    assert distributed.init_from_env() == distributed.DistInfo(0, 1, 0, None)
    assert not distributed.is_initialized() and distributed.is_main_process() and distributed.world_size() == 1
    assert distributed.local_device("cuda") == "cuda"
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    (got,) = distributed.all_gather_array(a)
    np.testing.assert_array_equal(got, a)
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.per_rank_batch_size(32, 4) == 8
    with pytest.raises(ValueError, match="batch_size 30 is the global batch and must be divisible by the 4"):
        distributed.per_rank_batch_size(30, 4)


def test_environment_and_loader_errors(monkeypatch, tmp_path):
    from kdmed.loader import ArrayLoader

    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' must be an int >= 1"):
        distributed.env_info()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 must be < WORLD_SIZE=2"):
        distributed.env_info()
    monkeypatch.setenv("RANK", "1")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR, MASTER_PORT is not: start the script with torchrun"):
        distributed.init_from_env(backend="gloo")

    x = np.zeros((10, 1, 8, 8), np.uint8)
    y = np.zeros((10, 2), np.float32)
    loader = ArrayLoader(x, y, batch_size=2, shuffle=False, rank=1, world_size=2)
    with pytest.raises(RuntimeError, match="sharded for world_size=2 but no process group is initialised"):
        distributed.check_loader(loader)

    single = tmp_path / "one.yml"
    single.write_text("name: a\nstrategy: scratch\n")
    with pytest.raises(ValueError, match="holds a single run; --run only applies"):
        read_configs(str(single), ["a"])
    many = tmp_path / "many.yml"
    many.write_text("runs:\n  a: {strategy: scratch}\n  b: {strategy: scratch, seed: 1}\n")
    assert [c.name for c in read_configs(str(many), ["b"])] == ["b"]
    with pytest.raises(ValueError, match=r"no run named \['c'\]; runs in the file: \['a', 'b'\]"):
        read_configs(str(many), ["c"])
