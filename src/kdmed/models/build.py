"""Make a model ready to train: :func:`build_model` picks the architecture and initialises it.

Three initialisations: torchvision's random one (seeded by the caller), the
torchvision ImageNet weights (densenet121 and resnet18, :data:`IMAGENET_ARCHS`),
or a checkpoint. Pre-trained ImageNet weights are never downloaded:
:func:`build_model` reads them from a local file and fails at once, naming the file
and its URL, when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models.densenet import DenseNet121_Weights
from torchvision.models.resnet import ResNet18_Weights

from .archs import check_arch, new_model
from .checkpoint import apply_checkpoint, checkpoint_num_classes, load_weights, read_checkpoint

_IMAGENET_WEIGHTS = {
    "densenet121": DenseNet121_Weights.IMAGENET1K_V1,
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
}

#: the architectures that have torchvision ImageNet weights (``init="imagenet"``)
IMAGENET_ARCHS: tuple[str, ...] = tuple(_IMAGENET_WEIGHTS)


def imagenet_weights_file(arch: str) -> tuple[Path, str]:
    """Where the ImageNet weights of ``arch`` are expected (torch hub cache) and their download URL."""
    check_arch(arch)
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
    check_arch(arch)
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
        model = new_model(arch, num_classes)
        load_weights(model, path, head="reinit")
        return model

    if init == "random":
        return new_model(arch, num_classes)

    path = Path(init)
    if not path.is_file():
        raise FileNotFoundError(
            f"init={str(init)!r} is neither 'random', 'imagenet' nor an existing checkpoint file"
        )
    model = new_model(arch, num_classes)
    ckpt = read_checkpoint(path)
    if head == "auto":
        head = "match" if checkpoint_num_classes(ckpt, arch) == num_classes else "reinit"
    apply_checkpoint(model, ckpt, str(path), head)
    return model
