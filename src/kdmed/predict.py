"""Scoring a model over a loader: logits in the loader's row order (gathered across ranks), labels, the epoch AUC."""

from __future__ import annotations

import warnings
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from kdmed import distributed, metrics
from kdmed.devices import autocast_context
from kdmed.models import unwrap


def epoch_macro_auc(task: str, y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro ROC AUC of logits ``scores`` (softmaxed for multiclass, as in :func:`kdmed.metrics.evaluate`).

    Classes with a single known label value are skipped; NaN when none is defined.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if task == "multiclass":
        z = scores - scores.max(axis=1, keepdims=True)
        scores = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        # small validation sets often lack positives of a rare class; the macro skips it
        warnings.simplefilter("ignore")
        return float(metrics.macro_auc(y_true, scores))


def _rows_positions(loader: Any) -> np.ndarray | None:
    rows = getattr(loader, "rows", None)
    if rows is None or getattr(loader, "world_size", 1) != 1 or getattr(loader, "drop_last", False):
        return None
    return np.asarray(rows)


def loader_labels(loader: Any) -> np.ndarray:
    """The labels of a :class:`kdmed.loader.ArrayLoader`'s rows, in its row order."""
    return np.asarray(loader.labels)[np.asarray(loader.rows)]


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, *, amp: bool = False, progress: bool = False) -> np.ndarray:
    """Logits of ``model`` for every row of ``loader``: float32 ``[N, K]``.

    For a :class:`kdmed.loader.ArrayLoader` the rows come back in the loader's row
    order (``loader.rows``), whatever its batching; other iterables of batches keep
    their iteration order. A loader sharded across processes (``world_size > 1``)
    gives every rank the predictions of all rows (gathered, padding removed).
    The model runs in eval mode (its mode is restored).
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    device = next(unwrap(model).parameters()).device
    rows = _rows_positions(loader)
    chunks, indices = [], []
    try:
        with autocast_context(device, amp):
            for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
                chunks.append(model(batch.x).float())
                indices.append(batch.index)
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("predict: the loader yielded no batches")
    scores = torch.cat(chunks).cpu().numpy()
    index = torch.cat(indices).cpu().numpy()
    if getattr(loader, "world_size", 1) > 1:
        distributed.check_loader(loader)
        return distributed.gather_loader_scores(loader, scores, index)
    if rows is None:
        return scores
    sorter = np.argsort(rows, kind="stable")
    pos = sorter[np.searchsorted(rows, index, sorter=sorter)]
    if len(index) != len(rows) or not np.array_equal(np.sort(pos), np.arange(len(rows))):
        raise ValueError(f"predict: the loader yielded {len(index)} rows that do not cover its {len(rows)} rows once")
    out = np.empty_like(scores)
    out[pos] = scores
    return out
