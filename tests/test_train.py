"""Strategies and the trainer: teacher isolation, loss equivalences, freezing, resume, NaN stop."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from kdmed.loader import ArrayLoader
from kdmed.losses import ATLoss, KDLoss, TaskLoss
from kdmed.models import build_model, freeze_through
from kdmed.strategies import Strategy, matched_taps
from kdmed.predict import predict
from kdmed.train import TIMING_COLUMNS, Trainer, fit
from kdmed.config import TrainSpec
from kdmed.utils import set_seed

K = 3
SIZE = 32
#: the loss settings a strategy takes from its run's config (no defaults of its own)
KD = dict(temperature=4.0, alpha=0.5)
AT = dict(beta=1.0, at_p=2.0)


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey images whose brightness in one quadrant per class encodes the labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, K)) < 0.5).astype(np.float32)
    x = rng.integers(0, 120, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    for k in range(K):
        r, c = divmod(k, 2)
        x[:, 0, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 100 * y[:, k, None, None]
    return x.clip(0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def arrays():
    return _data(48, 1), _data(24, 2)


def _loaders(arrays, augment=True, batch_size=16, seed=0):
    (xt, yt), (xv, yv) = arrays
    train = ArrayLoader(xt, yt, batch_size=batch_size, shuffle=True, seed=seed, augment=augment)
    val = ArrayLoader(xv, yv, batch_size=batch_size, shuffle=False)
    return train, val


def _model(seed: int, arch: str = "small_cnn") -> torch.nn.Module:
    set_seed(seed)
    return build_model(arch, K)


def _opts(**kw):
    base = dict(epochs=2, lr=1e-3, patience=5, plateau_patience=1, quiet=True)
    base.update(kw)
    return base


def _strip(history):
    return [{k: v for k, v in h.items() if k not in TIMING_COLUMNS} for h in history]


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- strategies
def test_teacher_gets_no_gradient_and_stays_in_eval_mode(arrays):
    teacher = _model(7)
    before = copy.deepcopy(teacher.state_dict())
    teacher.train()  # the strategy must put it back in eval mode
    strategy = Strategy("kd+at", "multilabel", teacher=teacher, temperature=2.0, alpha=0.5, beta=1.0, at_p=2.0, taps=["block2"])
    train, val = _loaders(arrays)
    fit(_model(0), strategy, train, val, **_opts(epochs=1))
    assert strategy.teacher_mode == "shared"
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert not any(m.training for m in teacher.modules())
    after = teacher.state_dict()
    # parameters and BatchNorm running statistics untouched
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_kd_with_alpha_zero_follows_the_scratch_trajectory(arrays):
    init = _model(3)
    a, b = copy.deepcopy(init), copy.deepcopy(init)
    train, val = _loaders(arrays, augment=True)
    ra = fit(a, Strategy("scratch", "multilabel"), train, val, **_opts())
    kd = Strategy("kd", "multilabel", teacher=_model(9), temperature=4.0, alpha=0.0)
    rb = fit(b, kd, train, val, **_opts())
    assert rb.teacher_mode == "shared"  # augmentation: one teacher pass per epoch's view
    ha, hb = _strip(ra.history), _strip(rb.history)
    for x, y in zip(ha, hb):
        assert x["train_loss"] == y["train_loss"] == y["train_task"]
        assert x["val_loss"] == y["val_loss"] and x["val_macro_auc"] == y["val_macro_auc"]
        assert y["train_kd"] > 0  # the KD term is computed, it just carries no weight
    assert _states_equal(a, b)
    assert not _states_equal(a, init)


def test_the_teacher_pass_gives_the_loss_of_the_teacher_on_each_batch(arrays):
    teacher = _model(5)
    train, _ = _loaders(arrays, augment=False)
    kd = Strategy("kd", "multilabel", teacher=teacher, temperature=3.0, alpha=0.7)
    assert kd.prepare(train) == "cached"
    with pytest.raises(RuntimeError, match="call prepare\\(\\) and start_epoch\\(\\) first"):
        kd.teacher_outputs(next(iter(train)))
    kd.start_epoch(1)
    student = _model(1)
    train.set_epoch(1)
    n = 0
    for batch in train:
        loss, terms = kd.step(student, batch)
        # the loss computed by hand from the teacher's logits on this very batch (a batch's
        # composition moves the last bits of a convolution: equal to float tolerance)
        with torch.no_grad():
            ref = KDLoss(3.0, 0.7, "multilabel")(student(batch.x), teacher.eval()(batch.x), batch.y)
        torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)
        n += 1
    assert n == len(train)
    # augmentation: one pass per epoch's view, shared through the disk cache
    aug_train, _ = _loaders(arrays, augment=True)
    assert Strategy("kd", "multilabel", teacher=teacher, **KD).prepare(aug_train) == "shared"
    assert Strategy("at", "multilabel", teacher=teacher, **AT, student_arch="small_cnn").prepare(train) == "cached"
    assert Strategy("scratch", "multilabel").prepare(train) == "none"


def test_the_shared_augmented_views_are_the_images_each_epoch_shows(arrays):
    teacher = _model(5)
    train, _ = _loaders(arrays, augment=True)
    kd = Strategy("kd", "multilabel", teacher=teacher, **KD)
    kd.prepare(train)
    for epoch in (0, 3):
        kd.start_epoch(epoch)
        train.set_epoch(epoch)
        batch = next(iter(train))
        with torch.no_grad():
            direct = teacher.eval()(batch.x)
        torch.testing.assert_close(kd.teacher_outputs(batch)[0], direct, rtol=1e-5, atol=1e-5)


def test_strategy_terms_match_the_losses(arrays):
    teacher, student = _model(5, "resnet18"), _model(1)
    train, _ = _loaders(arrays, augment=False)
    s = Strategy("kd+at", "multilabel", teacher=teacher, temperature=2.0, alpha=0.25, beta=3.0, at_p=2.0,
                 taps=("block2", "block3"))
    s.bind_student(student)
    s.prepare(train)
    s.start_epoch(0)
    batch = next(iter(train))
    loss, terms = s.step(student, batch)
    assert set(terms) == {"task", "kd", "at"}
    # reference: plain forward passes with hand-made hooks
    feats = {}
    hooks = [getattr(student, f"block{i}").register_forward_hook(lambda m, i, o, k=i: feats.__setitem__(("s", k), o))
             for i in (2, 3)]
    hooks += [getattr(teacher, f"layer{i}").register_forward_hook(lambda m, i, o, k=i: feats.__setitem__(("t", k), o))
              for i in (2, 3)]
    with torch.no_grad():
        sl, tl = student(batch.x), teacher(batch.x)
    for h in hooks:
        h.remove()
    kd = KDLoss(2.0, 0.25, "multilabel").components(sl, tl, batch.y)
    at = ATLoss(3.0, 2.0)([feats["s", 2], feats["s", 3]], [feats["t", 2], feats["t", 3]])
    assert at.item() > 0
    torch.testing.assert_close(terms["kd"], kd["kd"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["at"], at, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.detach(), kd["total"] + at, rtol=1e-5, atol=1e-6)
    s.close()


def test_attention_on_single_pixel_maps_warns(arrays):
    train, _ = _loaders(arrays, augment=False)
    s = Strategy("at", "multilabel", teacher=_model(5), student_arch="small_cnn", taps=("block4",), **AT)
    s.prepare(train)
    s.start_epoch(0)
    # at 32 px small_cnn's block4 is 1x1: the normalised attention map is 1 whatever the image
    with pytest.warns(RuntimeWarning, match=r"tap block4/block4 has a 1x1 feature map"):
        _, terms = s.step(_model(1), next(iter(train)))
    assert terms["at"].item() == 0.0
    s.close()


def test_strategy_refuses_bad_combinations():
    with pytest.raises(ValueError, match="unknown strategy 'distill'"):
        Strategy("distill", "multilabel")
    with pytest.raises(ValueError, match="'kd' needs a teacher"):
        Strategy("kd", "multilabel")
    with pytest.raises(ValueError, match="'scratch' trains on labels only"):
        Strategy("scratch", "multilabel", teacher=_model(0))
    with pytest.raises(ValueError, match="unknown tap.*'layer9'.*small_cnn"):
        matched_taps("small_cnn", "resnet18", ["layer9"])
    assert matched_taps("small_cnn", "densenet121", ["block2"]) == (["block2"], ["denseblock2"])


def test_freezing_wires_through_training(arrays):
    model = _model(4)
    frozen = set(freeze_through(model, "small_cnn", "block2"))
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("block1.", "block2."))}
    before = copy.deepcopy(model.state_dict())
    train, val = _loaders(arrays)
    fit(model, Strategy("transfer", "multilabel"), train, val, **_opts(epochs=1, weight_decay=1e-2))
    after = model.state_dict()
    for name, value in after.items():
        in_frozen = name.startswith(("block1.", "block2."))
        if name.endswith("num_batches_tracked"):
            continue
        # frozen: weights and BatchNorm statistics unchanged; trainable: changed
        assert torch.equal(before[name], value) == in_frozen, name


# ----------------------------------------------------------------------------- trainer
class NoisyStudent(torch.nn.Module):
    """small_cnn whose training logits get noise from the torch, NumPy and Python RNGs (like dropout)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.base = _model(seed)

    def forward(self, x):
        logits = self.base(x)
        if self.training:
            noise = torch.randn_like(logits) + float(np.random.normal()) + random.gauss(0.0, 1.0)
            logits = logits + 0.1 * noise
        return logits


