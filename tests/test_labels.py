"""Label spaces aligned by name: scoring, distillation over shared findings, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fixtures_data import make_nih_root
from kdmed.config import DataSpec, RunConfig, TrainSpec
from kdmed.data.chexpert import CLASSES as CHEXPERT
from kdmed.data.nih import CHESTXRAY14
from kdmed.labels import LabelSpaceError, align_classes, aligned_scores
from kdmed.losses import KDLoss
from kdmed.runner import evaluate_on, run_one
from kdmed.store import ResultStore, load_history

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

SHARED = ["Cardiomegaly", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion"]
GRADES = [f"grade {g}" for g in range(5)]


def test_chexpert_and_nih_share_seven_findings_matched_by_name():
    a = align_classes(CHESTXRAY14, CHEXPERT, "multilabel", "test")
    assert a.classes == SHARED  # CheXpert's names, in CheXpert's order
    assert [CHESTXRAY14[i] for i in a.source_index] == [
        "Cardiomegaly", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Effusion"]
    assert "Pleural Effusion (= Effusion)" in a.describe() and "not predicted: No Finding" in a.describe()
    assert not a.identity
    same = align_classes(CHEXPERT, CHEXPERT, "multilabel", "test")
    assert same.identity and same.source_index == tuple(range(14)) and same.describe().startswith("all 14")


def test_a_permuted_class_order_gives_the_same_aucs():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 14)) < 0.3).astype(np.float32)
    s = (y + rng.normal(0, 1.0, y.shape)).astype(np.float32)
    perm = rng.permutation(14)
    names = [CHEXPERT[j] for j in perm]
    yt, ys, a = aligned_scores(s[:, perm], names, y, CHEXPERT, "multilabel", "test")
    assert a.classes == CHEXPERT and np.array_equal(ys, s) and np.array_equal(yt, y)
    by_position = [roc_auc_score(y[:, c], s[:, perm][:, c]) for c in range(14)]
    by_name = [roc_auc_score(yt[:, c], ys[:, c]) for c in range(14)]
    assert by_name == [roc_auc_score(y[:, c], s[:, c]) for c in range(14)]
    assert by_name != by_position  # pairing by position would have scored other findings


def test_unalignable_label_spaces_are_refused_naming_both():
    with pytest.raises(LabelSpaceError, match=r"test: the model predicts \['grade 0'.*no class is shared"):
        align_classes(GRADES, CHEXPERT, "multilabel", "test")
    with pytest.raises(LabelSpaceError, match="multiclass model is compared only with the same set"):
        align_classes(GRADES[:4], GRADES, "multiclass", "test")
    with pytest.raises(LabelSpaceError, match="the model is multiclass .* and the data multilabel"):
        align_classes(GRADES, CHEXPERT, "multilabel", "test", source_task="multiclass")
    assert align_classes(GRADES[::-1], GRADES, "multiclass", "test").source_index == (4, 3, 2, 1, 0)


def test_kd_over_shared_classes_is_the_bernoulli_kl_of_those_columns_only():
    torch.manual_seed(0)
    s = torch.randn(6, 14, requires_grad=True)
    t = torch.randn(6, 14)
    y = (torch.rand(6, 14) < 0.4).float()
    a = align_classes(CHESTXRAY14, CHEXPERT, "multilabel", "test")
    cols = (torch.tensor(a.target_index), torch.tensor(a.source_index))
    loss = KDLoss(temperature=2.0, alpha=0.5, task="multilabel")
    parts = loss.components(s, t, y, cols)
    ps, pt = torch.sigmoid(s[:, cols[0]] / 2).double(), torch.sigmoid(t[:, cols[1]] / 2).double()
    hand = (pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))).mean() * 4.0
    assert parts["kd"].item() == pytest.approx(hand.item(), rel=1e-5)
    grad = torch.autograd.grad(parts["kd"], s)[0]
    unshared = [j for j in range(14) if j not in a.target_index]
    assert torch.all(grad[:, unshared] == 0) and torch.all(grad[:, list(a.target_index)] != 0)
    full = loss.components(s, t, y)  # the task term keeps every student class either way
    assert parts["task"].item() == full["task"].item()
    with pytest.raises(ValueError, match="multiclass teacher must predict the student's classes"):
        KDLoss(temperature=2.0, alpha=0.5, task="multiclass").components(s[:, :5], t[:, :5], torch.eye(5)[torch.arange(6) % 5], cols)


def test_a_teacher_of_another_chest_label_space_distils_the_shared_findings_and_is_scored_by_name(tmp_path):
    store = ResultStore(tmp_path / "results")
    train = TrainSpec(epochs=1, batch_size=16, lr=1e-3, patience=2, augment=False, device="cpu")
    nih = DataSpec("nih", root=str(make_nih_root(tmp_path, n_patients=12)), image_size=32,
                   options={"labels": "chestxray14"})
    teacher = RunConfig(name="nih-teacher", data=nih, arch="small_cnn", strategy="scratch", train=train, seed=0)
    chest = DataSpec("synthetic-chest", image_size=32, options={"institution": "C", "n": 120}, val_n=40, test_n=60)
    kd = RunConfig(name="kd-from-nih", data=chest, strategy="kd", teacher=teacher, temperature=2.0, alpha=0.5,
                   train=train, seed=0)
    result = run_one(kd, store, quiet=True)
    assert result["classes"] == CHEXPERT
    assert result["strategy"]["kd_classes"].startswith("7 shared of 14 classes")
    assert load_history(kd, store)["train_kd"].gt(0).all()

    scored = evaluate_on(teacher, store, chest)
    assert scored["classes"] == SHARED and scored["model_classes"] == CHESTXRAY14
    assert scored["y_true"].shape == (60, 7) and scored["y_score"].shape == (60, 7)
    assert scored["alignment"].startswith("7 shared of 14")
    from kdmed.loader import ArrayLoader
    from kdmed.predict import predict
    from kdmed.runner import load_model_of, load_split

    d = load_split(chest, "test", progress=False)
    model, _ = load_model_of(teacher, store)
    logits = predict(model, ArrayLoader(d.images, d.labels, batch_size=16, shuffle=False))
    effusion, pleural = CHESTXRAY14.index("Effusion"), CHEXPERT.index("Pleural Effusion")
    assert np.array_equal(scored["y_score"][:, SHARED.index("Pleural Effusion")], logits[:, effusion])
    assert np.array_equal(scored["y_true"][:, SHARED.index("Pleural Effusion")], d.labels[:, pleural], equal_nan=True)

    fundus = RunConfig(name="fundus", data=DataSpec("synthetic-fundus", image_size=32, options={"task": "grade", "n": 60}),
                       arch="small_cnn", strategy="scratch", train=train, seed=0)
    run_one(fundus, store, quiet=True)
    with pytest.raises(LabelSpaceError, match=r"run 'fundus' scored on synthetic-chest test: the model is multiclass"):
        evaluate_on(fundus, store, chest)
    with pytest.raises(LabelSpaceError, match="distilling the teacher 'fundus'"):
        run_one(dataclasses.replace(kd, name="kd-from-fundus", teacher=fundus), store, quiet=True)
