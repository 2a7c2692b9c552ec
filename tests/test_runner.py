"""Run configs, the results cache, dependency runs, staleness, resume and determinism."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import kdmed
from kdmed.config import DataSpec, RunConfig, TrainSpec, config_from_dict, replace, run_key
from kdmed.config_files import expand_grid, load_config, load_configs
from kdmed.grid import run_grid
from kdmed.models import load_model
from kdmed.runner import run_one
from kdmed.store import CodeState, ResultStore, StaleResultError, load_history, load_result, load_scores
from kdmed.train import TIMING_COLUMNS

# tiny test sets lack positives of rare classes; the metrics module warns about it on purpose
pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

DATA_C = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 200}, val_n=80, test_n=80)
DATA_B = DataSpec("synthetic-chest", image_size=32, options={"institution": "B", "n": 200}, val_n=80, test_n=80)
TRAIN = TrainSpec(epochs=2, batch_size=32, lr=1e-3, patience=5, plateau_patience=1, augment=False, device="cpu")
SCRATCH = RunConfig(name="scratch", data=DATA_C, arch="small_cnn", strategy="scratch", train=TRAIN, seed=0)
TEACHER = RunConfig(name="teacher-B", data=DATA_B, arch="small_cnn", strategy="scratch", train=TRAIN, seed=0)
KD = RunConfig(name="kd", data=dataclasses.replace(DATA_C, train_n=150), strategy="kd", teacher=TEACHER,
               temperature=2.0, alpha=0.5, train=TRAIN, seed=0)


def _strip(history):
    return [{k: v for k, v in h.items() if k not in TIMING_COLUMNS} for h in history]


# ----------------------------------------------------------------------------- configs
def test_config_round_trip_and_key_fields():
    d = KD.to_dict()
    assert d["data"]["options"] == {"institution": "C", "n": 200}
    assert d["teacher"]["name"] == "teacher-B"
    again = config_from_dict(json.loads(json.dumps(d)))
    assert again == KD and run_key(again) == run_key(KD)
    # labels and the data location do not change the key; anything else does
    assert run_key(dataclasses.replace(KD, name="renamed")) == run_key(KD)
    assert run_key(replace(KD, **{"data.root": "/somewhere"})) == run_key(KD)
    assert run_key(replace(KD, **{"teacher.name": "other"})) == run_key(KD)
    changed = [replace(KD, seed=1), replace(KD, alpha=0.25), replace(KD, **{"data.train_n": 100}),
               replace(KD, **{"train.lr": 1e-4}), replace(KD, **{"teacher.seed": 1}),
               replace(KD, **{"teacher.data.options": {"institution": "A", "n": 200}})]
    keys = {run_key(c) for c in changed} | {run_key(KD)}
    assert len(keys) == len(changed) + 1
    # DataSpec options given as a dict or as pairs in any order are the same spec
    assert DataSpec(options=[("n", 200), ("institution", "C")]) == DataSpec(options={"institution": "C", "n": 200})
    assert hash(KD) == hash(again)


def test_key_is_the_configuration_only(monkeypatch):
    # the code that computed a run is checked by the store (a stale run), not hidden in a new key
    key = run_key(SCRATCH)
    monkeypatch.setattr(kdmed, "__version__", "999.0")
    assert run_key(SCRATCH) == key


def test_config_validation_messages():
    with pytest.raises(ValueError, match="run 'x': unknown strategy 'distill'"):
        RunConfig(name="x", strategy="distill")
    with pytest.raises(ValueError, match="run 'x': strategy 'kd' needs a teacher"):
        RunConfig(name="x", strategy="kd")
    with pytest.raises(ValueError, match="'transfer' needs a pre-trained init"):
        RunConfig(name="x", strategy="transfer")
    with pytest.raises(ValueError, match="'scratch' starts from init='random'"):
        RunConfig(name="x", arch="resnet18", strategy="scratch", init="imagenet")
    with pytest.raises(ValueError, match=r"init=.imagenet. needs an arch with ImageNet weights \(densenet121, resnet18\), not .small_cnn."):
        RunConfig(name="x", strategy="transfer", init="imagenet")
    with pytest.raises(ValueError, match="ImageNet teacher .* only teach by attention transfer"):
        RunConfig(name="x", strategy="kd", teacher="imagenet", teacher_arch="resnet18")
    with pytest.raises(ValueError, match="init run 'scratch' is a small_cnn but this run's arch is resnet18"):
        RunConfig(name="x", arch="resnet18", strategy="transfer", init=SCRATCH)
    with pytest.raises(ValueError, match=r"config.train: unknown field\(s\) \['epochz'\]"):
        config_from_dict({"train": {"epochz": 3}})
    with pytest.raises(ValueError, match="TrainSpec.batch_size must be an int >= 1, got 0"):
        TrainSpec(batch_size=0)
    with pytest.raises(ValueError, match="DataSpec.train_n must be a positive int or None"):
        DataSpec(train_n=0)
    with pytest.raises(ValueError, match="has no field 'epoch'"):
        replace(SCRATCH, **{"train.epoch": 3})


def test_grid_and_yaml_loading(tmp_path):
    grid = expand_grid(SCRATCH, seed=[0, 1], data__train_n=[50, 100])
    assert [(c.seed, c.data.train_n) for c in grid] == [(0, 50), (0, 100), (1, 50), (1, 100)]
    assert grid[1].name == "scratch[seed=0,data.train_n=100]"
    assert len({run_key(c) for c in grid}) == 4

    single = tmp_path / "one.yml"
    single.write_text("name: t\nstrategy: scratch\ndata: {options: {institution: B}, train_n: 50}\n"
                      "train: {epochs: 3}\n")
    cfg = load_config(single)
    assert cfg.data.option_dict == {"institution": "B"} and cfg.train.epochs == 3 and cfg.data.train_n == 50

    many = tmp_path / "runs.yml"
    many.write_text(
        "runs:\n"
        "  teacher_B:\n"
        "    data: {options: {institution: B}}\n"
        "  kd_C:\n"
        "    strategy: kd\n"
        "    teacher: teacher_B\n"
        "    taps: [block4]\n"
        "    grid: {seed: [0, 1], data.train_n: [20]}\n"
    )
    runs = load_configs(many)
    assert [r.name for r in runs] == ["teacher_B", "kd_C[seed=0,data.train_n=20]", "kd_C[seed=1,data.train_n=20]"]
    assert runs[1].teacher == runs[0] and runs[1].taps == ("block4",)
    bad = tmp_path / "bad.yml"
    bad.write_text("runs:\n  kd_C:\n    strategy: kd\n    teacher: nobody\n")
    with pytest.raises(ValueError, match=r"bad.yml: runs.kd_C.teacher: 'nobody' is not a run defined above"):
        load_configs(bad)


# ----------------------------------------------------------------------------- running
def test_run_grid_caches_and_trains_missing_teacher_first(tmp_path):
    store = ResultStore(tmp_path / "results")
    table = run_grid([SCRATCH, KD], store, progress=False)
    # the kd run's teacher is trained (and cached) before the student
    assert store.trained == [run_key(SCRATCH), run_key(TEACHER), run_key(KD)]
    assert list(table["name"]) == ["scratch", "kd"]
    assert table["teacher"].isna()[0] and table.loc[1, "teacher"] == "teacher-B"
    assert list(table["strategy"]) == ["scratch", "kd"]
    assert list(table["institution"]) == ["C", "C"] and list(table["train_n"].fillna(-1)) == [-1, 150]
    assert list(table["n_train"]) == [200, 150]
    assert table.loc[1, "teacher_mode"] == "cached"  # no augmentation: one teacher pass, reused
    assert np.isnan(table.loc[0, "temperature"]) and table.loc[1, "temperature"] == 2.0

    kd = load_result(KD, store)
    assert kd["dependencies"] == {"teacher": run_key(TEACHER)}
    assert kd["epochs_run"] == 2 and len(load_history(KD, store)) == 2
    for col in ("train_task", "train_kd", "val_loss", "val_macro_auc"):
        assert col in load_history(KD, store).columns
    assert table.loc[1, "macro_auc"] == kd["metrics"]["macro_auc"]
    run_dir = store.run_dir(KD)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.pt", "result.json", "scores.npz"]
    model, meta = load_model(run_dir / "model.pt")
    assert meta["classes"] == kd["classes"] and len(meta["classes"]) == 14

    # the stored test metrics are the metrics of the stored scores (independent recomputation)
    from sklearn.metrics import roc_auc_score

    s = load_scores(KD, store)
    aucs = [roc_auc_score(s["y_true"][:, j], s["y_score"][:, j]) for j in range(14)
            if len(np.unique(s["y_true"][:, j])) == 2]
    assert kd["metrics"]["macro_auc"] == pytest.approx(np.mean(aucs), abs=1e-12)

    # val/test images are the same for every method: same rows, labels and patients
    sc = load_scores(SCRATCH, store)
    assert np.array_equal(sc["rows"], s["rows"]) and np.array_equal(sc["y_true"], s["y_true"])
    assert np.array_equal(sc["patient_ids"], s["patient_ids"]) and len(s["rows"]) == 80

    # second call: every run is a cache hit, nothing trains, nothing is rewritten
    mtimes = {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()}
    again = run_grid([SCRATCH, KD], store, progress=False)
    assert len(store.trained) == 3
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()} == mtimes
    assert again.equals(table)

    # a changed field is a cache miss for that run only (the teacher stays cached)
    run_grid([replace(KD, alpha=0.9)], store, progress=False)
    assert store.trained[3:] == [run_key(replace(KD, alpha=0.9))]


def test_stale_results_are_reported_not_used(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    cfg = replace(SCRATCH, **{"train.epochs": 1})
    run_one(cfg, store, quiet=True)
    path = store.run_dir(cfg) / "result.json"
    record = json.loads(path.read_text())
    record["key_config"]["seed"] = 7  # a result filed under the wrong key
    path.write_text(json.dumps(record))
    with pytest.raises(StaleResultError, match=r"result.json is stale for run 'scratch'.*configuration differs"):
        load_result(cfg, store)
    with pytest.raises(StaleResultError, match="delete .* to recompute"):
        run_grid([cfg], store, progress=False)
    assert len(store.trained) == 1

    # a store judged against other code sees the run as stale, and scan says why
    path.write_text(json.dumps({**record, "key_config": cfg.key_dict()}))
    now = dict(store.code.modules)
    other = ResultStore(tmp_path, code=CodeState("0123456789abcdef", tuple(sorted({**now, "kdmed.train": "x"}.items()))))
    assert other.status(cfg) == "stale"
    scan = other.scan()
    assert list(scan["status"]) == ["stale"] and "computed by other code" in scan.loc[0, "reason"]
    with pytest.raises(StaleResultError, match=r"is stale: computed by other code .*changed: kdmed.train\)"):
        load_result(cfg, other)


def test_resume_through_run_one_and_determinism(tmp_path):
    cfg = replace(KD, **{"train.augment": True})  # augmented: a teacher pass per epoch's view
    straight = run_one(cfg, ResultStore(tmp_path / "a"), quiet=True)
    assert straight["teacher_mode"] == "shared"
    twin = run_one(cfg, ResultStore(tmp_path / "b"), quiet=True)
    assert twin["metrics"] == straight["metrics"] and _strip(twin["history"]) == _strip(straight["history"])

    class Killed(Exception):
        pass

    def kill(epoch, record):
        if epoch == 1:
            raise Killed

    store = ResultStore(tmp_path / "c")
    with pytest.raises(Killed):
        run_one(cfg, store, quiet=True, callbacks=[kill])
    run_dir = store.run_dir(cfg)
    assert (run_dir / "last.pt").exists() and not (run_dir / "result.json").exists()
    assert store.status(cfg) == "partial"
    resumed = run_one(cfg, store, quiet=True)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["metrics"] == straight["metrics"]
    assert _strip(resumed["history"]) == _strip(straight["history"])
    assert not (run_dir / "last.pt").exists()
    a = load_scores(cfg, ResultStore(tmp_path / "a"))
    c = load_scores(cfg, store)
    assert all(np.array_equal(a[k], c[k]) for k in a)


def test_transfer_init_from_a_run_with_freezing(tmp_path):
    store = ResultStore(tmp_path)
    source = replace(TEACHER, **{"train.epochs": 1})
    cfg = RunConfig(name="transfer", data=DATA_C, strategy="transfer", init=source, freeze_through="block2",
                    train=replace(SCRATCH, **{"train.epochs": 1}).train)
    result = run_one(cfg, store, quiet=True)
    assert store.trained == [run_key(source), run_key(cfg)]
    assert result["frozen_parameters"] == 6  # conv weight, BN weight and bias of block1 and block2
    src = torch.load(store.run_dir(source) / "model.pt", weights_only=True)["model"]
    dst = torch.load(store.run_dir(cfg) / "model.pt", weights_only=True)["model"]
    for name in src:
        if name.endswith("num_batches_tracked"):
            continue
        assert torch.equal(src[name], dst[name]) == name.startswith(("block1.", "block2.")), name


def test_cross_domain_teacher_teaches_by_attention_only(tmp_path):
    store = ResultStore(tmp_path)
    fundus = RunConfig(name="fundus-teacher", strategy="scratch", train=replace(SCRATCH, **{"train.epochs": 1}).train,
                       data=DataSpec("synthetic-fundus", image_size=32, options={"task": "grade", "n": 120}))
    at = RunConfig(name="at-from-fundus", data=DATA_C, strategy="at", teacher=fundus, taps=("block2",),
                   train=fundus.train)
    result = run_one(at, store, quiet=True)
    teacher = load_result(fundus, store)
    assert teacher["task"] == "multiclass" and teacher["classes"] == [f"grade {g}" for g in range(5)]
    assert "accuracy" in teacher["metrics"] and "quadratic_kappa" in teacher["metrics"]
    assert result["classes"][0] == "No Finding" and result["teacher_mode"] == "cached"
    assert result["strategy"]["student_taps"] == ["block2"] and result["strategy"]["teacher_taps"] == ["block2"]
    assert load_history(at, store)["train_at"].gt(0).all()
    with pytest.raises(ValueError, match=r"distilling the teacher .fundus-teacher.: the model is multiclass.*cannot be compared"):
        run_one(dataclasses.replace(at, strategy="kd", taps=None), store, quiet=True)
