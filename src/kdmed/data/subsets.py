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


BY = ("patient", "image")


def _strata(labels: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Stratum of each unit: its rarest positive class (by prevalence in ``labels``), or -1 if none."""
    positive = np.nan_to_num(labels, nan=0.0) > 0.5
    if positive.shape[1] == 0:
        return np.full(n_units, -1)
    # a unit (patient) is positive for a class if any of its images is
    unit_pos = np.zeros((n_units, positive.shape[1]), dtype=bool)
    np.logical_or.at(unit_pos, units, positive)
    prevalence = positive.mean(axis=0)
    # rank classes from rarest to most common; ties keep column order
    rarity = np.argsort(np.argsort(prevalence, kind="stable"), kind="stable")
    score = np.where(unit_pos, rarity[None, :], positive.shape[1])
    rarest = score.argmin(axis=1)
    return np.where(unit_pos.any(axis=1), rarest, -1)


def _unit_order(strata: np.ndarray, stratify: bool, rng: np.random.Generator) -> np.ndarray:
    """A seeded order of units whose every prefix is (close to) stratified.

    Within each stratum the units are shuffled; unit k of a stratum of size m gets
    the key (k + offset) / m with a random offset per stratum, and all units are
    sorted by key, so any prefix holds each stratum in proportion (to within one unit).
    """
    n = len(strata)
    if not stratify:
        return rng.permutation(n)
    key = np.empty(n)
    tie = rng.random(n)
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        members = members[rng.permutation(len(members))]
        key[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.lexsort((tie, key))


def subsample(ds, n: int, by: str = "patient", stratify: bool = True, seed: int = 0):
    """Draw exactly ``n`` images of ``ds`` as a subset view (``ds.take``), made of whole patients.

    * ``by="patient"``: patients are taken in a seeded order until ``n`` images are
      reached; only the last patient may be cut (its first images in table order are
      kept) so that the size is exact. The input is one split, so no patient can leak
      across splits whatever the cut.
    * ``by="image"``: single images, ignoring patients.
    * ``stratify=True``: units are stratified by their rarest positive label (a
      multiclass task: by class; units with no positive form their own stratum),
      so rare-class prevalence stays close to the full set's.

    The order is one seeded permutation, so with the same seed a smaller subset is
    contained in a larger one (nested learning curves). Rows come back in table order.
    """
    if len(ds) == 0:
        raise ValueError(f"subsample: dataset {getattr(ds, 'name', ds)!r} ({getattr(ds, 'split', '?')}) is empty")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"subsample: n must be an integer number of images, got {n!r}")
    if n <= 0:
        raise ValueError(f"subsample: n must be positive, got {n}")
    if n > len(ds):
        raise ValueError(f"subsample: cannot draw n={n} images from a dataset of {len(ds)} images")
    if by not in BY:
        raise ValueError(f"subsample: unknown by={by!r}; expected one of {BY}")
    rng = np.random.default_rng(seed)
    if by == "patient":
        _, units = np.unique(np.asarray(ds.patient_ids).astype(str), return_inverse=True)
    else:
        units = np.arange(len(ds))
    units = units.reshape(-1)
    n_units = int(units.max()) + 1
    order = _unit_order(_strata(np.asarray(ds.labels), units, n_units), stratify, rng)
    # images of each unit in table order, units in the drawn order
    rank_of_unit = np.empty(n_units, dtype=np.int64)
    rank_of_unit[order] = np.arange(n_units)
    rows = np.lexsort((np.arange(len(ds)), rank_of_unit[units]))[:n]
    return ds.take(np.sort(rows))
