"""Datasets: real loaders for the official on-disk formats and a synthetic offline default.

``open_dataset(name, root=None, split="train", image_size=224, **options)`` is the
one entry point; every dataset follows :class:`kdmed.data.base.ImageDataset`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from kdmed.data.base import ImageDataset

# name -> "module:class"; modules are imported on first use
DATASETS: dict[str, str] = {
    "chexpert": "kdmed.data.chexpert:CheXpert",
    "nih": "kdmed.data.nih:NIHChestXray",
    "eyepacs": "kdmed.data.retina:EyePACS",
    "aptos": "kdmed.data.retina:APTOS",
    "medmnist-chest": "kdmed.data.medmnist:ChestMNIST",
    "medmnist-retina": "kdmed.data.medmnist:RetinaMNIST",
    "synthetic-chest": "kdmed.data.synthetic:SyntheticChest",
    "synthetic-fundus": "kdmed.data.synthetic:SyntheticFundus",
}

SPLITS = ("train", "val", "test")


def dataset_class(name: str) -> type[ImageDataset]:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def open_dataset(name: str, root=None, split: str = "train", image_size: int = 224, **options: Any) -> ImageDataset:
    """Open dataset ``name`` (see :data:`DATASETS`) at ``root`` for ``split``.

    Unknown names, splits and options are refused with a message listing what is accepted.
    """
    cls = dataset_class(name)
    if split not in SPLITS:
        raise ValueError(f"{name}: unknown split {split!r}; expected one of {SPLITS}")
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{name}: unknown option(s) {unknown}; accepted options: {sorted(accepted)}")
    return cls(root=root, split=split, image_size=image_size, **options)


def subsample(ds: ImageDataset, n: int, by: str = "patient", stratify: bool = True, seed: int = 0) -> ImageDataset:
    from kdmed.data.subsets import subsample as _subsample

    return _subsample(ds, n, by=by, stratify=stratify, seed=seed)


__all__ = ["DATASETS", "ImageDataset", "dataset_class", "open_dataset", "subsample"]
