"""What the paper claims (from its abstract, the only text available) and the choices we had to make.

The book puts our measurements beside these; it never presents them as ours.
Source: Akbarian, Seyyed-Kalantari, Khalvati, Dolatabadi, *Evaluating Knowledge
Transfer in Neural Network for Medical Images*, arXiv:2008.13574 (v1/v2, 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: the paper's small target subsets (its abstract: CheXpert n = 5k; ChestX-ray8 n = 5.6k, ~5 % of NIH)
PAPER_SUBSETS = {"chexpert": 5000, "chestxray8": 5606}

CITATION = (
    "Akbarian, Seyyed-Kalantari, Khalvati, Dolatabadi. Evaluating Knowledge Transfer in Neural Network "
    "for Medical Images. arXiv:2008.13574 (2020)."
)


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    #: the paper's figure, where it gives one (as printed in the abstract)
    paper_value: str
    #: which chapter measures it
    chapter: str


CLAIMS: tuple[Claim, ...] = (
    Claim("gain", "Teacher-student beats transfer learning on a small target sample",
          "+4 % AUC on a CheXpert sample of n = 5k; +9 % on a ChestX-ray8 sample of n = 5.6k "
          "(absolute points or relative: not stated)", "03_distillation"),
    Claim("cross_domain", "Teacher-student also wins when teacher and student domains differ",
          "qualitative", "04_cross_domain"),
    Claim("regularization", "The student overfits less (regularization) when taught",
          "qualitative (v1)", "05_regularization"),
    Claim("convergence", "The taught student converges differently (faster) during training",
          "qualitative (v1)", "05_regularization"),
)

#: reproduction choices the paper leaves open, with what the book does instead
CHOICES: tuple[tuple[str, str], ...] = (
    ("distillation loss", "Hinton soft targets (per-label Bernoulli KL for multi-label tasks) and attention "
                          "transfer as in the authors' related code, alone and together"),
    ("temperature T, weight alpha", "profile values (T = 4, alpha = 0.5); a T x alpha grid in the regularization "
                                    "chapter, its best cell picked on validation and reported on test"),
    ("student and teacher", "profile values: a small CNN on CPU, DenseNet-121 on GPU; the teacher is never "
                            "weaker than the student's architecture"),
    ("teacher", "trained by us on a large pool of the target's own domain (20-40 x the target subset, as in the "
                "paper's CheXpert and NIH settings); pool and target subsets never share a patient; two teachers "
                "per strength, so their randomness is in the intervals; weaker and stronger teachers map the regime"),
    ("transfer-learning initialisation", "two: a near one (another chest dataset or institution, as the "
                                         "authors' NIH network) and a far one (ImageNet weights where the "
                                         "profile has them, otherwise a network of a distant domain: fundus "
                                         "photographs); fine-tuned end to end, or with the early blocks frozen "
                                         "(the authors' baseline)"),
    ("label spaces", "outputs and labels matched by class name (CheXpert's Pleural Effusion = NIH's Effusion): "
                     "a network of another chest label space is scored and distils over the shared findings"),
    ("what 'beats transfer learning' means", "two framings, both shown: a student taught from scratch against a "
                                              "fine-tuned network (the abstract's wording), and the same init with "
                                              "and without a teacher (the authors' code)"),
    ("training length", "every run until its validation AUC stops improving (early stopping), under a cap it "
                        "should not reach"),
    ("subset sampling", "whole patients, stratified by rarest positive label, nested across sizes"),
    ("label policy", "CheXpert uncertain and blank labels as negative (U-Zeros), as the authors' group did"),
    ("gain unit", "AUC points, 100 x the difference of macro-AUCs (the paper's +4 % / +9 % may be points or "
                  "relative)"),
    ("statistics", "5 seeds at the headline size; a hierarchical bootstrap (seeds, then test patients) for every "
                   "gain; Holm's correction over the claims tested on a page"),
)


def claims_table() -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in CLAIMS])


def choices_table() -> pd.DataFrame:
    return pd.DataFrame(CHOICES, columns=["unknown in the paper", "what this book does"])
