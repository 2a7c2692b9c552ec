"""Diabetic retinopathy label spaces: grades 0-4 as five classes or as one "referable DR" class.

Shared by every fundus dataset (EyePACS, APTOS, RetinaMNIST, the synthetic fundus), so
the classes and the referable threshold are defined once.
"""

from __future__ import annotations

import numpy as np

#: the label spaces a DR grade table can be read as (the ``task=`` option of the fundus datasets)
DR_TASKS = ("grade", "referable")
GRADE_CLASSES = [f"grade {g}" for g in range(5)]
REFERABLE_CLASSES = ["referable DR"]
#: referable diabetic retinopathy: moderate non-proliferative or worse
REFERABLE_FROM = 2


def grade_labels(grades: np.ndarray, task: str) -> tuple[np.ndarray, list[str], str]:
    """Integer grades ``[N]`` (0..4) as ``(labels, classes, kind)`` for ``task`` in :data:`DR_TASKS`.

    ``"grade"``: one-hot ``[N, 5]`` over "grade 0".."grade 4" (multiclass);
    ``"referable"``: ``[N, 1]``, 1 for grade >= :data:`REFERABLE_FROM` (binary).
    """
    if task == "grade":
        return np.eye(5, dtype=np.float32)[grades], GRADE_CLASSES, "multiclass"
    if task == "referable":
        return (grades >= REFERABLE_FROM).astype(np.float32)[:, None], REFERABLE_CLASSES, "binary"
    raise ValueError(f"task must be one of {DR_TASKS}, got {task!r}")
