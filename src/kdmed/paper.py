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
    Claim("chexpert_gain", "Teacher-student beats transfer learning on a CheXpert sample of n = 5k",
          "+4 % AUC (absolute points or relative: not stated)", "03_distillation"),
    Claim("chestxray8_gain", "Teacher-student beats transfer learning on a ChestX-ray8 sample of n = 5.6k",
          "+9 % AUC (absolute points or relative: not stated)", "03_distillation"),
    Claim("cross_domain", "Teacher-student also wins when teacher and student domains differ",
          "qualitative", "04_cross_domain"),
    Claim("regularization", "The student overfits less (regularization) when taught",
          "qualitative (v1)", "05_regularization"),
    Claim("convergence", "The taught student converges differently (faster) during training",
          "qualitative (v1)", "05_regularization"),
)

#: reproduction choices the paper leaves open, with what the book does instead
CHOICES: tuple[tuple[str, str], ...] = (
    ("distillation loss", "Hinton soft targets, per-label Bernoulli KL for multi-label tasks; attention transfer "
                          "as in the authors' related code; both terms together as a fifth method"),
    ("temperature T, weight alpha", "profile parameters (T = 4, alpha = 0.5 by default) and a small T x alpha grid "
                                    "in the regularization chapter"),
    ("student architecture", "profile parameter: a small CNN / small DenseNet on CPU, DenseNet-121 on GPU"),
    ("teacher", "trained by us on a large training pool of the target's own domain (the abstract's setting: a "
                "pre-trained teacher, a small target sample); teachers of other institutions and of the fundus "
                "domain in the cross-domain chapter (the authors' related code used a MIMIC-CXR teacher)"),
    ("transfer-learning initialisation", "a network trained on a third institution (NIH in the authors' code), "
                                         "fine-tuned end to end, optionally frozen through a named block"),
    ("subset sampling", "whole patients, stratified by rarest positive label, nested across sizes"),
    ("label policy", "CheXpert uncertain and blank labels as negative (U-Zeros), as the authors' group did"),
    ("gain unit", "we report both absolute AUC points and the relative change"),
    ("seeds", "several seeds per configuration; means with 95% t-intervals and paired bootstrap CIs"),
)


def claims_table() -> pd.DataFrame:
    return pd.DataFrame([c.__dict__ for c in CLAIMS])


def choices_table() -> pd.DataFrame:
    return pd.DataFrame(CHOICES, columns=["unknown in the paper", "what this book does"])
