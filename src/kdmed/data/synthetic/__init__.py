"""Synthetic chest X-rays and fundus photographs: the book's offline default data (this package exports them).

Neither the paper's images nor pretrained weights can be downloaded in every
environment, so the book runs end to end on two rendered datasets that keep the
properties the study depends on:

* :class:`SyntheticChest` draws its label vectors from the REAL CheXpert label
  table (frontal rows, U-Zeros), so prevalence and co-occurrence are CheXpert's,
  and renders each finding as its own visual sign of random strength over a
  per-patient anatomy. Three "institutions" play the paper's sources:
  ``"A"`` plays NIH ChestX-ray14 (the large source that pre-trains the
  transfer-learning initialisation), ``"B"`` plays MIMIC-CXR (the teacher's
  large source) and ``"C"`` plays CheXpert (the small target). They differ in
  label mix and in acquisition style (grey-level curve, noise, blur, framing,
  body size) but share the anatomy and the signs, so knowledge transfers.
* :class:`SyntheticFundus` renders colour fundus photographs with diabetic
  retinopathy lesions growing with the grade (EyePACS grade mix): the
  "other domain" teacher source of the cross-domain chapter.

Design rules, each tested:

* Deterministic per ``(seed, institution, split, index)``: image ``i`` is the same
  whether rendered alone, in a batch, in a subset or in a larger ``n``. Per-image
  metadata comes from fixed-size chunks of a seeded stream (prefix-stable), the
  pixels from a per-image stream. Rendering uses only correctly rounded float
  operations (no exp/sin/pow), so pixels do not depend on the CPU's SIMD paths.
* No global pixel statistic carries label information: each image's grey-level
  histogram is matched to its institution's target curve (with a label-free
  per-image exposure jitter), so mean, std and every percentile are set by
  acquisition, not by findings.
* Splits are disjoint patient sets drawn from different seed streams; patients
  have 1-3 images with the same anatomy.

The modules: :mod:`~kdmed.data.synthetic.base` (the shared dataset base: option checks,
seeded streams, batched rendering), :mod:`~kdmed.data.synthetic.draw` (drawing
primitives), :mod:`~kdmed.data.synthetic.chest` and
:mod:`~kdmed.data.synthetic.chest_render` (the chest dataset and its renderer),
:mod:`~kdmed.data.synthetic.fundus` and :mod:`~kdmed.data.synthetic.fundus_render`
(the fundus dataset and its renderer).
"""

from kdmed.data.synthetic.base import DEFAULT_SIZES, RENDER_VERSION, SyntheticDataset
from kdmed.data.synthetic.chest import (
    CHEXPERT_CLASSES,
    INSTITUTIONS,
    ChestInstitution,
    SyntheticChest,
    chexpert_frontal_labels,
)
from kdmed.data.synthetic.chest_render import FINDINGS, VISIBILITY, render_chest
from kdmed.data.synthetic.fundus import FUNDUS_CLASSES, FUNDUS_GRADE_MIX, SyntheticFundus
from kdmed.data.synthetic.fundus_render import render_fundus

__all__ = [
    "CHEXPERT_CLASSES",
    "DEFAULT_SIZES",
    "FINDINGS",
    "FUNDUS_CLASSES",
    "FUNDUS_GRADE_MIX",
    "INSTITUTIONS",
    "RENDER_VERSION",
    "VISIBILITY",
    "ChestInstitution",
    "SyntheticChest",
    "SyntheticDataset",
    "SyntheticFundus",
    "chexpert_frontal_labels",
    "render_chest",
    "render_fundus",
]
