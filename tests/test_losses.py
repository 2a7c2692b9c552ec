"""Golden tests of the training losses against formulas written out independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdmed.losses import LOSSES, ATLoss, KDLoss, TaskLoss, attention_map, build_loss


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ----------------------------------------------------------------------------- TaskLoss
def test_task_loss_multilabel_hand_example_masks_nan():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    # Known entries: (0,0) y=1 z=0, (1,0) y=0 z=-1, (1,1) y=1 z=0.5.
    expected = (-math.log(_sig(0.0)) - math.log(1 - _sig(-1.0)) - math.log(_sig(0.5))) / 3
    got = TaskLoss("multilabel")(logits, targets)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_task_loss_all_nan_is_zero_with_grad():
    logits = torch.randn(3, 2, generator=_gen(), requires_grad=True)
    loss = TaskLoss("multilabel")(logits, torch.full((3, 2), float("nan")))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))


def test_task_loss_multiclass_argmax_and_row_mask():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [5.0, 1.0, 1.0]])
    targets = torch.tensor([[0.0, 1.0, 0.0], [float("nan"), 0.0, 1.0], [1.0, 0.0, 0.0]])

    def ce(z, k):
        return -(z[k] - math.log(sum(math.exp(v) for v in z)))

    expected = (ce([1.0, 2.0, 0.5], 1) + ce([5.0, 1.0, 1.0], 0)) / 2  # row 1 has a NaN: masked
    assert TaskLoss("multiclass")(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_task_loss_binary_matches_torch_bce():
    logits = torch.randn(6, 1, generator=_gen(1))
    targets = (torch.rand(6, 1, generator=_gen(2)) > 0.5).float()
    ref = F.binary_cross_entropy_with_logits(logits, targets)
    assert TaskLoss("binary")(logits, targets).item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"binary.*\[batch, 1\]"):
        TaskLoss("binary")(torch.zeros(2, 3), torch.zeros(2, 3))


def test_task_loss_input_errors():
    with pytest.raises(ValueError, match="task='regression'"):
        TaskLoss("regression")
    with pytest.raises(ValueError, match=r"targets shape \(2, 3\) does not match logits shape \(2, 2\)"):
        TaskLoss("multilabel")(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\].*-1"):
        TaskLoss("multilabel")(torch.zeros(2, 2), torch.tensor([[1.0, -1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="row 1 sums to 2"):
        TaskLoss("multiclass")(torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0]]))


# ----------------------------------------------------------------------------- KDLoss
def _bernoulli_kd_reference(s: np.ndarray, t: np.ndarray, T: float) -> float:
    """Plain numpy: T^2 * mean of KL(Bern(sig(t/T)) || Bern(sig(s/T)))."""
    p = 1 / (1 + np.exp(-t / T))
    q = 1 / (1 + np.exp(-s / T))
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return float(T * T * kl.mean())


def test_kd_multilabel_matches_numpy_reference_and_masks_label_term_only():
    s = torch.randn(5, 3, generator=_gen(3), dtype=torch.float64)
    t = torch.randn(5, 3, generator=_gen(4), dtype=torch.float64) * 2
    y = (torch.rand(5, 3, generator=_gen(5)) > 0.5).double()
    y_nan = y.clone()
    y_nan[0, 1] = float("nan")
    y_nan[3, 2] = float("nan")
    loss = KDLoss(temperature=3.0, alpha=0.3, task="multilabel")
    c_full = loss.components(s, t, y)
    c_nan = loss.components(s, t, y_nan)
    kd_ref = _bernoulli_kd_reference(s.numpy(), t.numpy(), 3.0)
    assert c_full["kd"].item() == pytest.approx(kd_ref, rel=1e-5)
    # The distillation term uses every entry: unchanged by NaN targets.
    assert c_nan["kd"].item() == pytest.approx(c_full["kd"].item(), rel=1e-7)
    # The label term averages over the 13 known entries only.
    known = ~torch.isnan(y_nan)
    task_ref = F.binary_cross_entropy_with_logits(s.float()[known], y.float()[known]).item()
    assert c_nan["task"].item() == pytest.approx(task_ref, rel=1e-5)
    assert c_nan["task"].item() != pytest.approx(c_full["task"].item(), rel=1e-3)
    assert c_nan["total"].item() == pytest.approx(0.7 * task_ref + 0.3 * kd_ref, rel=1e-5)
    assert loss(s, t, y_nan).item() == pytest.approx(c_nan["total"].item())


def test_kd_bernoulli_is_stable_for_extreme_logits():
    s = torch.tensor([[-200.0, 200.0, 0.0]])
    t = torch.tensor([[200.0, -200.0, 0.0]])
    kd = KDLoss(temperature=1.0, alpha=1.0, task="multilabel").components(s, t, torch.zeros(1, 3))["kd"]
    # First two entries: KL(Bern(~1) || Bern(~e^-200)) = -log sigmoid(-200) ~= 200; third 0.
    # log(sigmoid(-200)) in float32 would be log(0) = -inf.
    assert torch.isfinite(kd)
    assert kd.item() == pytest.approx((200.0 + 200.0 + 0.0) / 3, rel=1e-5)


def test_kd_multiclass_batchmean_matches_kl_div_and_hand_value():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]], dtype=torch.float64)
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    T = 2.0
    comp = KDLoss(temperature=T, alpha=0.5, task="multiclass").components(s, t, y)
    # Cross-check with torch's KL (log_target), batchmean.
    ref = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True, reduction="batchmean")
    assert comp["kd"].item() == pytest.approx(T * T * ref.item(), rel=1e-6)
    # Hand formula with plain Python.
    total = 0.0
    for sr, tr in zip(s.tolist(), t.tolist()):
        zs = [math.exp(v / T) for v in sr]
        zt = [math.exp(v / T) for v in tr]
        p = [v / sum(zt) for v in zt]
        q = [v / sum(zs) for v in zs]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert comp["kd"].item() == pytest.approx(T * T * total / 2, rel=1e-10)
    # batchmean, not the elementwise mean (which would be 3x smaller here).
    elementwise = F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True,
                       reduction="none").mean()
    assert comp["kd"].item() == pytest.approx(3 * T * T * elementwise.item(), rel=1e-6)
    assert comp["total"].item() == pytest.approx(0.5 * comp["task"].item() + 0.5 * comp["kd"].item(), rel=1e-6)


def test_kd_alpha_zero_equals_task_loss_and_student_equals_teacher_gives_zero_kd():
    s = torch.randn(4, 5, generator=_gen(6))
    t = torch.randn(4, 5, generator=_gen(7))
    for task, y in (("multilabel", (torch.rand(4, 5, generator=_gen(8)) > 0.5).float()),
                    ("multiclass", F.one_hot(torch.tensor([0, 3, 4, 1]), 5).float())):
        kd0 = KDLoss(temperature=4.0, alpha=0.0, task=task)(s, t, y)
        assert kd0.item() == pytest.approx(TaskLoss(task)(s, y).item(), rel=1e-7)
        same = KDLoss(temperature=4.0, alpha=0.9, task=task).components(s, s.clone(), y)
        assert abs(same["kd"].item()) < 1e-6


def test_kd_temperature_squared_scaling_worked_example():
    # Two classes, logit gap d: KL(softmax(t/T)||softmax(s/T)) for a small gap
    # ~ (d_s - d_t)^2 / (8 T^2) (Bernoulli Fisher information 1/4 at p = 1/2), so
    # T^2 * KL tends to the T-free value (d_s - d_t)^2 / 8: the T^2 factor cancels the 1/T^2.
    s = torch.tensor([[0.1, 0.0]], dtype=torch.float64)
    t = torch.tensor([[-0.1, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    limit = (0.1 - (-0.1)) ** 2 / 8
    kd = {T: KDLoss(temperature=T, alpha=1.0, task="multiclass").components(s, t, y)["kd"].item()
          for T in (1.0, 4.0, 16.0)}
    assert kd[16.0] == pytest.approx(limit, rel=1e-3)
    assert kd[4.0] == pytest.approx(limit, rel=1e-2)
    # Raw KL falls like 1/T^2: 16x from T=1 to T=4 (to 1 %).
    assert (kd[1.0] / 1.0) / (kd[4.0] / 16.0) == pytest.approx(16.0, rel=1e-2)
    # Exact at T = 2 against the closed-form binary KL.
    p, q = _sig(-0.1 / 2), _sig(0.1 / 2)
    exact = 4 * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    got = KDLoss(temperature=2.0, alpha=1.0, task="multiclass").components(s, t, y)["kd"].item()
    assert got == pytest.approx(exact, rel=1e-9)


def test_kd_gradient_reaches_student_only():
    s = torch.randn(3, 2, generator=_gen(9), requires_grad=True)
    t = torch.randn(3, 2, generator=_gen(10), requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.0, float("nan")], [1.0, 1.0]])
    KDLoss(temperature=2.0, alpha=0.5, task="multilabel")(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_argument_validation():
    with pytest.raises(ValueError, match="temperature=0.0"):
        KDLoss(temperature=0, alpha=0.5, task="multilabel")
    with pytest.raises(ValueError, match="alpha=1.5"):
        KDLoss(temperature=4.0, alpha=1.5, task="multilabel")
    with pytest.raises(ValueError, match="task='foo'"):
        KDLoss(temperature=4.0, alpha=0.5, task="foo")
    with pytest.raises(ValueError, match=r"teacher_logits shape \(2, 3\) does not match student_logits shape \(2, 2\)"):
        KDLoss(temperature=4.0, alpha=0.5, task="multilabel")(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2))


# ----------------------------------------------------------------------------- ATLoss
def _at_reference(fs: torch.Tensor, ft: torch.Tensor, p: float = 2.0) -> float:
    """Plain per-sample loop: normalised channel-mean |F|^p maps, L2 distance, batch mean."""
    dists = []
    for b in range(fs.shape[0]):
        a_s = (fs[b].abs() ** p).mean(0).flatten()
        a_t = (ft[b].abs() ** p).mean(0).flatten()
        a_s = a_s / a_s.norm()
        a_t = a_t / a_t.norm()
        dists.append(float((a_s - a_t).norm()))
    return sum(dists) / len(dists)


def test_at_matches_reference_and_sums_taps():
    g = _gen(11)
    fs = [torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 8, 2, 2, generator=g)]
    ft = [torch.randn(3, 6, 5, 5, generator=g), torch.randn(3, 2, 2, 2, generator=g)]  # channels differ
    expected = 0.25 * (_at_reference(fs[0], ft[0]) + _at_reference(fs[1], ft[1]))
    loss = ATLoss(beta=0.25, p=2.0)
    assert loss(fs, ft).item() == pytest.approx(expected, rel=1e-5)
    as_dict = loss.components({"b3": fs[0], "b4": fs[1]}, {"b4": ft[1], "b3": ft[0]})
    assert as_dict["at"].item() == pytest.approx(expected, rel=1e-5)
    # p = 1 changes the map: |F| instead of F^2.
    assert ATLoss(beta=1.0, p=1.0)([fs[0]], [ft[0]]).item() == pytest.approx(_at_reference(fs[0], ft[0], 1.0),
                                                                             rel=1e-5)


def test_at_zero_for_identical_maps_and_scale_invariant():
    f = torch.randn(2, 3, 4, 4, generator=_gen(12))
    assert ATLoss(beta=1.0, p=2.0)([f], [f.clone()]).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.randn(2, 5, 4, 4, generator=_gen(13))
    base = ATLoss(beta=1.0, p=2.0)([f], [other]).item()
    assert base > 0.05
    assert ATLoss(beta=1.0, p=2.0)([7.5 * f], [other]).item() == pytest.approx(base, rel=1e-5)
    assert ATLoss(beta=1.0, p=2.0)([f], [0.01 * other]).item() == pytest.approx(base, rel=1e-5)


def test_at_resizes_student_map_to_teacher_size():
    fs = torch.rand(2, 3, 4, 4, generator=_gen(14))
    ft = torch.rand(2, 3, 8, 8, generator=_gen(15))
    a_s = (fs ** 2).mean(1, keepdim=True)
    a_s = F.interpolate(a_s, size=(8, 8), mode="bilinear", align_corners=False).flatten(1)
    a_t = (ft ** 2).mean(1).flatten(1)
    expected = (a_s / a_s.norm(dim=1, keepdim=True) - a_t / a_t.norm(dim=1, keepdim=True)).norm(dim=1).mean()
    assert ATLoss(beta=1.0, p=2.0)([fs], [ft]).item() == pytest.approx(expected.item(), rel=1e-5)
    # A constant student map upsampled stays constant: distance to a constant teacher is 0.
    assert ATLoss(beta=1.0, p=2.0)([torch.ones(1, 2, 3, 3)], [torch.full((1, 4, 6, 6), 2.0)]).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_map_public_helper():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0] = 3.0
    f[0, 1, 1, 1] = -4.0
    raw = attention_map(f, p=2, normalize=False)
    assert torch.allclose(raw, torch.tensor([[[4.5, 0.0], [0.0, 8.0]]]))
    unit = attention_map(f, p=2)
    assert unit.shape == (1, 2, 2)
    assert torch.allclose(unit, raw / math.hypot(4.5, 8.0))
    with pytest.raises(ValueError, match=r"4-D.*\(2, 2\)"):
        attention_map(torch.zeros(2, 2), p=2)


def test_at_gradient_reaches_student_only():
    fs = torch.randn(2, 3, 4, 4, generator=_gen(16), requires_grad=True)
    ft = torch.randn(2, 3, 4, 4, generator=_gen(17), requires_grad=True)
    ATLoss(beta=1.0, p=2.0)([fs], [ft]).backward()
    assert fs.grad is not None and fs.grad.abs().sum() > 0
    assert ft.grad is None


def test_at_errors_name_counts_and_parameters():
    f = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="2 student feature maps vs 1 teacher"):
        ATLoss(beta=1.0, p=2.0)([f, f], [f])
    with pytest.raises(ValueError, match=r"tap names differ.*\['a'\].*\['b'\]"):
        ATLoss(beta=1.0, p=2.0)({"a": f}, {"b": f})
    with pytest.raises(ValueError, match="tap 0: batch sizes differ"):
        ATLoss(beta=1.0, p=2.0)([f], [torch.zeros(3, 3, 4, 4)])
    with pytest.raises(ValueError, match="beta=-1.0"):
        ATLoss(beta=-1, p=2.0)
    with pytest.raises(ValueError, match="p=0.0"):
        ATLoss(beta=1.0, p=0)


# ----------------------------------------------------------------------------- registry
def test_registry_and_build_loss():
    assert LOSSES == {"task": TaskLoss, "kd": KDLoss, "at": ATLoss}
    loss = build_loss("kd", temperature=3.0, alpha=0.2, task="multiclass")
    assert isinstance(loss, KDLoss) and loss.temperature == 3.0 and loss.alpha == 0.2
    assert isinstance(build_loss("at", beta=0.2, p=2.0), ATLoss)
    with pytest.raises(ValueError, match=r"unknown loss 'hinton'; known losses: \['at', 'kd', 'task'\]"):
        build_loss("hinton", beta=0.2)


def test_losses_take_their_settings_from_the_config_and_name_a_missing_one():
    # settings have one default, in kdmed.config.RunConfig: the losses refuse to guess
    with pytest.raises(ValueError, match=r"KDLoss needs temperature .*got None"):
        KDLoss(temperature=None, alpha=0.5, task="multilabel")
    with pytest.raises(ValueError, match=r"ATLoss needs beta .*got None"):
        ATLoss(beta=None, p=2.0)
