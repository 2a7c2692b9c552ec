"""The training loop: optimiser, LR schedule, early stopping, resumable checkpoints.

:class:`Trainer` trains one student with a :class:`kdmed.strategies.Strategy`:

* Adam (default lr 5e-5, the authors' value) or SGD with momentum 0.9, weight decay;
* ``ReduceLROnPlateau(factor=0.5, patience=plateau_patience)`` on the validation
  loss; early stopping when the validation macro-AUC has not improved for
  ``patience`` epochs; the best epoch's weights are restored at the end;
* bf16 autocast and channels_last on CUDA, optional ``torch.compile`` of the student
  (skipped, with a warning, for attention transfer: its feature-map hooks do not
  fire inside a compiled graph); fp32 on CPU;
* DistributedDataParallel when the training loader is sharded (``world_size > 1``,
  see :mod:`kdmed.distributed`): losses summed and predictions gathered across
  ranks, so every rank records the same history; only rank 0 writes the checkpoint;
* one history record per epoch (:data:`HISTORY_COLUMNS` plus ``train_<term>``);
* ``last.pt`` written atomically after every epoch with everything needed to
  continue (model, optimiser, scheduler, best state, history and the torch/CUDA,
  NumPy and Python RNG states), so a run resumed after a crash gives the same
  numbers as an uninterrupted one. It loads with ``torch.load(weights_only=True)``.

The validation loss is the plain task loss whatever the strategy, so it is
comparable across strategies.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdmed import distributed
from kdmed.config import TrainSpec
from kdmed.losses import TaskLoss
from kdmed.models import set_train_mode, unwrap
from kdmed.devices import autocast_context
from kdmed.predict import epoch_macro_auc, loader_labels, predict
from kdmed.strategies import Strategy
from kdmed.utils import atomic_torch_save

CHECKPOINT_FORMAT = "kdmed-trainer-v1"
#: columns of every history record (loss terms add ``train_<term>`` columns)
HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_running_macro_auc", "train_eval_loss", "train_eval_macro_auc",
    "val_loss", "val_macro_auc", "lr", "seconds", "train_seconds", "images_per_s",
)
#: history columns that measure time, hence differ between otherwise identical runs
TIMING_COLUMNS = ("seconds", "train_seconds", "images_per_s")
# on CUDA reading the loss back every batch would stall the pipeline; check in groups
_CUDA_CHECK_EVERY = 32


# ---------------------------------------------------------------------------- helpers
def history_frame(history: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-epoch records as a DataFrame, columns in :data:`HISTORY_COLUMNS` order (loss terms after ``train_loss``)."""
    frame = pd.DataFrame(list(history))
    terms = sorted(c for c in frame.columns if c.startswith("train_") and c not in HISTORY_COLUMNS)
    order = ["epoch", "train_loss", *terms, *HISTORY_COLUMNS[2:]]
    return frame[[c for c in order if c in frame.columns] + [c for c in frame.columns if c not in order]]


def rng_state() -> dict[str, Any]:
    """Every RNG state a training run draws from, as tensors/lists (``weights_only``-loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _cpu_state(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in unwrap(model).state_dict().items())


@dataclasses.dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns. ``history`` holds one dict per epoch."""

    history: list[dict[str, Any]]
    best_epoch: int
    best_val_macro_auc: float
    epochs_run: int
    stopped_early: bool
    teacher_mode: str
    resumed_from_epoch: int
    train_seconds: float
    compiled: bool = False

    def history_frame(self) -> pd.DataFrame:
        """The history as a DataFrame, one row per epoch."""
        return history_frame(self.history)


