"""Training losses: the supervised task loss, Hinton distillation and attention transfer.

Every loss is an :class:`torch.nn.Module` whose docstring states its formula and
its reduction. ``forward`` returns one scalar; ``components(...)`` returns the
separate terms (for the training history), ``forward`` being its ``"total"``
entry (or its only entry).

Targets are float ``[B, C]`` with ``NaN`` for an unknown label:

* ``multilabel`` -- one sigmoid per label, targets in ``[0, 1]``;
* ``binary`` -- the same with a single label, ``[B, 1]``;
* ``multiclass`` -- one-hot rows ``[B, K]``; a row containing ``NaN`` is masked out.

Teacher logits and feature maps are detached inside the losses: the teacher is a
constant and never receives a gradient from the student's loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("multilabel", "multiclass", "binary")


def _compute_dtype(x: Tensor) -> torch.dtype:
    """At least float32 (half-precision logits under autocast lose too much); float64 stays float64."""
    return torch.promote_types(x.dtype, torch.float32)


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not supported; expected one of {list(TASKS)}")
    return task


def _check_logits_targets(task: str, logits: Tensor, targets: Tensor, what: str = "logits") -> None:
    """Shape and value checks shared by the task and distillation losses."""
    if logits.ndim != 2:
        raise ValueError(f"{what} must be 2-D [batch, classes]; got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} does not match {what} shape {tuple(logits.shape)}"
        )
    if task == "binary" and logits.shape[1] != 1:
        raise ValueError(f"task='binary' expects [batch, 1] {what}; got shape {tuple(logits.shape)}")
    known = targets[~torch.isnan(targets)]
    if task == "multiclass":
        # One-hot rows: entries 0/1 and one 1 per fully known row.
        bad = (known != 0) & (known != 1)
        if bool(bad.any()):
            raise ValueError(f"multiclass targets must be one-hot 0/1 rows; found value {known[bad][0].item()}")
        row_known = ~torch.isnan(targets).any(dim=1)
        sums = torch.nan_to_num(targets).sum(dim=1)
        off = row_known & (sums != 1)
        if bool(off.any()):
            row = int(torch.nonzero(off)[0, 0])
            raise ValueError(
                f"multiclass targets must be one-hot; row {row} sums to {sums[row].item()} instead of 1"
            )
    else:
        bad = (known < 0) | (known > 1)
        if bool(bad.any()):
            raise ValueError(
                f"{task} targets must lie in [0, 1] (NaN = unknown); found value {known[bad][0].item()}"
                " (uncertain -1 labels must be mapped before the loss)"
            )


def _masked_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """BCE-with-logits averaged over the non-NaN targets; 0 (with grad) when none is known."""
    valid = ~torch.isnan(targets)
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    per = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    # sum / count instead of per[valid].mean(): stays a graph node (grad 0) when nothing is known.
    return (per * valid).sum() / valid.sum().clamp(min=1)


def _masked_ce(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy with class = argmax of the one-hot row, mean over rows without NaN."""
    row_valid = ~torch.isnan(targets).any(dim=1)
    cls = torch.nan_to_num(targets, nan=0.0).argmax(dim=1)
    per = F.cross_entropy(logits, cls, reduction="none")
    return (per * row_valid).sum() / row_valid.sum().clamp(min=1)


def task_loss(task: str, logits: Tensor, targets: Tensor) -> Tensor:
    """The plain supervised loss of ``task`` (see :class:`TaskLoss`), computed in at least float32."""
    _check_task(task)
    _check_logits_targets(task, logits, targets)
    logits = logits.to(_compute_dtype(logits))
    targets = targets.to(device=logits.device, dtype=logits.dtype)
    if task == "multiclass":
        return _masked_ce(logits, targets)
    return _masked_bce(logits, targets)


