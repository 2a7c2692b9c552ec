"""Label spaces aligned by name: a model's outputs against a dataset's classes.

Every trained model records its class names (``result.json`` and the checkpoint).
Whatever compares a model's outputs with labels -- scoring a network on another
dataset's test set, the soft targets of a teacher trained on another label space --
matches them **by name**, never by position. CheXpert and NIH ChestX-ray14 spell
one finding two ways; :data:`ALIASES` maps every spelling to the name
torchxrayvision uses (``relabel_dataset``'s pathology names), so the two share
Atelectasis, Cardiomegaly, Consolidation, Edema, Effusion (CheXpert's "Pleural
Effusion"), Pneumonia and Pneumothorax.

A multiclass label space (DR grades) is aligned only when it is the same set of
classes: a softmax over part of the grades is not the model's prediction. No shared
class at all is refused with :class:`LabelSpaceError`.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

#: other spellings of one finding -> the name used to match them
ALIASES = {
    "Pleural Effusion": "Effusion",
    "Pleural_Thickening": "Pleural Thickening",
}


class LabelSpaceError(ValueError):
    """Two label spaces that cannot be compared: no shared class, or a multiclass mismatch."""


def canonical(name: str) -> str:
    """The name a class is matched by (``"Pleural Effusion"`` -> ``"Effusion"``)."""
    return ALIASES.get(name, name)


@dataclasses.dataclass(frozen=True)
class ClassAlignment:
    """Which output of a model (``source``) answers which class of a dataset (``target``).

    ``source_index[i]`` is the model's column for the dataset's class
    ``target_index[i]``; pairs are in the dataset's class order.
    """

    source: tuple[str, ...]
    target: tuple[str, ...]
    source_index: tuple[int, ...]
    target_index: tuple[int, ...]

    @property
    def identity(self) -> bool:
        """The model predicts exactly the dataset's classes, in its order."""
        return self.source == self.target

    @property
    def classes(self) -> list[str]:
        """The shared classes, named as the dataset names them."""
        return [self.target[j] for j in self.target_index]

    @property
    def unmatched(self) -> list[str]:
        """The dataset's classes the model does not predict."""
        used = set(self.target_index)
        return [c for j, c in enumerate(self.target) if j not in used]

    def describe(self) -> str:
        """One line: which classes were used, and how the names were matched."""
        if self.identity:
            return f"all {len(self.target)} classes, same names and order"
        pairs = [c if self.source[i] == c else f"{c} (= {self.source[i]})"
                 for i, c in zip(self.source_index, self.classes)]
        out = f"{len(pairs)} shared of {len(self.target)} classes: {', '.join(pairs)}"
        return out + (f"; not predicted: {', '.join(self.unmatched)}" if self.unmatched else "")


def align_classes(source: Sequence[str], target: Sequence[str], task: str, what: str,
                  source_task: str | None = None) -> ClassAlignment:
    """Match a model's classes ``source`` with a dataset's ``target`` by :func:`canonical` name.

    ``task`` is the dataset's ("multilabel", "binary" or "multiclass"), ``source_task`` the
    model's when known; ``what`` names the comparison in an error (e.g. "run 'kd[...]':
    distilling the teacher 'init[near,seed=0]'").
    """
    source, target = tuple(source), tuple(target)
    if source_task is not None and (source_task == "multiclass") != (task == "multiclass"):
        raise LabelSpaceError(
            f"{what}: the model is {source_task} ({list(source)}) and the data {task} ({list(target)}); a "
            "multiclass model's outputs are one softmax and cannot be compared with per-label outputs"
        )
    if source == target:
        idx = tuple(range(len(target)))
        return ClassAlignment(source, target, idx, idx)
    where = {}
    for i, name in enumerate(source):
        where.setdefault(canonical(name), i)
    pairs = [(where[canonical(c)], j) for j, c in enumerate(target) if canonical(c) in where]
    if task == "multiclass" and (len(pairs) != len(target) or len(source) != len(target)):
        raise LabelSpaceError(
            f"{what}: the model predicts {list(source)} but the data has the multiclass classes {list(target)}; "
            "a multiclass model is compared only with the same set of classes"
        )
    if not pairs:
        raise LabelSpaceError(
            f"{what}: the model predicts {list(source)} and the data has classes {list(target)}: no class is "
            f"shared (names are matched after the aliases {ALIASES}), so its outputs cannot be compared with "
            "these labels; use a network trained on a chest label space, or a method without soft targets (at)"
        )
    return ClassAlignment(source, target, tuple(i for i, _ in pairs), tuple(j for _, j in pairs))


def aligned_scores(scores, model_classes: Sequence[str], y_true, data_classes: Sequence[str], task: str,
                   what: str):
    """``(y_true, scores, alignment)`` restricted to the shared classes, both in the data's class order."""
    alignment = align_classes(model_classes, data_classes, task, what)
    return y_true[:, list(alignment.target_index)], scores[:, list(alignment.source_index)], alignment
