"""Training strategies: which loss terms train the student, and the frozen teacher behind them.

The book compares five methods (see ``PAPER.md``):

============  =====================================================================
``scratch``   labels only (the run starts from a random init)
``transfer``  labels only (the run starts from a pre-trained init, maybe partly frozen)
``kd``        Hinton soft targets, :class:`kdmed.losses.KDLoss`
``at``        task loss + attention transfer, :class:`kdmed.losses.ATLoss`
``kd+at``     both terms
============  =====================================================================

A :class:`Strategy` is only the *loss*: where the student's weights come from
(random, ImageNet, another run's checkpoint) is chosen separately by the caller,
so "kd on top of a transferred init" and "transfer" differ only in the teacher.

The teacher is frozen: every parameter has ``requires_grad=False``, it is kept in
eval mode, it runs under ``torch.no_grad()`` and under whatever autocast the
student's forward runs in (the caller's context), so it never receives a gradient.

The teacher's outputs come from :class:`kdmed.teacher_views.TeacherViews`: one
canonical no-grad pass over the training rows per view, looked up by
``batch.index``; recorded as :attr:`Strategy.teacher_mode`:

* ``"cached"``: the training loader does not augment, so every epoch shows the same
  view and one pass serves the run;
* ``"shared"``: the loader augments; the pass runs once per epoch's view and is kept
  in the shared disk cache, where every other student with the same teacher, images
  and view seed reads it (attention transfer gets the teacher's attention maps the
  same way).

``"none"`` means the strategy uses no teacher.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from kdmed.losses import ATLoss, KDLoss, TaskLoss
from kdmed.methods import STRATEGIES, check_strategy
from kdmed.models import FeatureTaps, default_taps, model_arch

TEACHER_MODES = ("none", "cached", "shared")


def freeze_teacher(teacher: nn.Module) -> nn.Module:
    """Put ``teacher`` in eval mode and switch off the gradient of every parameter (in place)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def loader_augments(loader: Any) -> bool:
    """Whether ``loader`` changes the images between epochs (flip or rotation)."""
    aug = getattr(loader, "augment", False)
    if isinstance(aug, Mapping):
        return bool(aug.get("hflip")) or float(aug.get("rotate", 0.0) or 0.0) > 0
    return bool(aug)


def matched_taps(student_arch: str, teacher_arch: str, taps: Iterable[str] | None) -> tuple[list[str], list[str]]:
    """The student's taps and the teacher's taps paired with them, by stage position.

    ``taps`` names student taps (default: all of :func:`kdmed.models.default_taps`).
    Every architecture has four stages at the same strides, so the teacher's tap is
    the one at the same stage index (``block3`` of small_cnn pairs with ``layer3``
    of resnet18 and ``denseblock3`` of densenet121).
    """
    s_all, t_all = default_taps(student_arch), default_taps(teacher_arch)
    s_taps = list(s_all) if taps is None else list(taps)
    unknown = [t for t in s_taps if t not in s_all]
    if unknown:
        raise ValueError(f"unknown tap(s) {unknown} for student arch {student_arch}; valid taps: {', '.join(s_all)}")
    if not s_taps:
        raise ValueError(f"taps is empty; name at least one of {', '.join(s_all)}")
    return s_taps, [t_all[s_all.index(t)] for t in s_taps]