def test_resume_after_a_crash_gives_bitwise_equal_results(arrays, tmp_path):
    train, val = _loaders(arrays)
    teacher = _model(8)
    set_seed(0)
    straight_model = NoisyStudent(0)
    straight = fit(straight_model, Strategy("kd", "multilabel", teacher=teacher, **KD), train, val,
                   **_opts(epochs=4, checkpoint_path=tmp_path / "a" / "last.pt"))

    class Crash(Exception):
        pass

    def crash(epoch, record):
        if epoch == 2:
            raise Crash

    ckpt = tmp_path / "b" / "last.pt"
    with pytest.raises(Crash):
        fit(NoisyStudent(0), Strategy("kd", "multilabel", teacher=teacher, **KD), train, val,
            **_opts(epochs=4, checkpoint_path=ckpt, callbacks=[crash]))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    # numbers drawn from the global RNGs after a restart must not depend on the restart
    set_seed(123)
    resumed_model = NoisyStudent(99)  # a different init: everything must come from the checkpoint
    resumed = fit(resumed_model, Strategy("kd", "multilabel", teacher=teacher, **KD), train, val,
                  **_opts(epochs=4, checkpoint_path=ckpt))
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 4
    assert _strip(resumed.history) == _strip(straight.history)
    assert resumed.best_epoch == straight.best_epoch
    assert _states_equal(resumed_model, straight_model)


