"""The chapters' tables, computed from a store of fabricated runs whose scores and histories we choose."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kdmed import analysis, experiments
from kdmed.runner import evaluate_on
from kdmed.store import ResultStore
from kdmed.study import CONTRASTS, Study

N_TEST, K = 300, 3
RNG = np.random.default_rng(0)
Y = (RNG.random((N_TEST, K)) < 0.3).astype(np.float32)
PATIENTS = np.repeat(np.arange(N_TEST // 2), 2).astype(str)
#: the signal strength each arm's scores carry (higher = a better model)
QUALITY = {"scratch": 0.5, "kd": 1.2, "at": 0.6, "kd+at": 1.1, "transfer@near": 1.0, "transfer-frozen@near": 0.9,
           "transfer+kd@near": 1.3, "transfer+at@near": 1.05, "transfer+kd+at@near": 1.2, "transfer@far": 0.7,
           "transfer-frozen@far": 0.65, "transfer+kd@far": 1.1}


def _scores(quality: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (quality * Y + rng.normal(0, 1, Y.shape)).astype(np.float32)


def fabricate(store: ResultStore, cfg, quality: float, seed: int, epochs: int = 12, best: int = 8) -> None:
    """A complete, valid run of ``cfg`` with chosen test scores and a history that peaks at ``best``."""
    s = _scores(quality, seed)
    auc = float(np.mean([roc_auc_score(Y[:, k], s[:, k]) for k in range(K)]))
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_eval_loss": 0.5 / e, "val_loss": 0.6 + abs(e - best) / 50,
                "train_eval_macro_auc": 0.9, "val_macro_auc": 0.8 - abs(e - best) / 100, "lr": 1e-3,
                "seconds": 1.0, "train_seconds": 0.8, "images_per_s": 100.0} for e in range(1, epochs + 1)]
    store.write_config(cfg)
    store.write_scores(cfg, {"y_true": Y, "y_score": s, "patient_ids": PATIENTS, "rows": np.arange(N_TEST)})
    store.write_result(cfg, {**store.header(cfg), "metrics": {"macro_auc": auc}, "history": history,
                             "best_epoch": best, "best_val_macro_auc": 0.8, "epochs_run": epochs,
                             "stopped_early": epochs < cfg.train.epochs, "n_train": cfg.data.train_n or 0,
                             "classes": ["a", "b", "c"], "task": "multilabel", "timings": {"train_seconds": 1.0},
                             "compute": {"numerics": "reproducible", "isa": "AVX2", "threads": 1, "device": "cpu"}})


@pytest.fixture()
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_RESULTS_DIR", str(tmp_path))  # the bootstrap cache goes beside the fabricated runs
    study = dataclasses.replace(Study.from_profile("smoke"), n_boot=200, epochs=50, patience=4)
    store = ResultStore(tmp_path)
    head = experiments.headline(study)
    for cfg, lab in head:
        fabricate(store, cfg, QUALITY[lab["arm"]], seed=100 * lab["seed"] + hash(lab["arm"]) % 97)
    return study, store, head


def test_arm_and_contrast_tables_match_the_per_seed_aucs(world):
    study, store, head = world
    scores, test = analysis.grouped_scores(store, head)
    bs = analysis.bootstrap(study, scores, test)
    assert test["classes"] == ["a", "b", "c"]  # the test split's class names reach the bootstrap
    assert bs.classes_used == ["a", "b", "c"] and analysis.excluded_classes_sentence(bs) == (
        "All 3 classes have at least 5 positive and 5 negative test images and enter every macro-AUC.")
    arms = analysis.arm_table(bs, ["kd", "transfer@near"])
    kd = [store.load_result(c)["metrics"]["macro_auc"] for c in head.select(arm="kd").configs]
    assert arms.loc["kd", "macro-AUC"] == pytest.approx(np.mean(kd), abs=1e-9)
    gains = analysis.with_holm(analysis.contrast_table(bs, CONTRASTS), real_data=False)
    near = [store.load_result(c)["metrics"]["macro_auc"] for c in head.select(arm="transfer@near").configs]
    assert gains.loc["kd − transfer (near)", "gain (AUC points)"] == pytest.approx(100 * np.mean(np.subtract(kd, near)))
    assert (gains["p (Holm)"] >= gains["p"] - 1e-12).all()
    assert set(gains["verdict"]) <= {"holds on the stand-in", "opposite on the stand-in", "unresolved on the stand-in"}


def test_excluded_classes_sentence_names_what_every_macro_auc_leaves_out():
    from kdmed import inference

    y = np.zeros((40, 4), dtype=np.float32)
    y[:20, 0] = 1
    y[:1, 1] = 1  # Fracture: 1 positive
    y[10:30, 2] = 1
    patients = np.arange(40).astype(str)  # Pleural Other (column 3): no positive
    scores = {"a": [y + np.random.default_rng(0).normal(size=y.shape)]}
    bs = inference.auc_bootstrap(y, patients, scores, n_boot=5,
                                 classes=["Edema", "Fracture", "Effusion", "Pleural Other"])
    assert analysis.excluded_classes_sentence(bs) == (
        "2 classes have fewer than 5 positive or negative test images and are left out of every macro-AUC: "
        "Fracture (1 positive), Pleural Other (0 positives).")
    one = inference.auc_bootstrap(y[:, :2], patients, {"a": [s[:, :2] for s in scores["a"]]}, n_boot=5,
                                  classes=["Edema", "Fracture"])
    assert analysis.excluded_classes_sentence(one) == (
        "1 class has fewer than 5 positive or negative test images and is left out of every macro-AUC: "
        "Fracture (1 positive).")


def test_training_summary_finds_capped_runs_and_convergence(world, tmp_path):
    study, store, head = world
    summary = analysis.training_summary(store, head)
    assert (summary["best epoch"] == 8).all() and not summary["at cap"].any()
    # 95 % of the best validation AUC (0.8): the first epoch within 0.04 of it, here epoch 4
    assert (summary["epochs to 95 % of best"] == 4).all()
    assert summary["gap at best (AUC points)"].iloc[0] == pytest.approx(100 * (0.9 - 0.8))
    capped_store = ResultStore(tmp_path / "capped")
    cfg = head.configs[0]
    fabricate(capped_store, cfg, 1.0, 0, epochs=cfg.train.epochs, best=cfg.train.epochs)
    capped = analysis.capped_runs(analysis.training_summary(capped_store, experiments.Grid([cfg], [head.labels[0]])))
    assert len(capped) == 1


def test_regime_relates_the_gain_to_the_teachers_advantage(world):
    study, store, _ = world
    sweep = experiments.strength_sweep(study)
    quality_of_pool = {p: 0.6 + 0.4 * i for i, p in enumerate(study.teacher_pool_sizes)}
    for cfg, lab in sweep:
        if not store.is_complete(cfg):
            q = quality_of_pool[lab["pool"]] if lab["arm"] in ("kd", "transfer+kd@near", "transfer+kd@far") else 1.0
            fabricate(store, cfg, q, seed=7 * lab["seed"] + lab["pool"])
    for pool in study.teacher_pool_sizes:
        for seed in study.sweep_seeds:
            teacher = study.teacher_for(seed, pool)
            if not store.is_complete(teacher):
                fabricate(store, teacher, 1.5 * quality_of_pool[pool], seed=pool)
            s = _scores(1.5 * quality_of_pool[pool], pool)
            store.write_evaluation(teacher, study.target_data(), "test",
                                   {"y_true": Y, "y_score": s, "patient_ids": PATIENTS, "rows": np.arange(N_TEST),
                                    "classes": ["a", "b", "c"], "task": "multilabel"})
    assert np.array_equal(evaluate_on(study.teacher_for(0), store, study.target_data())["y_true"], Y)
    points, fits = analysis.regime(study, store, sweep)
    assert set(points["teacher pool"]) == set(study.teacher_pool_sizes)
    row = points[(points["comparison"] == "kd − transfer (near)")].sort_values("teacher pool")
    assert row["advantage (AUC points)"].is_monotonic_increasing
    assert fits.loc["kd − transfer (near)", "slope"] > 0


def test_temperature_alpha_is_picked_on_validation_not_test(tmp_path):
    study = Study.from_profile("smoke")
    store = ResultStore(tmp_path)
    grid = experiments.temperature_alpha(study)
    for i, (cfg, lab) in enumerate(grid):
        fabricate(store, cfg, 1.0 + 0.1 * i, seed=i)
    # make the test-best cell differ from the validation-best one
    first = grid.configs[0]
    rec = store.load_result(first)
    store.write_result(first, {**rec, "best_val_macro_auc": 0.99})
    table, best = analysis.select_temperature_alpha(store, grid)
    assert (best["temperature"], best["alpha"]) == (grid.labels[0]["temperature"], grid.labels[0]["alpha"])
    assert best["test AUC of the test-best cell"] >= best["test AUC"]
    assert isinstance(table, pd.DataFrame) and len(table) == len(study.temperatures) * len(study.alphas)


def test_cross_domain_table_keeps_each_domain_apart(tmp_path):
    study = dataclasses.replace(Study.from_profile("smoke"), n_boot=100)
    store = ResultStore(tmp_path)
    grid = experiments.cross_domain(study)
    for cfg, lab in grid:
        fabricate(store, cfg, {"transfer": 1.0, "kd": 1.3, "at": 0.9}[lab["method"]], seed=lab["seed"])
    table = analysis.cross_domain_table(study, store, grid)
    assert set(table["domain"]) == set(experiments.DOMAINS.values())
    far = table[table["domain"] == experiments.DOMAINS["far"]]
    assert list(far["comparison"].str.split(" ").str[0]) == ["at"]  # another label space: no kd
    assert (table[table["comparison"].str.startswith("kd")]["gain (AUC points)"] > 0).all()


def test_split_leaks_count_patients_on_two_sides():
    study = Study.from_profile("smoke")
    assert analysis.split_leaks(study.target_data()) == 0


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_split_view_selects_the_rows_load_split_trains_on_without_images(split, monkeypatch):
    from kdmed.data.base import ImageDataset
    from kdmed.runner import clear_data_cache, load_split

    study = Study.from_profile("smoke")
    for spec in (study.target_data(study.target_n, 1), study.teacher(study.teacher_pool_n).data):
        with monkeypatch.context() as m:
            m.setattr(ImageDataset, "image_array", lambda *a, **k: pytest.fail("split_view loaded images"))
            view = analysis.split_view(spec, split)
        loaded = load_split(spec, split, progress=False)
        assert list(view.patient_ids) == list(loaded.dataset.patient_ids)
        np.testing.assert_array_equal(view.labels, loaded.labels)
        assert len(view) == len(loaded.images)
    clear_data_cache()
    with pytest.raises(ValueError, match="asked for 999999 images"):
        analysis.split_view(dataclasses.replace(study.target_data(), train_n=999999), "train")
