"""Networks used as teachers and students, with feature taps, freezing and checkpoints.

Four architectures, all taking a 3-channel image of any size >= 32 px and
returning ``num_classes`` logits:

* ``densenet121``: torchvision DenseNet-121, classifier ``Linear(1024, K)`` (the
  research group's backbone);
* ``resnet18``: torchvision ResNet-18, ``fc`` replaced;
* ``small_densenet``: a 4-block DenseNet with the same attribute layout as
  DenseNet-121 (growth 12, two layers per block), fast at 64 px on a CPU;
* ``small_cnn``: four conv-BN-ReLU-maxpool blocks (16/32/64/128 channels) plus a
  global average pool and a linear head; the smoke-profile student.

At every tap ("denseblockN", "layerN", "blockN") the four architectures share the
same spatial stride (4, 8, 16, 32 relative to the input), so attention maps of a
teacher and a student of different architectures line up.

Pre-trained ImageNet weights are never downloaded: :func:`build_model` reads them
from a local file and fails at once, naming the file and its URL, when it is missing.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
import torch.nn as nn
from torchvision.models import DenseNet, densenet121, resnet18
from torchvision.models.densenet import DenseNet121_Weights
from torchvision.models.resnet import ResNet18_Weights

from .utils import atomic_torch_save, to_jsonable

ARCHS = ("densenet121", "resnet18", "small_densenet", "small_cnn")

#: the classifier head's submodule name per architecture
_HEAD = {"densenet121": "classifier", "small_densenet": "classifier", "resnet18": "fc", "small_cnn": "fc"}

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

_IMAGENET_WEIGHTS = {
    "densenet121": DenseNet121_Weights.IMAGENET1K_V1,
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
}

#: torchvision's DenseNet checkpoints use the pre-0.4 names "norm.1", "conv.2", ...
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)

#: keys :func:`save_model` writes itself; ``extra`` may not overwrite them
_RESERVED_KEYS = ("format", "model", "arch", "num_classes", "classes")
_FORMAT = "kdmed-model-v1"


def _check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    return arch


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU-maxpool blocks, global average pool, linear head.

    The first convolution has stride 2 so that block outputs sit at strides
    4/8/16/32, like the torchvision backbones' taps, and a batch of 32 at 64 px
    trains in milliseconds on a CPU.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"SmallCNN needs 4 widths, got {list(widths)}")
        in_ch = 3
        for i, width in enumerate(widths, start=1):
            stride = 2 if i == 1 else 1
            block = nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)),
                        ("norm", nn.BatchNorm2d(width)),
                        ("relu", nn.ReLU(inplace=True)),
                        ("pool", nn.MaxPool2d(2)),
                    ]
                )
            )
            self.add_module(f"block{i}", block)
            in_ch = width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, 3, H, W]``."""
        for i in range(1, 5):
            x = getattr(self, f"block{i}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel/DataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def model_arch(model: nn.Module) -> str | None:
    """The architecture name :func:`build_model` recorded on ``model`` (None for foreign modules)."""
    return getattr(unwrap(model), "kdmed_arch", None)


def _resolve_arch(model: nn.Module, arch: str | None) -> str:
    recorded = model_arch(model)
    if arch is None:
        if recorded is None:
            raise ValueError("model was not built by kdmed.models.build_model; pass arch explicitly")
        return recorded
    _check_arch(arch)
    if recorded is not None and recorded != arch:
        raise ValueError(f"arch={arch!r} but the model was built as {recorded!r}")
    return arch


def _new_model(arch: str, num_classes: int) -> nn.Module:
    if arch == "densenet121":
        model = densenet121(weights=None)
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    elif arch == "resnet18":
        model = resnet18(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif arch == "small_densenet":
        model = DenseNet(growth_rate=12, block_config=(2, 2, 2, 2), num_init_features=24, num_classes=num_classes)
    else:
        model = SmallCNN(num_classes)
    model.kdmed_arch = arch
    return model


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """Where the ImageNet weights of ``arch`` are expected (torch hub cache) and their download URL."""
    _check_arch(arch)
    if arch not in _IMAGENET_WEIGHTS:
        raise ValueError(
            f"ImageNet weights do not exist for {arch!r}; they exist only for {', '.join(_IMAGENET_WEIGHTS)}"
        )
    url = _IMAGENET_WEIGHTS[arch].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


def build_model(
    arch: str,
    num_classes: int,
    *,
    init: str | os.PathLike = "random",
    weights_path: str | os.PathLike | None = None,
    head: str = "auto",
) -> nn.Module:
    """Build ``arch`` with a ``num_classes``-way head and initialise it.

    ``init``:

    * ``"random"``: torchvision's default initialisation (seed torch first for reproducibility);
    * ``"imagenet"`` (densenet121/resnet18 only): backbone from the torchvision ImageNet
      file ``weights_path`` or, by default, ``<torch.hub.get_dir()>/checkpoints/<url basename>``;
      the head stays freshly initialised. Nothing is downloaded; a missing file raises
      :class:`FileNotFoundError` at once, naming the file and its URL;
    * a path to a checkpoint (see :func:`save_model`, or a bare state_dict): loaded with
      :func:`load_weights`. ``head="auto"`` keeps the checkpoint's head when it has
      ``num_classes`` outputs and otherwise re-initialises it; ``"match"``/``"reinit"`` force
      one behaviour (use ``"reinit"`` to transfer between label spaces of equal size).
    """
    _check_arch(arch)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if head not in ("auto", "match", "reinit"):
        raise ValueError(f"head must be 'auto', 'match' or 'reinit', got {head!r}")
    if weights_path is not None and init != "imagenet":
        raise ValueError(f"weights_path is only used with init='imagenet' (init={init!r})")

    if init == "imagenet":
        expected, url = imagenet_weights_file(arch)
        path = Path(weights_path) if weights_path is not None else expected
        if not path.is_file():
            raise FileNotFoundError(
                f"ImageNet weights for {arch} not found: expected the file {path}. kdmed never downloads; "
                f"on a machine with internet fetch {url} and copy it to {path} "
                f"(or pass weights_path=... / set TORCH_HOME)."
            )
        model = _new_model(arch, num_classes)
        load_weights(model, path, head="reinit")
        return model

    if init == "random":
        return _new_model(arch, num_classes)

    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(
            f"init={str(init)!r} is neither 'random', 'imagenet' nor an existing checkpoint file"
        )
    model = _new_model(arch, num_classes)
    ckpt = read_checkpoint(path)
    if head == "auto":
        head = "match" if checkpoint_num_classes(ckpt, arch) == num_classes else "reinit"
    _load_checkpoint(model, ckpt, str(path), head)
    return model


def default_taps(arch: str) -> list[str]:
    """The tap names of ``arch``: the outputs of its four stages, shallow to deep."""
    return list(_TAP_MODULES[_check_arch(arch)])


class FeatureTaps:
    """Run a model and collect the outputs of named stages through forward hooks.

    ``taps(x)`` returns ``(logits, {tap: feature map})``; feature maps keep their
    autograd graph (a student's attention loss back-propagates through them).
    The model itself is not modified; :meth:`close` (or leaving the ``with`` block)
    removes the hooks.
    """

    def __init__(self, model: nn.Module, arch: str | None = None, taps: Iterable[str] | None = None) -> None:
        arch = _resolve_arch(model, arch)
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
    arch = _resolve_arch(model, arch)
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
    arch = _resolve_arch(model, arch)
    return list(getattr(unwrap(model), _HEAD[arch]).parameters())


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------- checkpoints


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
        return _HEAD[arch]
    linears = [name for name, m in unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot find the classifier head: the model has no nn.Linear and no kdmed arch")
    return linears[-1]


def checkpoint_num_classes(ckpt: Mapping[str, Any], arch: str) -> int | None:
    """Number of outputs of the checkpoint's head (from metadata, else its weight's shape)."""
    if isinstance(ckpt.get("num_classes"), int):
        return ckpt["num_classes"]
    weight = _normalise_keys(ckpt["model"]).get(_HEAD[_check_arch(arch)] + ".weight")
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
        return _load_checkpoint(model, read_checkpoint(source), str(source), head)
    return _load_checkpoint(model, _as_checkpoint(source, "the given state_dict"), "the given state_dict", head)


def _load_checkpoint(model: nn.Module, ckpt: Mapping[str, Any], where: str, head: str) -> dict[str, Any]:
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
    arch = _resolve_arch(model, arch)
    classes = [str(c) for c in classes]
    inner = unwrap(model)
    out_features = getattr(inner, _HEAD[arch]).out_features
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
    model = _new_model(arch, ckpt["num_classes"])
    _load_checkpoint(model, ckpt, str(path), "match")
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model.to(device).eval(), meta