def test_history_columns_schedule_and_best_weights(arrays, tmp_path):
    train, val = _loaders(arrays)
    states = {}
    model = _model(2)

    def keep(epoch, record):
        states[epoch] = copy.deepcopy(model.state_dict())

    result = fit(model, Strategy("scratch", "multilabel"), train, val,
                 **_opts(epochs=6, lr=3e-3, patience=2, plateau_patience=0, callbacks=[keep]))
    hist = result.history_frame()
    assert list(hist["epoch"]) == list(range(1, result.epochs_run + 1))
    for col in ("train_loss", "train_task", "train_running_macro_auc", "val_loss", "val_macro_auc", "lr", "seconds",
                "images_per_s"):
        assert hist[col].notna().all(), col
    assert (hist["train_loss"] == hist["train_task"]).all()
    # the LR column follows an independent ReduceLROnPlateau fed the same validation losses
    ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=0)
    expected_lr = []
    for loss in hist["val_loss"]:
        expected_lr.append(ref_opt.param_groups[0]["lr"])
        ref.step(loss)
    assert list(hist["lr"]) == expected_lr
    # early stopping and the best epoch follow the validation AUC
    aucs = list(hist["val_macro_auc"])
    best = int(np.argmax(aucs)) + 1
    assert result.best_epoch == best and result.best_val_macro_auc == max(aucs)
    if result.stopped_early:
        assert result.epochs_run - best == 2
    else:
        assert result.epochs_run == 6
    assert _states_equal(model, _load(states[best]))
    # the restored model reproduces the best validation AUC
    from kdmed.predict import epoch_macro_auc, loader_labels

    assert epoch_macro_auc("multilabel", loader_labels(val), predict(model, val)) == max(aucs)


def _load(state):
    m = build_model("small_cnn", K)
    m.load_state_dict(state)
    return m


def test_early_stopping_when_validation_auc_stalls(arrays):
    train, val = _loaders(arrays)
    # an SGD step of 1e-12 cannot change any ranking: the AUC stays put and never improves
    result = fit(_model(0), Strategy("scratch", "multilabel"), train, val,
                 **_opts(epochs=10, lr=1e-12, optimizer="sgd", patience=2))
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_predict_returns_rows_in_loader_order(arrays):
    (x, y), _ = arrays
    model = _model(0).eval()
    rows = np.random.default_rng(0).permutation(len(x))[:30]
    loader = ArrayLoader(x, y, batch_size=7, shuffle=True, seed=3, indices=rows)
    got = predict(model, loader)
    plain = ArrayLoader(x, y, batch_size=len(x), shuffle=False)
    with torch.no_grad():
        ref = model(next(iter(plain)).x).numpy()[rows]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert got.shape == (30, K) and got.dtype == np.float32