def _number(owner: str, name: str, value: Any) -> float:
    # the settings come from the run's config (kdmed.config): no default here
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{owner} needs {name} (a number, from the run's configuration), got {value!r}")
    return float(value)


class TaskLoss(nn.Module):
    """Plain supervised loss.

    * multilabel / binary: ``mean_{(b,c): y_bc known} BCEWithLogits(z_bc, y_bc)`` -- the mean runs
      over the known (non-NaN) entries only; 0 (keeping the graph) when none is known.
    * multiclass: ``mean_{b: row b known} CE(z_b, argmax y_b)`` over rows without NaN.
    """

    def __init__(self, task: str) -> None:
        super().__init__()
        self.task = _check_task(task)

    def components(self, logits: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """``{"task": loss}``."""
        return {"task": task_loss(self.task, logits, targets)}

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.components(logits, targets)["task"]

    def extra_repr(self) -> str:
        return f"task={self.task!r}"


def _kd_multiclass(student: Tensor, teacher: Tensor, T: float) -> Tensor:
    log_s = F.log_softmax(student / T, dim=1)
    log_t = F.log_softmax(teacher / T, dim=1)
    # KL summed over classes, averaged over the batch ("batchmean").
    return (log_t.exp() * (log_t - log_s)).sum(dim=1).mean()


def _kd_bernoulli(student: Tensor, teacher: Tensor, T: float) -> Tensor:
    s, t = student / T, teacher / T
    # log sigma(x) and log(1 - sigma(x)) = log sigma(-x) from logits: finite for any logit.
    kl = torch.sigmoid(t) * (F.logsigmoid(t) - F.logsigmoid(s)) + torch.sigmoid(-t) * (
        F.logsigmoid(-t) - F.logsigmoid(-s)
    )
    return kl.mean()


class KDLoss(nn.Module):
    """Hinton knowledge distillation: ``(1 - alpha) * task + alpha * kd``.

    * multiclass: ``task = CE(s, y)`` (see :class:`TaskLoss`) and
      ``kd = T^2 * (1/B) * sum_b sum_k p_bk (log p_bk - log q_bk)`` with
      ``p = softmax(t / T)``, ``q = softmax(s / T)`` -- KL(p || q) summed over classes,
      averaged over the batch ("batchmean").
    * multilabel / binary: ``task`` = BCE-with-logits over the known targets and
      ``kd = T^2 * mean_{b,c} KL(Bern(sigmoid(t_bc/T)) || Bern(sigmoid(s_bc/T)))``,
      computed from log-sigmoids. NaN targets are masked out of ``task`` only; ``kd``
      uses every entry.

    ``s`` are the student logits, ``t`` the teacher logits (detached), ``T`` the
    temperature. The ``T^2`` factor keeps the gradient scale of ``kd`` comparable across
    temperatures (Hinton et al. 2015).

    A teacher of another label space (:mod:`kdmed.labels`) teaches only the shared
    classes: ``columns=(student_columns, teacher_columns)`` restricts ``kd`` to
    ``s[:, student_columns]`` against ``t[:, teacher_columns]`` (the mean runs over
    those ``B x |shared|`` entries), while ``task`` keeps every student class.
    """

    def __init__(self, temperature: float, alpha: float, task: str) -> None:
        super().__init__()
        temperature = _number("KDLoss", "temperature", temperature)
        alpha = _number("KDLoss", "alpha", alpha)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got temperature={temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1]; got alpha={alpha}")
        self.temperature = temperature
        self.alpha = alpha
        self.task = _check_task(task)

    def components(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                   columns: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
        """``{"task": task term, "kd": T^2 * KL (unweighted by alpha), "total": weighted sum}``."""
        task = task_loss(self.task, student_logits, targets)
        if columns is not None:
            if self.task == "multiclass":
                raise ValueError("KDLoss: a multiclass teacher must predict the student's classes; columns are "
                                 "only for per-label (Bernoulli) distillation")
            student_logits, teacher_logits = student_logits[:, columns[0]], teacher_logits[:, columns[1]]
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"teacher_logits shape {tuple(teacher_logits.shape)} does not match "
                f"student_logits shape {tuple(student_logits.shape)}"
            )
        s = student_logits.to(_compute_dtype(student_logits))
        t = teacher_logits.detach().to(device=s.device, dtype=s.dtype)
        T = self.temperature
        kl = _kd_multiclass(s, t, T) if self.task == "multiclass" else _kd_bernoulli(s, t, T)
        kd = kl * (T * T)
        total = (1.0 - self.alpha) * task + self.alpha * kd
        return {"task": task, "kd": kd, "total": total}

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                columns: tuple[Tensor, Tensor] | None = None) -> Tensor:
        return self.components(student_logits, teacher_logits, targets, columns)["total"]

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, alpha={self.alpha}, task={self.task!r}"


def attention_map(feature: Tensor, p: float, size: tuple[int, int] | None = None,
                  normalize: bool = True) -> Tensor:
    """Spatial attention map of a feature map ``[B, C, H, W]`` -> ``[B, H, W]`` (at least float32).

    ``A = mean_c |F_c|^p``; with ``size`` it is resized (bilinear) to ``size``; with
    ``normalize`` each sample's flattened map is scaled to unit L2 norm
    (``F.normalize``), which makes it invariant to a positive rescaling of ``F``.
    """
    if feature.ndim != 4:
        raise ValueError(f"feature map must be 4-D [B, C, H, W]; got shape {tuple(feature.shape)}")
    p = float(p)
    if not p > 0:
        raise ValueError(f"p must be > 0; got p={p}")
    a = feature.to(_compute_dtype(feature)).abs().pow(p).mean(dim=1)
    if size is not None and tuple(a.shape[-2:]) != tuple(size):
        a = F.interpolate(a.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)
    if normalize:
        b, h, w = a.shape
        a = F.normalize(a.reshape(b, h * w), p=2.0, dim=1).reshape(b, h, w)
    return a


def _as_taps(maps: Any, what: str) -> tuple[list[str] | None, list[Tensor]]:
    if isinstance(maps, Tensor):
        raise TypeError(f"{what} must be a list or dict of [B, C, H, W] tensors, not a single tensor")
    if isinstance(maps, Mapping):
        return list(maps.keys()), list(maps.values())
    if isinstance(maps, Sequence):
        return None, list(maps)
    raise TypeError(f"{what} must be a list or dict of [B, C, H, W] tensors; got {type(maps).__name__}")


class ATLoss(nn.Module):
    """Attention transfer (Zagoruyko & Komodakis 2017).

    ``loss = beta * sum_taps (1/B) sum_b || a_s(b) - a_t(b) ||_2`` where, per tap,
    ``a = normalize(flatten(mean_c |F_c|^p))`` (:func:`attention_map`); the norm of the
    difference is not squared. When the spatial sizes differ, the student's map is
    resized (bilinear) to the teacher's before flattening; channel counts may differ.
    Feature maps are lists (matched by position) or dicts (matched by tap name).
    """

    def __init__(self, beta: float, p: float) -> None:
        super().__init__()
        beta, p = _number("ATLoss", "beta", beta), _number("ATLoss", "p", p)
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0; got beta={beta}")
        if not p > 0:
            raise ValueError(f"p must be > 0; got p={p}")
        self.beta = beta
        self.p = p

    def _pairs(self, student_maps: Any, teacher_maps: Any) -> list[tuple[str, Tensor, Tensor]]:
        s_keys, s_list = _as_taps(student_maps, "student_feature_maps")
        t_keys, t_list = _as_taps(teacher_maps, "teacher_feature_maps")
        if len(s_list) != len(t_list):
            raise ValueError(
                f"number of taps differs: {len(s_list)} student feature maps vs {len(t_list)} teacher feature maps"
            )
        if len(s_list) == 0:
            raise ValueError("ATLoss needs at least one tap; got empty feature map collections")
        if (s_keys is None) != (t_keys is None):
            raise TypeError("student and teacher feature maps must both be lists or both be dicts")
        if s_keys is not None:
            if set(s_keys) != set(t_keys):
                raise ValueError(
                    f"tap names differ: student has {sorted(map(str, s_keys))}, teacher has {sorted(map(str, t_keys))}"
                )
            names = [str(k) for k in s_keys]
            t_list = [teacher_maps[k] for k in s_keys]
        else:
            names = [str(i) for i in range(len(s_list))]
        pairs = []
        for name, fs, ft in zip(names, s_list, t_list):
            for who, f in (("student", fs), ("teacher", ft)):
                if not isinstance(f, Tensor) or f.ndim != 4:
                    shape = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
                    raise ValueError(f"tap {name}: {who} feature map must be a 4-D [B, C, H, W] tensor; got {shape}")
            if fs.shape[0] != ft.shape[0]:
                raise ValueError(f"tap {name}: batch sizes differ (student {fs.shape[0]}, teacher {ft.shape[0]})")
            pairs.append((name, fs, ft))
        return pairs

    def components(self, student_feature_maps: Any, teacher_feature_maps: Any) -> dict[str, Tensor]:
        """``{"at": beta * sum over taps of the batch-mean L2 distance}``."""
        pairs = self._pairs(student_feature_maps, teacher_feature_maps)
        return {"at": self._loss([fs for _, fs, _ in pairs], [attention_map(ft.detach(), self.p) for _, _, ft in pairs])}

    def from_attention(self, student_feature_maps: Sequence[Tensor], teacher_attention: Sequence[Tensor]) -> Tensor:
        """The same loss from the teacher's attention maps ``a_t`` ``[B, H, W]``, already computed (and shared)."""
        if len(student_feature_maps) != len(teacher_attention) or not teacher_attention:
            raise ValueError(f"{len(student_feature_maps)} student feature maps for {len(teacher_attention)} "
                             "teacher attention maps; give one per tap")
        return self._loss(list(student_feature_maps), [a.detach() for a in teacher_attention])

    def _loss(self, student_maps: list[Tensor], teacher_attention: list[Tensor]) -> Tensor:
        total = None
        for fs, a_t in zip(student_maps, teacher_attention):
            a_s = attention_map(fs, self.p, size=tuple(a_t.shape[-2:])).to(a_t.device)
            dist = torch.linalg.vector_norm((a_s - a_t.to(a_s.dtype)).flatten(1), ord=2, dim=1).mean()
            total = dist if total is None else total + dist
        return self.beta * total

    def forward(self, student_feature_maps: Any, teacher_feature_maps: Any) -> Tensor:
        return self.components(student_feature_maps, teacher_feature_maps)["at"]

    def extra_repr(self) -> str:
        return f"beta={self.beta}, p={self.p}"


LOSSES: dict[str, type[nn.Module]] = {"task": TaskLoss, "kd": KDLoss, "at": ATLoss}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the loss registered under ``name`` in :data:`LOSSES` with ``kwargs``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)
