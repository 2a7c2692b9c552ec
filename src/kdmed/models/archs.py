"""The four architectures: construct one, name its head, and tell which one a module is.

All take a 3-channel image of any size >= 32 px and return ``num_classes`` logits:

* ``densenet121``: torchvision DenseNet-121, classifier ``Linear(1024, K)`` (the
  research group's backbone);
* ``resnet18``: torchvision ResNet-18, ``fc`` replaced;
* ``small_densenet``: a 4-block DenseNet with the same attribute layout as
  DenseNet-121 (growth 12, two layers per block), fast at 64 px on a CPU;
* ``small_cnn``: four conv-BN-ReLU-maxpool blocks (16/32/64/128 channels) plus a
  global average pool and a linear head; the smoke-profile student.

:func:`new_model` builds a freshly (randomly) initialised network and records its
architecture on it (``kdmed_arch``), which :func:`model_arch` reads back, through
DDP/DataParallel and ``torch.compile`` wrappers (:func:`unwrap`). Initialising
from ImageNet or a checkpoint is :func:`kdmed.models.build_model`'s job.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models import DenseNet, densenet121, resnet18

ARCHS = ("densenet121", "resnet18", "small_densenet", "small_cnn")

#: the classifier head's submodule name per architecture
HEAD = {"densenet121": "classifier", "small_densenet": "classifier", "resnet18": "fc", "small_cnn": "fc"}


def check_arch(arch: str) -> str:
    """``arch`` itself when it is one of :data:`ARCHS`; otherwise :class:`ValueError` listing them."""
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


def new_model(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised ``arch`` with a ``num_classes``-way head, tagged with its arch.

    The construction order (backbone first, then the replaced head) fixes how the
    seeded random stream is consumed: changing it changes every initial weight.
    """
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


def resolve_arch(model: nn.Module, arch: str | None) -> str:
    """``arch``, or the one recorded on ``model`` when None; raises when they disagree or neither is known."""
    recorded = model_arch(model)
    if arch is None:
        if recorded is None:
            raise ValueError("model was not built by kdmed.models.build_model; pass arch explicitly")
        return recorded
    check_arch(arch)
    if recorded is not None and recorded != arch:
        raise ValueError(f"arch={arch!r} but the model was built as {recorded!r}")
    return arch
