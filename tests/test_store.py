"""The results store: code fingerprints and stale runs, stored evaluations, frozen stores, restored checkpoints."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from kdmed import fingerprint
from kdmed.config import DataSpec, RunConfig, TrainSpec, run_key
from kdmed.grid import plan, run_grid
from kdmed.runner import CheckpointMismatchError, ensure_checkpoint, evaluate_on, run_one
from kdmed.store import CodeState, FrozenStoreError, ResultStore, StaleResultError

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

TRAIN = TrainSpec(epochs=1, batch_size=16, lr=1e-3, patience=1, plateau_patience=1, augment=False, train_eval_n=32,
                  device="cpu")
DATA_C = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 96}, val_n=32, test_n=32)
DATA_A = DataSpec("synthetic-chest", image_size=32, options={"institution": "A", "n": 96}, val_n=32, test_n=32)
TEACHER = RunConfig(name="teacher", data=DATA_C, strategy="scratch", train=TRAIN, seed=0)
INIT = RunConfig(name="init", data=DATA_A, strategy="scratch", train=TRAIN, seed=0)
KD = RunConfig(name="kd", data=DataSpec(**{**DATA_C.__dict__, "train_n": 64}), strategy="kd", teacher=TEACHER,
               temperature=2.0, alpha=0.5, train=TRAIN, seed=1)

MODULE = '''\
"""A numbers-producing module of a fixture package."""

SCALE = 2  # the factor every result is multiplied by


def scale(x):
    """Multiply by SCALE."""
    return x * SCALE
'''


def _fixture_code(tmp_path, source: str) -> CodeState:
    pkg = tmp_path / "fixpkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(source)
    return CodeState.of_package(pkg, "fixpkg")


def test_source_hash_ignores_comments_docstrings_and_layout_but_not_code():
    base = fingerprint.source_hash(MODULE)
    cosmetic = MODULE.replace("# the factor every result is multiplied by", "# reworded").replace(
        '"""Multiply by SCALE."""', '"""Multiplies its argument."""').replace("return x * SCALE", "return (x *\n  SCALE)")
    assert fingerprint.source_hash(cosmetic) == base
    assert fingerprint.source_hash(MODULE.replace("SCALE = 2", "SCALE = 3")) != base
    assert fingerprint.source_hash(MODULE.replace("x * SCALE", "SCALE * x")) != base


def test_the_fingerprint_covers_numbers_producing_modules_only():
    table = fingerprint.module_hashes()
    for module in ("kdmed.train", "kdmed.losses", "kdmed.strategies", "kdmed.loader", "kdmed.runner",
                   "kdmed.store", "kdmed.config", "kdmed.data.subsets", "kdmed.models", "kdmed.metrics"):
        assert module in table, module
    for module in ("kdmed.book", "kdmed.plots", "kdmed.analysis", "kdmed.claims", "kdmed.study", "kdmed.grid"):
        assert module not in table, module


def test_a_code_change_makes_a_run_stale_and_a_comment_change_does_not(tmp_path):
    code = _fixture_code(tmp_path, MODULE)
    store = ResultStore(tmp_path / "results", code=code)
    run_one(TEACHER, store, quiet=True)
    assert store.status(TEACHER) == "complete"

    comment_only = _fixture_code(tmp_path, MODULE.replace("# the factor", "# the constant factor")
                                 .replace('"""Multiply by SCALE."""', '"""Scale x."""'))
    assert comment_only.fingerprint == code.fingerprint
    assert ResultStore(store.root, code=comment_only).status(TEACHER) == "complete"

    changed = _fixture_code(tmp_path, MODULE.replace("SCALE = 2", "SCALE = 3"))
    later = ResultStore(store.root, code=changed)
    assert later.status(TEACHER) == "stale"
    assert "changed: fixpkg.mod" in later.stale_reason(TEACHER)
    with pytest.raises(StaleResultError, match="is stale: computed by other code .*fixpkg.mod"):
        later.load_result(TEACHER)
    assert [(t.action, t.cfg.name) for t in plan([TEACHER], later)] == [("retrain", "teacher")]

    # frozen: the build fails naming the stale run and why; nothing is trained
    frozen = ResultStore(store.root, code=changed, frozen=True)
    with pytest.raises(FrozenStoreError, match=r"(?s)1 run\(s\) are missing, stale.*retrain +teacher .*fixpkg.mod"):
        run_grid([TEACHER], frozen, progress=False)
    # not frozen: the stale run is retrained, saying so
    run_grid([TEACHER], later, progress=False)
    assert later.status(TEACHER) == "complete" and later.trained == [run_key(TEACHER)]
    assert any("stale" in m and "fixpkg.mod" in m for m in later.messages)


def test_a_frozen_store_lists_every_missing_run_before_training(tmp_path):
    store = ResultStore(tmp_path, frozen=True)
    with pytest.raises(FrozenStoreError) as err:
        run_grid([KD], store, progress=False)
    text = str(err.value)
    assert "2 run(s)" in text and "train    teacher" in text and "train    kd" in text
    assert not any(tmp_path.iterdir())


def test_evaluations_are_stored_and_a_store_without_checkpoints_still_reads(tmp_path):
    store = ResultStore(tmp_path)
    run_grid([KD, INIT], store, progress=False)
    target = KD.data
    # the teacher's own test split is the target's here: the stored evaluation equals its scores.npz
    teacher_on_target = evaluate_on(TEACHER, store, target)
    own = store.load_scores(TEACHER)
    assert np.array_equal(teacher_on_target["y_score"], own["y_score"])
    assert np.array_equal(teacher_on_target["rows"], own["rows"])
    init_on_target = evaluate_on(INIT, store, target)
    assert init_on_target["classes"] == store.load_result(INIT)["classes"]
    assert len(list((store.run_dir(INIT) / "evals").glob("*.npz"))) == 1

    for pt in tmp_path.rglob("*.pt"):
        pt.unlink()
    frozen = ResultStore(tmp_path, frozen=True)
    again = evaluate_on(INIT, frozen, target)
    assert np.array_equal(again["y_score"], init_on_target["y_score"])
    assert run_grid([KD, INIT], frozen, progress=False)["macro_auc"].notna().all()
    # a new evaluation needs the model, which a frozen store may not restore
    with pytest.raises(FrozenStoreError, match="needs an evaluation on synthetic-chest val"):
        evaluate_on(INIT, frozen, target, split="val")


def test_a_missing_checkpoint_is_restored_by_retraining_when_new_work_needs_it(tmp_path):
    store = ResultStore(tmp_path)
    run_one(TEACHER, store, quiet=True)
    stored = store.load_scores(TEACHER)
    store.checkpoint(TEACHER).unlink()
    new_student = RunConfig(**{**KD.__dict__, "alpha": 0.25})
    tasks = plan([new_student], store)
    assert [(t.action, t.cfg.name) for t in tasks] == [("restore", "teacher"), ("train", "kd")]
    run_grid([new_student], store, progress=False)
    assert store.checkpoint(TEACHER).exists() and store.restored == [run_key(TEACHER)]
    assert np.array_equal(store.load_scores(TEACHER)["y_score"], stored["y_score"])
    assert not list(tmp_path.glob(".restore-*"))

    # a stored run that the retraining does not reproduce is never replaced
    scores = dict(np.load(store.run_dir(TEACHER) / "scores.npz"))
    scores["y_score"] = scores["y_score"] + 1.0
    np.savez_compressed(store.run_dir(TEACHER) / "scores.npz", **scores)
    store.checkpoint(TEACHER).unlink()
    with pytest.raises(CheckpointMismatchError, match="test scores differ from the stored run .* not replaced"):
        ensure_checkpoint(TEACHER, store)
    assert not store.checkpoint(TEACHER).exists()


def test_results_record_the_code_and_the_compute(tmp_path):
    store = ResultStore(tmp_path)
    result = run_one(TEACHER, store, quiet=True)
    assert result["code"]["fingerprint"] == fingerprint.code_state()[0]
    assert "kdmed.train" in result["code"]["modules"]
    compute = result["compute"]
    assert compute["numerics"] == "reproducible" and compute["isa"] == "AVX2" and compute["threads"] == 1
    for field in ("cpu", "torch", "numpy", "python", "machine"):
        assert compute[field]
    on_disk = json.loads((store.run_dir(TEACHER) / "result.json").read_text())
    assert on_disk["compute"] == compute
    summary = store.compute_summary([TEACHER])
    assert summary.loc[0, "runs"] == 1 and "reproducible (AVX2, 1 thread" in summary.loc[0, "computed with"]


def test_training_history_has_eval_mode_training_metrics(tmp_path):
    store = ResultStore(tmp_path)
    run_one(TEACHER, store, quiet=True)
    history = store.load_history(TEACHER)
    for col in ("train_loss", "train_running_macro_auc", "train_eval_loss", "train_eval_macro_auc", "val_loss"):
        assert col in history.columns
    assert np.isfinite(history["train_eval_loss"]).all()


@pytest.mark.parametrize("text", ["", textwrap.dedent("x = 1\n")])
def test_fingerprint_of_a_table_is_order_independent(text):
    a = {"m.a": fingerprint.source_hash(text), "m.b": "1"}
    b = dict(reversed(list(a.items())))
    assert fingerprint.fingerprint_of(a) == fingerprint.fingerprint_of(b)
