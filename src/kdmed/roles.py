"""Which dataset plays each role of the study in each setting (see the table in :mod:`kdmed.study`)."""

from __future__ import annotations

from typing import Any, Callable

SETTINGS = ("synthetic", "chexpert", "chestxray8", "medmnist")
#: the dataset folders each setting reads
ROOTS = {"synthetic": (), "chexpert": ("chexpert_root", "nih_root", "dr_root"),
         "chestxray8": ("nih_root", "chexpert_root", "dr_root"), "medmnist": ("medmnist_root",)}


def role_dataset(setting: str, role: str, dr_dataset: str) -> str:
    """The dataset that plays ``role`` in ``setting`` (for tables and prose), or "not run"."""
    names = {"synthetic": {"target": "synthetic chest, institution C", "near": "synthetic chest, institution A",
                           "other-chest": "synthetic chest, institution B", "far": "synthetic fundus photographs"},
             "chexpert": {"target": "CheXpert", "near": "NIH ChestX-ray14", "far": f"{dr_dataset} fundus"},
             "chestxray8": {"target": "NIH ChestX-ray8", "near": "CheXpert", "far": f"{dr_dataset} fundus"},
             "medmnist": {"target": "ChestMNIST (NIH ChestX-ray14)", "near": "PneumoniaMNIST",
                          "far": "RetinaMNIST (DeepDRiD fundus)"}}[setting]
    return names.get(role, "not run")


def role_domain(setting: str, role: str, require: Callable[[str], str], dr_dataset: str) -> dict[str, Any]:
    """Dataset, root and options of ``role`` ("target", "near", "far", "other-chest") in ``setting``.

    ``require(name)`` returns the dataset folder parameter ``name``, or raises when it is unset.
    """
    if setting == "synthetic":
        return {"target": dict(dataset="synthetic-chest", options={"institution": "C"}),
                "near": dict(dataset="synthetic-chest", options={"institution": "A"}),
                "other-chest": dict(dataset="synthetic-chest", options={"institution": "B"}),
                "far": dict(dataset="synthetic-fundus", options={"task": "grade"})}[role]
    if setting == "medmnist":
        root = require("medmnist_root")
        return {"target": dict(dataset="medmnist-chest", root=root),
                "near": dict(dataset="medmnist-pneumonia", root=root),
                "far": dict(dataset="medmnist-retina", root=root)}[role]
    chexpert = dict(dataset="chexpert", root=require("chexpert_root"))
    nih = dict(dataset="nih", root=require("nih_root"),
               options={"labels": "chestxray8" if setting == "chestxray8" else "chestxray14"})
    target, other = (chexpert, nih) if setting == "chexpert" else (nih, chexpert)
    if role == "far":
        return dict(dataset=dr_dataset, root=require("dr_root"), options={"task": "grade"})
    return {"target": target, "near": other}[role]
