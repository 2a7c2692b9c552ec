"""Checkpoint files: write a model with its metadata, read one back safely, load weights into a model.

A kdmed checkpoint (format ``kdmed-model-v1``) is ``{"format", "model": state_dict,
"arch", "num_classes", "classes", **extra}`` with JSON-like metadata, so it loads
with ``torch.load(weights_only=True)``. Bare state_dicts (torchvision's ImageNet
files included) are accepted too: DDP/``torch.compile`` key prefixes are stripped
and torchvision's pre-0.4 DenseNet key names are renamed.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from ..utils import atomic_torch_save, to_jsonable
from .archs import ARCHS, HEAD, check_arch, model_arch, new_model, resolve_arch, unwrap

#: torchvision's DenseNet checkpoints use the pre-0.4 names "norm.1", "conv.2", ...
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)

#: keys :func:`save_model` writes itself; ``extra`` may not overwrite them
_RESERVED_KEYS = ("format", "model", "arch", "num_classes", "classes")
_FORMAT = "kdmed-model-v1"


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``) as ``{"model": state_dict, ...metadata}``.

    Accepts a kdmed checkpoint (a dict with a ``"model"`` state_dict) or a bare
    state_dict file; anything else raises :class:`ValueError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # the unpickler raises many types (KeyError, EOFError, ...) on foreign files
        raise ValueError(
            f"{path} is not a kdmed/torch checkpoint: torch.load(weights_only=True) failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    return _as_checkpoint(obj, str(path))


def _as_checkpoint(obj: Any, where: str) -> dict[str, Any]:
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        ckpt = dict(obj)
    elif isinstance(obj, Mapping):
        ckpt = {"model": obj}
    else:
        raise ValueError(
            f"{where} is not a kdmed/torch checkpoint: expected a state_dict or a dict with a 'model' "
            f"state_dict, found {type(obj).__name__}"
        )
    state = ckpt["model"]
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not state:
        raise ValueError(
            f"{where} is not a kdmed/torch checkpoint: its state_dict "
            + (f"has non-tensor entries {bad[:5]}" if bad else "is empty")
        )
    return ckpt


def _normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP/compile prefixes and rename torchvision's old DenseNet keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in ("module.", "_orig_mod."):
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        out[key] = value
    return out


def _head_name(model: nn.Module) -> str:
    arch = model_arch(model)
    if arch is not None:
        return HEAD[arch]
    linears = [name for name, m in unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot find the classifier head: the model has no nn.Linear and no kdmed arch")
    return linears[-1]


def checkpoint_num_classes(ckpt: Mapping[str, Any], arch: str) -> int | None:
    """Number of outputs of the checkpoint's head (from metadata, else its weight's shape)."""
    if isinstance(ckpt.get("num_classes"), int):
        return ckpt["num_classes"]
    weight = _normalise_keys(ckpt["model"]).get(HEAD[check_arch(arch)] + ".weight")
    return None if weight is None else int(weight.shape[0])


def load_weights(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Any], *, head: str = "match"
) -> dict[str, Any]:
    """Load a checkpoint (file or in-memory state_dict/checkpoint dict) into ``model``.

    ``head="match"``: every tensor must match the model's names and shapes; a head
    for another number of classes raises :class:`ValueError` naming both numbers.
    ``head="reinit"``: load every backbone tensor (all must be present, same shapes)
    and keep the model's own, fresh classifier head.
    Missing BatchNorm ``num_batches_tracked`` counters (old torchvision files) keep
    the model's value. Returns ``{"loaded": n_tensors, "skipped": [source keys not loaded]}``.
    """
    if head not in ("match", "reinit"):
        raise ValueError(f"head must be 'match' or 'reinit', got {head!r}")
    if isinstance(source, (str, os.PathLike)):
        return apply_checkpoint(model, read_checkpoint(source), str(source), head)
    return apply_checkpoint(model, _as_checkpoint(source, "the given state_dict"), "the given state_dict", head)


def apply_checkpoint(model: nn.Module, ckpt: Mapping[str, Any], where: str, head: str) -> dict[str, Any]:
    """Load the checked checkpoint ``ckpt`` (read from ``where``) into ``model``; see :func:`load_weights`."""
    inner = unwrap(model)
    arch = model_arch(inner)
    if arch is not None and isinstance(ckpt.get("arch"), str) and ckpt["arch"] != arch:
        raise ValueError(f"{where} holds a {ckpt['arch']!r} model, not a {arch!r} model")

    source_state = _normalise_keys(ckpt["model"])
    target = inner.state_dict()
    head_prefix = _head_name(inner) + "."
    is_head = lambda k: k.startswith(head_prefix)  # noqa: E731

    head_weight = head_prefix + "weight"
    if head == "match" and head_weight in source_state and head_weight in target:
        theirs, ours = source_state[head_weight].shape[0], target[head_weight].shape[0]
        if theirs != ours:
            raise ValueError(
                f"{where} has a head for {theirs} classes but the model has {ours} classes; "
                f"use head='reinit' to transfer the backbone with a fresh head"
            )

    def optional(key: str) -> bool:
        return key.endswith("num_batches_tracked") or (head == "reinit" and is_head(key))

    missing = [k for k in target if k not in source_state and not optional(k)]
    unexpected = [k for k in source_state if k not in target and not (head == "reinit" and is_head(k))]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensor(s), e.g. {missing[:4]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:4]}")
        what = f"a {arch!r} model" if arch else "this model"
        raise ValueError(f"{where} does not fit {what}: " + "; ".join(parts))

    merged = dict(target)
    loaded, skipped = 0, []
    for key, value in source_state.items():
        if head == "reinit" and is_head(key):
            skipped.append(key)
            continue
        if value.shape != target[key].shape:
            raise ValueError(
                f"{where}: tensor {key!r} has shape {tuple(value.shape)}, the model expects {tuple(target[key].shape)}"
            )
        merged[key] = value
        loaded += 1
    inner.load_state_dict(merged, strict=True)
    return {"loaded": loaded, "skipped": skipped}


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    arch: str,
    classes: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"model": state_dict, "arch", "num_classes", "classes", **extra}`` atomically.

    ``extra`` (e.g. epoch, metrics, config) is stored as plain JSON-like values so the
    file loads with ``torch.load(weights_only=True)``.
    """
    arch = resolve_arch(model, arch)
    classes = [str(c) for c in classes]
    inner = unwrap(model)
    out_features = getattr(inner, HEAD[arch]).out_features
    if len(classes) != out_features:
        raise ValueError(f"{len(classes)} class names given but the model's head has {out_features} outputs")
    extra = dict(extra or {})
    clash = [k for k in extra if k in _RESERVED_KEYS]
    if clash:
        raise ValueError(f"extra may not set the reserved key(s) {clash}")
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in inner.state_dict().items())
    ckpt = {
        "format": _FORMAT,
        "model": state,
        "arch": arch,
        "num_classes": len(classes),
        "classes": classes,
        **{str(k): to_jsonable(v) for k, v in extra.items()},
    }
    atomic_torch_save(ckpt, path)
    return Path(path)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_model`: returns ``(model in eval mode, metadata)``."""
    ckpt = read_checkpoint(path)
    arch = ckpt.get("arch")
    if arch not in ARCHS or not isinstance(ckpt.get("num_classes"), int):
        raise ValueError(f"{path} has no kdmed metadata ('arch', 'num_classes'); build the model and use load_weights")
    model = new_model(arch, ckpt["num_classes"])
    apply_checkpoint(model, ckpt, str(path), "match")
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model.to(device).eval(), meta