class Strategy:
    """The loss of one training method plus its frozen teacher.

    Parameters: ``name`` (see :data:`STRATEGIES`), ``task`` ("multilabel",
    "multiclass", "binary"); ``teacher`` (an ``nn.Module``; required by kd, at,
    kd+at, refused otherwise); ``student_arch``/``teacher_arch`` (default: the
    architecture :func:`kdmed.models.build_model` recorded on the module);
    ``temperature``/``alpha`` (KD), ``beta``/``at_p`` (AT); ``taps`` (student taps for
    AT, default all four stages); ``shared_outputs_key`` (the teacher's outputs in the
    shared disk cache, :mod:`kdmed.teacher_views`; None: this process only);
    ``kd_alignment`` (a :class:`kdmed.labels.ClassAlignment` of the teacher's classes
    onto the student's: KD then distils the shared classes only; None: the same label
    space). The loss settings are required by the terms that use
    them and have no default here: they come from the run's configuration.

    Call :meth:`prepare` with the training loader before the first :meth:`step`.
    """

    def __init__(
        self,
        name: str,
        task: str,
        *,
        teacher: nn.Module | None = None,
        student_arch: str | None = None,
        teacher_arch: str | None = None,
        temperature: float | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        at_p: float | None = None,
        taps: Iterable[str] | None = None,
        shared_outputs_key: str | None = None,
        kd_alignment: Any = None,
    ) -> None:
        self.name = check_strategy(name)
        self.uses_kd, self.uses_at = STRATEGIES[name]
        self.task = task
        needs = self.uses_kd or self.uses_at
        if needs and teacher is None:
            raise ValueError(f"strategy {name!r} needs a teacher model; got teacher=None")
        if not needs and teacher is not None:
            raise ValueError(f"strategy {name!r} trains on labels only; it takes no teacher")
        self.task_loss = TaskLoss(task)
        self.kd_loss = KDLoss(temperature=temperature, alpha=alpha, task=task) if self.uses_kd else None
        self.at_loss = ATLoss(beta=beta, p=at_p) if self.uses_at else None
        self.teacher = freeze_teacher(teacher) if teacher is not None else None
        # decided by prepare(), which sees the training loader
        self.teacher_mode = "none" if teacher is None else "unprepared"
        self.student_arch = student_arch
        self.teacher_arch = teacher_arch or (model_arch(teacher) if teacher is not None else None)
        self.student_taps: list[str] | None = None
        self.teacher_taps: list[str] | None = None
        self._taps_arg = None if taps is None else list(taps)
        if self.uses_at:
            if self.teacher_arch is None:
                raise ValueError("attention transfer needs teacher_arch (the teacher was not built by build_model)")
            if student_arch is not None:
                self._set_taps(student_arch)
        self._student_taps: tuple[nn.Module, FeatureTaps] | None = None
        self._checked_maps = False
        self.shared_outputs_key = shared_outputs_key
        self.kd_alignment = None if kd_alignment is None or kd_alignment.identity else kd_alignment
        self._kd_columns: tuple[Tensor, Tensor] | None = None
        self._views: Any = None  # kdmed.teacher_views.TeacherViews, made by prepare()
        self._loader: Any = None
        self._amp = False
        self._view_loaded: int | None = None
        self._logits: Tensor | None = None
        self._maps: list[Tensor] = []

    # ------------------------------------------------------------------ set-up
    def _set_taps(self, student_arch: str) -> None:
        s_taps, t_taps = matched_taps(student_arch, self.teacher_arch, self._taps_arg)
        self.student_arch = student_arch
        self.student_taps = s_taps
        self.teacher_taps = t_taps

    def to(self, device: torch.device | str) -> "Strategy":
        """Move the teacher (and the outputs of the current view) to ``device``."""
        if self.teacher is not None:
            self.teacher.to(device)
        if self._logits is not None:
            self._logits = self._logits.to(device)
            self._maps = [m.to(device) for m in self._maps]
        return self

    def bind_student(self, student: nn.Module) -> None:
        """Choose the attention-transfer taps from ``student``'s architecture (when not given at construction)."""
        if self.uses_at and self.student_taps is None:
            arch = model_arch(student) or self.student_arch
            if arch is None:
                raise ValueError("attention transfer needs student_arch (the student was not built by build_model)")
            self._set_taps(arch)

    def prepare(self, train_loader: Any, *, amp: bool = False, progress: bool = False) -> str:
        """Choose the teacher mode for ``train_loader``; returns ``"none"``, ``"cached"`` or ``"shared"``.

        The outputs of a view are computed (or read from the shared cache) by :meth:`start_epoch`.
        """
        from kdmed.teacher_views import TeacherViews

        if self.teacher is None:
            self.teacher_mode = "none"
            return self.teacher_mode
        device = torch.device(getattr(train_loader, "device", "cpu"))
        self.teacher.to(device)
        freeze_teacher(self.teacher)
        if self.uses_at and self.teacher_taps is None:
            raise ValueError("attention transfer needs the student's taps before prepare(): give student_arch "
                             "or call bind_student(model)")
        if self._views is not None:
            self._views.close()
        self._views = TeacherViews(self.teacher, self.teacher_arch, self.teacher_taps if self.uses_at else None,
                                   self.at_loss.p if self.uses_at else None, self.shared_outputs_key)
        self._loader, self._amp, self._view_loaded = train_loader, amp, None
        self.teacher_mode = "shared" if loader_augments(train_loader) else "cached"
        return self.teacher_mode

    def start_epoch(self, epoch: int) -> None:
        """Load the teacher's outputs on the training images as epoch ``epoch`` (0-based) shows them."""
        from kdmed.teacher_views import as_lookup

        if self.teacher is None:
            return
        if self._views is None:
            raise RuntimeError("Strategy.start_epoch() before prepare()")
        view = int(epoch) if self.teacher_mode == "shared" else 0
        if view == self._view_loaded:
            return
        arrays = self._views.epoch(self._loader, view, self._amp)
        self._logits, self._maps = as_lookup(arrays, len(self._loader.images), torch.device(self._loader.device))
        self._view_loaded = view

    @property
    def teacher_pass_seconds(self) -> float:
        """Seconds this run spent computing teacher passes (reading shared ones costs nothing here)."""
        return 0.0 if self._views is None else self._views.pass_seconds

    def close(self) -> None:
        """Remove the forward hooks this strategy put on the teacher and the student."""
        if self._views is not None:
            self._views.close()
        if self._student_taps is not None:
            self._student_taps[1].close()
            self._student_taps = None

    # ------------------------------------------------------------------ forward
    def _student_feature_taps(self, student: nn.Module) -> FeatureTaps:
        if self._student_taps is None or self._student_taps[0] is not student:
            if self._student_taps is not None:
                self._student_taps[1].close()
            arch = model_arch(student) or self.student_arch
            if arch is None:
                raise ValueError("attention transfer needs student_arch (the student was not built by build_model)")
            if self.student_taps is None or arch != self.student_arch:
                self._set_taps(arch)
            self._student_taps = (student, FeatureTaps(student, arch, self.student_taps))
        return self._student_taps[1]

    def teacher_outputs(self, batch: Any) -> tuple[Tensor, list[Tensor] | None]:
        """The teacher's logits (and attention maps for AT) for ``batch``, from the current view."""
        if self.teacher is None:
            raise RuntimeError(f"strategy {self.name!r} has no teacher")
        if self._logits is None:
            raise RuntimeError("the teacher's outputs are not loaded: call prepare() and start_epoch() first")
        return self._logits[batch.index], ([m[batch.index] for m in self._maps] if self.uses_at else None)

    def step(self, student: nn.Module, batch: Any, return_logits: bool = False):
        """Loss of ``student`` on ``batch``: ``(loss, terms)`` or ``(loss, terms, logits)``.

        ``terms`` maps each loss component ("task", and "kd"/"at" when used) to a
        detached scalar tensor; ``loss`` is the differentiable total.
        """
        if self.uses_at:
            logits, s_maps = self._student_feature_taps(student)(batch.x)
            s_maps = list(s_maps.values())
        else:
            logits = student(batch.x)
        if self.teacher is not None:
            t_logits, t_maps = self.teacher_outputs(batch)
        terms: dict[str, Tensor] = {}
        if self.uses_kd:
            parts = self.kd_loss.components(logits, t_logits, batch.y, self._columns(logits.device))
            terms["task"], terms["kd"] = parts["task"], parts["kd"]
            total = parts["total"]
        else:
            total = terms["task"] = self.task_loss(logits, batch.y)
        if self.uses_at:
            if not self._checked_maps:
                self._warn_single_pixel_maps(s_maps, t_maps)
            terms["at"] = self.at_loss.from_attention(s_maps, t_maps)
            total = total + terms["at"]
        terms = {k: v.detach() for k, v in terms.items()}
        return (total, terms, logits) if return_logits else (total, terms)

    def _columns(self, device: torch.device) -> tuple[Tensor, Tensor] | None:
        if self.kd_alignment is None:
            return None
        if self._kd_columns is None or self._kd_columns[0].device != device:
            a = self.kd_alignment
            self._kd_columns = (torch.tensor(a.target_index, device=device), torch.tensor(a.source_index, device=device))
        return self._kd_columns

    def _warn_single_pixel_maps(self, s_maps: list[Tensor], t_maps: list[Tensor]) -> None:
        import warnings

        self._checked_maps = True
        for s_tap, t_tap, fs, at in zip(self.student_taps, self.teacher_taps, s_maps, t_maps):
            if fs.shape[-2:].numel() == 1 or at.shape[-2:].numel() == 1:
                # a normalised 1x1 attention map is always 1: the term is constant 0 for this tap
                warnings.warn(
                    f"attention transfer tap {s_tap}/{t_tap} has a 1x1 feature map at this image size "
                    f"(student {tuple(fs.shape[-2:])}, teacher {tuple(at.shape[-2:])}); it contributes nothing. "
                    "Use larger images or shallower taps.",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def describe(self) -> dict[str, Any]:
        """The strategy's settings and teacher mode (for the run's result record)."""
        out: dict[str, Any] = {"strategy": self.name, "teacher_mode": self.teacher_mode}
        if self.kd_loss is not None:
            out.update(temperature=self.kd_loss.temperature, alpha=self.kd_loss.alpha)
        if self.at_loss is not None:
            out.update(beta=self.at_loss.beta, at_p=self.at_loss.p, student_taps=self.student_taps,
                       teacher_taps=self.teacher_taps)
        if self.teacher is not None:
            out["teacher_arch"] = self.teacher_arch
        if self.kd_alignment is not None:
            out["kd_classes"] = self.kd_alignment.describe()
        return out

    def teacher_pass_counts(self) -> dict[str, int]:
        """How many views' teacher passes this run computed and how many it read from the shared cache."""
        views = self._views
        return {"computed": views.computed if views else 0, "read_from_cache": views.reads if views else 0}

    def __repr__(self) -> str:
        return f"Strategy({self.name!r}, task={self.task!r}, teacher_mode={self.teacher_mode!r})"
