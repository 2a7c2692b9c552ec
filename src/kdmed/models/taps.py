"""What training does with a built model's stages: feature taps, freezing, head parameters.

At every tap ("denseblockN", "layerN", "blockN") the four architectures share the
same spatial stride (4, 8, 16, 32 relative to the input), so attention maps of a
teacher and a student of different architectures line up. :class:`FeatureTaps`
collects those stage outputs through forward hooks; :func:`freeze_through` freezes
the stages up to one of them and :func:`set_train_mode` keeps the frozen
BatchNorms in eval mode.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn

from .archs import HEAD, check_arch, resolve_arch, unwrap

#: forward order of the freezable stages: (stage name, submodule prefixes it owns).
#: A tap's stage ends at that tap's output; the transition after a dense block
#: belongs to the next stage because it runs after the tap.
_STAGES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "densenet121": [
        ("stem", ("features.conv0", "features.norm0", "features.relu0", "features.pool0")),
        ("denseblock1", ("features.denseblock1",)),
        ("denseblock2", ("features.transition1", "features.denseblock2")),
        ("denseblock3", ("features.transition2", "features.denseblock3")),
        ("denseblock4", ("features.transition3", "features.denseblock4")),
    ],
    "resnet18": [
        ("stem", ("conv1", "bn1", "relu", "maxpool")),
        ("layer1", ("layer1",)),
        ("layer2", ("layer2",)),
        ("layer3", ("layer3",)),
        ("layer4", ("layer4",)),
    ],
    "small_cnn": [(f"block{i}", (f"block{i}",)) for i in range(1, 5)],
}
_STAGES["small_densenet"] = _STAGES["densenet121"]

#: tap name -> submodule path whose forward output is the tap
_TAP_MODULES = {
    "densenet121": {f"denseblock{i}": f"features.denseblock{i}" for i in range(1, 5)},
    "small_densenet": {f"denseblock{i}": f"features.denseblock{i}" for i in range(1, 5)},
    "resnet18": {f"layer{i}": f"layer{i}" for i in range(1, 5)},
    "small_cnn": {f"block{i}": f"block{i}" for i in range(1, 5)},
}


def default_taps(arch: str) -> list[str]:
    """The tap names of ``arch``: the outputs of its four stages, shallow to deep."""
    return list(_TAP_MODULES[check_arch(arch)])


class FeatureTaps:
    """Run a model and collect the outputs of named stages through forward hooks.

    ``taps(x)`` returns ``(logits, {tap: feature map})``; feature maps keep their
    autograd graph (a student's attention loss back-propagates through them).
    The model itself is not modified; :meth:`close` (or leaving the ``with`` block)
    removes the hooks.
    """

    def __init__(self, model: nn.Module, arch: str | None = None, taps: Iterable[str] | None = None) -> None:
        arch = resolve_arch(model, arch)
        taps = default_taps(arch) if taps is None else list(taps)
        valid = _TAP_MODULES[arch]
        unknown = [t for t in taps if t not in valid]
        if unknown:
            raise ValueError(f"unknown tap(s) {unknown} for {arch}; valid taps: {', '.join(valid)}")
        if not taps:
            raise ValueError("taps is empty; name at least one of " + ", ".join(valid))
        self.model = model
        self.arch = arch
        self.taps = taps
        self._features: dict[str, torch.Tensor] = {}
        inner = unwrap(model)
        modules = dict(inner.named_modules())
        self._handles = [modules[valid[t]].register_forward_hook(self._hook(t)) for t in taps]

    def _hook(self, tap: str):
        def store(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self._features[tap] = output

        return store

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the tapped feature maps for the batch ``x``."""
        if not self._handles:
            raise RuntimeError("FeatureTaps is closed")
        self._features = {}
        try:
            logits = self.model(x)
            return logits, {t: self._features[t] for t in self.taps}
        finally:
            # drop our references so feature maps are freed with the caller's copies
            self._features = {}

    def close(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def freeze_through(model: nn.Module, arch: str | None, block: str) -> list[str]:
    """Freeze the parameters from the stem up to and including ``block``; unfreeze the rest.

    ``block`` is ``"stem"`` or a tap name. Returns the frozen parameter names. The
    frozen submodules are recorded on the model so that :func:`set_train_mode`
    keeps their BatchNorm statistics fixed (eval mode). Call it before wrapping the
    model in DistributedDataParallel, which fixes the set of trained parameters.
    """
    arch = resolve_arch(model, arch)
    stages = _STAGES[arch]
    names = [name for name, _ in stages]
    if block not in names:
        raise ValueError(f"unknown block {block!r} for {arch}; valid blocks: {', '.join(names)}")
    prefixes: list[str] = []
    for name, owned in stages:
        prefixes.extend(owned)
        if name == block:
            break
    inner = unwrap(model)
    frozen = []
    for pname, param in inner.named_parameters():
        is_frozen = any(pname == p or pname.startswith(p + ".") for p in prefixes)
        param.requires_grad_(not is_frozen)
        if is_frozen:
            frozen.append(pname)
    inner.kdmed_frozen = tuple(prefixes)
    return frozen


def frozen_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The top-level submodules frozen by :func:`freeze_through` (empty when nothing is frozen)."""
    inner = unwrap(model)
    modules = dict(inner.named_modules())
    return [(p, modules[p]) for p in getattr(inner, "kdmed_frozen", ()) if p in modules]


def set_train_mode(model: nn.Module) -> None:
    """Put ``model`` in train mode, except the frozen parts, which stay in eval mode.

    Use this instead of ``model.train()``: a frozen BatchNorm in train mode would
    still update its running statistics.
    """
    model.train()
    for _, module in frozen_modules(model):
        module.eval()


def head_parameters(model: nn.Module, arch: str | None = None) -> list[nn.Parameter]:
    """The parameters of the classifier head (e.g. for a larger learning rate)."""
    arch = resolve_arch(model, arch)
    return list(getattr(unwrap(model), HEAD[arch]).parameters())


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
