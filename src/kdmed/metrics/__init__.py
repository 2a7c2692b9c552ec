"""Evaluation metrics with bootstrap confidence intervals.

One job per module; import everything from here (``from kdmed.metrics import ...``):

* :mod:`~kdmed.metrics.ranking`: per-class and macro ROC AUC and AUPRC of scores
  against 0/1/NaN labels (weighted, so bootstrap resamples run vectorised);
* :mod:`~kdmed.metrics.kappa`: accuracy and quadratic-weighted kappa of labels;
* :mod:`~kdmed.metrics.bootstrap`: :func:`bootstrap_ci`, :func:`paired_bootstrap`
  (plain or cluster bootstrap over patients) and :func:`mean_ci` (Student-t over seeds);
* :mod:`~kdmed.metrics.evaluation`: :func:`evaluate`, every test metric of one model in one dict.

Conventions: ``y_true`` is ``[N, C]`` (or ``[N]`` for one class) with 0/1 and ``NaN``
for unknown; ``y_score`` has the same shape and may be logits or probabilities. A
class whose known labels take a single value has an undefined AUC / AUPRC (``NaN``),
and macro averages skip it.
"""

from .bootstrap import bootstrap_ci, mean_ci, paired_bootstrap
from .evaluation import evaluate
from .kappa import accuracy, quadratic_kappa
from .ranking import macro_auc, macro_auprc, per_class_auc, per_class_auprc

__all__ = [
    "accuracy",
    "bootstrap_ci",
    "evaluate",
    "macro_auc",
    "macro_auprc",
    "mean_ci",
    "paired_bootstrap",
    "per_class_auc",
    "per_class_auprc",
    "quadratic_kappa",
]