class Trainer:
    """Train ``model`` with ``strategy``; see the module docstring for the recipe.

    ``checkpoint_path`` (e.g. ``<run>/last.pt``): written after every epoch and,
    when it exists at :meth:`fit`, resumed from. ``fingerprint``: any string stored in
    the checkpoint; a checkpoint with another fingerprint is refused (guards against
    resuming a different run). ``callbacks``: ``f(epoch, record)`` called after each
    epoch's checkpoint is written (an exception there stops training, the
    checkpoint stays). ``quiet`` turns the progress bars off.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        spec: TrainSpec,
        *,
        device: str | torch.device | None = None,
        checkpoint_path: str | Path | None = None,
        fingerprint: str | None = None,
        callbacks: Sequence[Callable[[int, dict], Any]] = (),
        quiet: bool = False,
    ) -> None:
        if not isinstance(spec, TrainSpec):
            raise TypeError(f"Trainer needs a kdmed.config.TrainSpec (the run's optimisation settings), got {spec!r}")
        self.model = model
        self.strategy = strategy
        self.spec = spec
        self.epochs = spec.epochs
        self.patience = spec.patience
        self.amp = spec.amp
        self.compile = spec.compile
        self.device = None if device is None else torch.device(device)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.fingerprint = fingerprint
        self.callbacks = list(callbacks)
        self.quiet = bool(quiet)
        self.val_loss_fn = TaskLoss(strategy.task)
        self._ddp = False  # set by fit(): the training loader is sharded across processes
        self._main = True  # this process writes files and shows progress (rank 0)

    # ------------------------------------------------------------------ set-up
    def _build_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameter (everything is frozen)")
        spec = self.spec
        if spec.optimizer == "adam":
            return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self.checkpoint_path
        if path is None or not path.exists():
            return None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read the training checkpoint ({type(exc).__name__}: {exc}); "
                             "delete it to restart the run") from exc
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a kdmed training checkpoint (format {CHECKPOINT_FORMAT!r})")
        if ckpt.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{path} belongs to another run (fingerprint {ckpt.get('fingerprint')!r}, "
                f"expected {self.fingerprint!r}); delete it or point checkpoint_path elsewhere"
            )
        return ckpt

    # ------------------------------------------------------------------ one epoch
    def _check_finite(self, pending: list[tuple[int, torch.Tensor]], epoch: int, n_batches: int) -> None:
        values = torch.stack([v for _, v in pending]).float().cpu()
        bad = ~torch.isfinite(values)
        # every rank checks at the same batches; they must stop together or the others hang
        if self._ddp and distributed.any_rank(bool(bad.any())) and not bool(bad.any()):
            raise FloatingPointError(f"non-finite training loss on another rank at epoch {epoch}, within batch "
                                     f"{pending[-1][0] + 1} of {n_batches}: training stopped")
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            kept = f"; the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path else ""
            raise FloatingPointError(
                f"non-finite training loss ({values[i].item()}) at epoch {epoch}, batch {pending[i][0] + 1} "
                f"of {n_batches}: training stopped{kept}"
            )

    def _train_epoch(self, forward: nn.Module, loader: Any, opt: torch.optim.Optimizer, epoch: int) -> dict[str, Any]:
        from tqdm.auto import tqdm

        device = self.device
        set_train_mode(self.model)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch - 1)
        self.strategy.start_epoch(epoch - 1)
        n_batches = len(loader)
        sums: dict[str, torch.Tensor] = {}
        total_sum = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        scores, targets = [], []
        pending: list[tuple[int, torch.Tensor]] = []
        check_every = _CUDA_CHECK_EVERY if device.type == "cuda" else 1
        bar = tqdm(loader, total=n_batches, desc=f"epoch {epoch}/{self.epochs}", disable=self.quiet or not self._main,
                   leave=False)
        for b, batch in enumerate(bar):
            with autocast_context(device, self.amp):
                loss, terms, logits = self.strategy.step(forward, batch, return_logits=True)
            pending.append((b, loss.detach()))
            if len(pending) >= check_every or b == n_batches - 1:
                # checked before the step on CPU, so weights never see a NaN there
                self._check_finite(pending, epoch, n_batches)
                pending = []
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bs = int(batch.x.shape[0])
            seen += bs
            total_sum += loss.detach().double() * bs
            for k, v in terms.items():
                sums[k] = sums.get(k, torch.zeros((), dtype=torch.float64, device=device)) + v.double() * bs
            scores.append(logits.detach().float())
            targets.append(batch.y)
        if pending:
            self._check_finite(pending, epoch, n_batches)
        if seen == 0:
            raise ValueError("the training loader yielded no batch")
        y = torch.cat(targets).cpu().numpy()
        s = torch.cat(scores).cpu().numpy()
        if self._ddp:
            # the epoch's numbers are over the global batch: sums and predictions of every rank
            names = list(sums)
            total_sum, seen_t, *reduced = distributed.all_reduce_sum(
                [total_sum, torch.tensor(float(seen), dtype=torch.float64), *(sums[k] for k in names)])
            seen, sums = int(seen_t.item()), dict(zip(names, reduced))
            y, s = (np.concatenate(distributed.all_gather_array(a)) for a in (y, s))
            # per-rank BatchNorm (no SyncBatchNorm on CPU) leaves rank-specific running statistics
            distributed.sync_buffers(self.model)
        rec = {"train_loss": (total_sum / seen).item()}
        rec.update({f"train_{k}": (v / seen).item() for k, v in sums.items()})
        rec["train_running_macro_auc"] = epoch_macro_auc(self.strategy.task, y, s)
        rec["_seen"] = seen
        return rec

    def _validate(self, loader: Any) -> tuple[float, float]:
        scores = predict(self.model, loader, amp=self.amp)
        y = loader_labels(loader)
        loss = self.val_loss_fn(torch.from_numpy(scores), torch.from_numpy(np.asarray(y, dtype=np.float32)))
        return float(loss), epoch_macro_auc(self.strategy.task, y, scores)

    # ------------------------------------------------------------------ fit
    def fit(self, train_loader: Any, val_loader: Any, train_eval_loader: Any = None) -> FitResult:
        """Train (or resume) up to ``epochs`` epochs; return the history with the best weights loaded.

        ``train_eval_loader`` (optional): fixed, un-augmented training images scored in eval
        mode after every epoch, like the validation split (``train_eval_loss``,
        ``train_eval_macro_auc``): the training side of the generalization gap, measured
        the same way as its validation side.
        """
        device = self.device or torch.device(getattr(train_loader, "device", "cpu"))
        self.device = device
        self._ddp = getattr(train_loader, "world_size", 1) > 1
        if self._ddp:
            distributed.check_loader(train_loader)
            distributed.check_loader(val_loader)
        self._main = not self._ddp or distributed.is_main_process()
        self.model.to(device)
        self.strategy.to(device)
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
            if self.strategy.teacher is not None:
                self.strategy.teacher.to(memory_format=torch.channels_last)
        self.strategy.bind_student(self.model)
        teacher_mode = self.strategy.prepare(train_loader, amp=self.amp, progress=not self.quiet and self._main)
        opt = self._build_optimizer()
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=self.spec.plateau_patience)

        history: list[dict[str, Any]] = []
        best_state = _cpu_state(self.model)
        best_metric, best_epoch, bad_epochs, stopped, start = float("nan"), 0, 0, False, 0
        ckpt = self._load_checkpoint()
        if ckpt is not None:
            unwrap(self.model).load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            history = list(ckpt["history"])
            best_state = ckpt["best_state"]
            best_metric, best_epoch = float(ckpt["best_metric"]), int(ckpt["best_epoch"])
            bad_epochs, stopped, start = int(ckpt["bad_epochs"]), bool(ckpt["stopped"]), int(ckpt["epoch"])
            set_rng_state(ckpt["rng"])
        resumed_from = start

        compiled = self.compile and not self.strategy.uses_at
        if self.compile and not compiled:
            warnings.warn("torch.compile is skipped with attention transfer: the forward hooks that collect the "
                          "feature maps do not fire inside a compiled graph", RuntimeWarning, stacklevel=2)
        # DDP shares the module's parameters (the optimiser above keeps working) and averages the gradients
        forward = distributed.wrap_ddp(self.model, device) if self._ddp else self.model
        forward = torch.compile(forward) if compiled else forward
        epoch = start
        while not stopped and epoch < self.epochs:
            epoch += 1
            lr = opt.param_groups[0]["lr"]
            t0 = time.perf_counter()
            rec = self._train_epoch(forward, train_loader, opt, epoch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds = time.perf_counter() - t0
            val_loss, val_auc = self._validate(val_loader)
            if train_eval_loader is not None:
                rec["train_eval_loss"], rec["train_eval_macro_auc"] = self._validate(train_eval_loader)
            sched.step(val_loss)
            improved = best_epoch == 0 or (math.isfinite(val_auc) and not val_auc <= best_metric)
            if improved:
                best_metric, best_epoch, bad_epochs = val_auc, epoch, 0
                best_state = _cpu_state(self.model)
            else:
                bad_epochs += 1
            stopped = bad_epochs >= self.patience
            seen = rec.pop("_seen")
            record = {"epoch": epoch, **rec, "val_loss": val_loss, "val_macro_auc": val_auc, "lr": lr,
                      "seconds": time.perf_counter() - t0, "train_seconds": train_seconds,
                      "images_per_s": seen / train_seconds if train_seconds > 0 else float("nan")}
            history.append(record)
            if self.checkpoint_path is not None and self._main:
                atomic_torch_save(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "fingerprint": self.fingerprint,
                        "epoch": epoch,
                        "model": _cpu_state(self.model),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "best_state": best_state,
                        "best_metric": best_metric,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "stopped": stopped,
                        "history": history,
                        "rng": rng_state(),
                    },
                    self.checkpoint_path,
                )
            for callback in self.callbacks:
                callback(epoch, dict(record))

        unwrap(self.model).load_state_dict(best_state)
        return FitResult(
            history=copy.deepcopy(history),
            best_epoch=best_epoch,
            best_val_macro_auc=best_metric,
            epochs_run=len(history),
            stopped_early=stopped,
            teacher_mode=teacher_mode,
            resumed_from_epoch=resumed_from,
            train_seconds=float(sum(h["train_seconds"] for h in history)),
            compiled=compiled,
        )


def fit(model: nn.Module, strategy: Strategy, train_loader: Any, val_loader: Any, train_eval_loader: Any = None,
        **options: Any) -> FitResult:
    """Shorthand for ``Trainer(model, strategy, TrainSpec(...), ...).fit(...)``.

    ``options`` holds :class:`kdmed.config.TrainSpec` fields and :class:`Trainer` keywords.
    """
    spec_fields = {f.name for f in dataclasses.fields(TrainSpec)}
    spec = TrainSpec(**{k: v for k, v in options.items() if k in spec_fields})
    rest = {k: v for k, v in options.items() if k not in spec_fields}
    return Trainer(model, strategy, spec, **rest).fit(train_loader, val_loader, train_eval_loader)
