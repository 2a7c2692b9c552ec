"""Datasets: the registry of dataset names and the one entry point, :func:`open_dataset`.

``open_dataset(name, root=None, split="train", image_size=224, **options)`` opens any
dataset: real loaders for the official on-disk formats (``chexpert``, ``nih``,
``eyepacs``, ``aptos``, ``medmnist-*``) and the synthetic offline default
(``synthetic-*``); every dataset follows :class:`kdmed.data.base.ImageDataset`.
Dataset modules are imported on first use.

The package's modules, one job each:

* :mod:`~kdmed.data.base`: the dataset contract; :mod:`~kdmed.data.cache`: the image cache;
* :mod:`~kdmed.data._io`: checks shared by the real loaders (and :data:`SPLITS`);
  :mod:`~kdmed.data.images`: the image decoder;
* :mod:`~kdmed.data.table`: the shared base of the file-table loaders
  :mod:`~kdmed.data.chexpert`, :mod:`~kdmed.data.nih` and :mod:`~kdmed.data.retina`;
  :mod:`~kdmed.data.grades`: the diabetic-retinopathy label spaces;
  :mod:`~kdmed.data.medmnist`: the MedMNIST ``.npz`` files;
* :mod:`~kdmed.data.synthetic`: the rendered datasets; :mod:`~kdmed.data.real_tables`:
  the label tables shipped with torchxrayvision;
* :mod:`~kdmed.data.subsets`: patient-level splits and subsets;
  :mod:`~kdmed.data.folder`: a plain list of image files (cache tests and benchmark).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from kdmed.data._io import SPLITS
from kdmed.data.base import ImageDataset

# name -> "module:class"; modules are imported on first use
DATASETS: dict[str, str] = {
    "chexpert": "kdmed.data.chexpert:CheXpert",
    "nih": "kdmed.data.nih:NIHChestXray",
    "eyepacs": "kdmed.data.retina:EyePACS",
    "aptos": "kdmed.data.retina:APTOS",
    "medmnist-chest": "kdmed.data.medmnist:ChestMNIST",
    "medmnist-retina": "kdmed.data.medmnist:RetinaMNIST",
    "medmnist-pneumonia": "kdmed.data.medmnist:PneumoniaMNIST",
    "synthetic-chest": "kdmed.data.synthetic.chest:SyntheticChest",
    "synthetic-fundus": "kdmed.data.synthetic.fundus:SyntheticFundus",
}


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
