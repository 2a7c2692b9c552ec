"""Patient-level splits and the paper's small target subsets.

No patient ever appears on two sides of a split: every function here assigns
whole patients.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def split_by_patient(patient_ids: Sequence, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Partition row indices into ``len(fractions)`` groups of whole patients.

    ``fractions`` must sum to 1; group ``k`` receives about ``fractions[k]`` of the
    patients (shuffled with ``seed``). Returns sorted row-index arrays.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or len(fractions) == 0 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions.tolist()}")
    ids = np.asarray(patient_ids)
    uniq, inverse = np.unique(ids, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    bounds = np.round(np.cumsum(fractions) * len(uniq)).astype(int)
    group_of_patient = np.empty(len(uniq), dtype=np.int64)
    start = 0
    for k, stop in enumerate(bounds):
        group_of_patient[order[start:stop]] = k
        start = stop
    group_of_row = group_of_patient[inverse]
    return [np.flatnonzero(group_of_row == k) for k in range(len(fractions))]