def test_nan_loss_stops_with_epoch_and_batch_and_keeps_checkpoint(arrays, tmp_path):
    train, val = _loaders(arrays)
    model = _model(0)
    ckpt = tmp_path / "last.pt"

    def poison(epoch, record):
        with torch.no_grad():
            model.fc.bias.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 1 of 3.*last good checkpoint"):
        fit(model, Strategy("scratch", "multilabel"), train, val,
            **_opts(epochs=3, checkpoint_path=ckpt, callbacks=[poison]))
    saved = torch.load(ckpt, weights_only=True)
    assert saved["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())


def test_trainer_rejects_bad_settings(arrays, tmp_path):
    s = Strategy("scratch", "multilabel")
    with pytest.raises(ValueError, match="optimizer must be one of .*'rmsprop'"):
        Trainer(_model(0), s, TrainSpec(epochs=1, optimizer="rmsprop"))
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        Trainer(_model(0), s, TrainSpec(epochs=0))
    with pytest.raises(TypeError, match="needs a kdmed.config.TrainSpec"):
        Trainer(_model(0), s, {"epochs": 1})
    train, val = _loaders(arrays)
    ckpt = tmp_path / "last.pt"
    fit(_model(0), s, train, val, **_opts(epochs=1, checkpoint_path=ckpt, fingerprint="run-a"))
    with pytest.raises(ValueError, match="belongs to another run.*'run-a'"):
        fit(_model(0), s, train, val, **_opts(epochs=2, checkpoint_path=ckpt, fingerprint="run-b"))
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read the training checkpoint"):
        fit(_model(0), s, train, val, **_opts(epochs=2, checkpoint_path=ckpt, fingerprint="run-a"))


def test_val_loss_is_the_task_loss_for_every_strategy(arrays):
    train, val = _loaders(arrays)
    model = _model(0)
    result = fit(model, Strategy("kd", "multilabel", teacher=_model(1), temperature=4.0, alpha=0.9), train, val,
                 **_opts(epochs=1, patience=1))
    with torch.no_grad():
        ref = TaskLoss("multilabel")(model.eval()(next(iter(ArrayLoader(*arrays[1], batch_size=99, shuffle=False))).x),
                                     torch.from_numpy(arrays[1][1]))
    assert result.history[0]["val_loss"] == pytest.approx(float(ref), rel=1e-6)


def test_epoch_auc_matches_sklearn_and_multiclass_training_runs(arrays):
    from sklearn.metrics import roc_auc_score

    from kdmed.predict import epoch_macro_auc

    rng = np.random.default_rng(0)
    y = (rng.random((40, K)) < 0.4).astype(np.float32)
    s = rng.normal(size=(40, K)) + y
    assert epoch_macro_auc("multilabel", y, s) == pytest.approx(
        np.mean([roc_auc_score(y[:, k], s[:, k]) for k in range(K)]), abs=1e-12)
    grades = rng.integers(0, K, 40)
    onehot = np.eye(K, dtype=np.float32)[grades]
    logits = rng.normal(size=(40, K)) + onehot
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # one-vs-rest AUC ranks probabilities
    assert epoch_macro_auc("multiclass", onehot, logits) == pytest.approx(
        roc_auc_score(grades, probs, multi_class="ovr", average="macro"), abs=1e-12)

    (xt, _), (xv, _) = arrays
    yt = np.eye(K, dtype=np.float32)[np.arange(len(xt)) % K]
    yv = np.eye(K, dtype=np.float32)[np.arange(len(xv)) % K]
    train = ArrayLoader(xt, yt, batch_size=16, shuffle=True, augment=False)
    val = ArrayLoader(xv, yv, batch_size=16, shuffle=False)
    result = fit(_model(0), Strategy("kd+at", "multiclass", teacher=_model(1), taps=["block2"], **KD, **AT), train, val, **_opts(epochs=1))
    h = result.history[0]
    assert np.isfinite([h["train_task"], h["train_kd"], h["train_at"], h["val_loss"], h["val_macro_auc"]]).all()


def test_compile_is_skipped_for_attention_transfer(arrays):
    train, val = _loaders(arrays)
    s = Strategy("at", "multilabel", teacher=_model(1), taps=["block2"], **AT)
    with pytest.warns(RuntimeWarning, match="torch.compile is skipped with attention transfer"):
        result = fit(_model(0), s, train, val, **_opts(epochs=1, compile=True))
    assert result.compiled is False and result.history[0]["train_at"] > 0
