"""Golden values of kdmed.metrics: a refactor must not change a single bit.

Every public metric runs on fixed seeded inputs (tied scores, unknown labels, an
undefined class, patient groups); each result is reduced to a canonical text --
dict keys in their order, value types, floats as ``float.hex`` -- and compared
with the sha256 computed with the code before ``kdmed/metrics.py`` became a package.

Recompute (only for an intended change) with ``python tests/test_metrics_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

import numpy as np
import pytest

from kdmed import metrics as M

#: case name -> sha256 of the canonical text of its value (see :func:`cases`)
GOLDEN = {
    "per_class_auc": "2fa76fdb637e737d963f65b70213926de246f81d9e378c1ed7fc748d42c97059",
    "per_class_auprc": "d61ae0f2eb245a4598b976c92f78b475c0bb073810e21ecb94833cded7d9a47b",
    "macro_auc": "c3451e04368ed1e799b8479a810ecb27f6dcc15940937ee108b644b9fd4a3989",
    "macro_auprc": "330b240472a124e3c515426dd974209cb8e9e019e04254eda5a29fa260ad2af7",
    "macro_auc_1d": "248a7cdc852b33aa7b68e3d67237e287744b90009ebaa631eaeeb17852d77d6c",
    "undefined_class": "f4e3843f7720928e283dd7b8d27b36583c78420a24f588936955119f65b2a906",
    "accuracy": "73dd7f9550b61f081569e3c1d36c7c5ab4dd26c8ab99e8ea1a8c5877f9c1b784",
    "quadratic_kappa": "aa8bb9ecb054e7578a00b491d6315238ec7c21984fa92a5c070e7ae3cb21eab0",
    "quadratic_kappa_labels": "f137ab7faec31dcc53ecc0fa6e70e714a8652a44db5ce55dd886452f319e0764",
    "bootstrap_ci_macro_auc": "e942cb3d2fc2c07ad2cfa94abc8f4b4126878a9859f7bbdca86c598fc16fbea4",
    "bootstrap_ci_cluster": "685859d3b04d7155dfb972be4a592a3c24a4cc4668ddc0e78c6094ab2a5c7b9a",
    "bootstrap_ci_per_class_auprc": "e13c0f78ae2cca52b9a4055739ced3f9504d136a131ad348053308e8aa971766",
    "bootstrap_ci_undefined": "c61058aff6e2f1d3eec779c4c24a8547914fc7ccd298285d22415e991d4dd55b",
    "bootstrap_ci_accuracy": "d569bb09cb54610c3dd84ea9656c2c8569dbbaa56dd1083d1992f163a872ea82",
    "bootstrap_ci_kappa": "fd237213295d32ac8c58776c27082909c5269f3bbbef026b8c5d05db7d178ca2",
    "bootstrap_ci_looped": "2f1069674eeefaa7ba3047e6b9c9763de60e179b14fc3aa91acab61dc86a1bf0",
    "paired_bootstrap": "17373e2d25ad26eac3e34d18afd447e86566ec2856018257c74f0b8b727d6b58",
    "paired_bootstrap_cluster_auprc": "1ed37c1d395f5f95e9a5f95941dfb7899ad2ca41e09b32afd9b4758cc4e32950",
    "mean_ci": "64d0f833a7b6f34b601a9c68a86d0b9d1084f3c631dbc0a633c54ca97b167e0a",
    "evaluate_multilabel": "9b22fc3ee7d14806203dd33df66f9bbe989222731c1ca696fd8bfe96e863bb1e",
    "evaluate_multilabel_point": "60347544463b6be6ee6fb7ffff22c76dd18dae07be420e09fd80802d01157d2a",
    "evaluate_binary": "ac158a7bbb549113c5cba27791eef8caf3f6023d7da31bb5aa5795fc4704a58b",
    "evaluate_multiclass_logits": "c35e05cc8d45af79eb468794beae067b3018d1bdcf0a8087e1b98d2c3b88d563",
    "evaluate_multiclass_probs_no_referable": "b48b008387685412d8a7145668b28b55ecc37e8199fa6387e7cd850f9f549c7c",
    "evaluate_multiclass_3_referable": "cd73aeb90eadd1ddd058711341dbb52bef317e63ef68c4be03188d3ef586babf",
}


def canonical(x: Any) -> Any:
    """A JSON-able image of ``x`` that keeps dict order, types and every bit of every float."""
    if isinstance(x, dict):
        return [["dict"]] + [[str(k), canonical(v)] for k, v in x.items()]
    if isinstance(x, np.ndarray):
        return ["ndarray", str(x.dtype), list(x.shape), [canonical(v) for v in x.ravel().tolist()]]
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, [canonical(v) for v in x]]
    if isinstance(x, (bool, np.bool_, str)):
        return [type(x).__name__, x if isinstance(x, str) else bool(x)]
    if isinstance(x, (int, np.integer)):
        return [type(x).__name__, int(x)]
    if isinstance(x, (float, np.floating)):
        return [type(x).__name__, float(x).hex()]
    raise TypeError(f"no canonical form for {type(x).__name__}")


def digest(x: Any) -> str:
    return hashlib.sha256(json.dumps(canonical(x)).encode()).hexdigest()


def multilabel(seed: int = 11, n: int = 240, c: int = 4):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(float)
    s = np.round(rng.normal(size=(n, c)) + y, 1)
    y[rng.random((n, c)) < 0.15] = np.nan
    patients = rng.integers(0, 70, size=n)
    return y, s, patients


def with_undefined_class():
    y, s, _ = multilabel(seed=5, n=60, c=3)
    y[:, 1] = np.where(np.isnan(y[:, 1]), np.nan, 0.0)
    return y, s


def grades(seed: int = 21, n: int = 200, k: int = 5):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, size=n)
    pred = np.clip(true + rng.integers(-1, 2, size=n) * (rng.random(n) < 0.4), 0, k - 1)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[true]
    onehot = np.eye(k)[true]
    onehot[[3, 17]] = np.nan
    patients = rng.integers(0, 60, size=n)
    return true, pred, logits, onehot, patients


def mean_score(y_true, y_score):
    """A metric the bootstrap does not know (runs the looped path)."""
    return float(np.mean(y_score[~np.isnan(y_true)]))


def cases() -> dict[str, Any]:
    """name -> a zero-argument callable that computes the value to pin."""
    y, s, pid = multilabel()
    s2 = s + np.round(np.random.default_rng(12).normal(scale=0.8, size=s.shape), 1)
    yu, su = with_undefined_class()
    true, pred, logits, onehot, gpid = grades()
    yb, sb = y[:, 0], s[:, 0]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    first3 = onehot[:, :3].sum(axis=1) != 0  # grades 0-2 and the unknown rows
    return {
        "per_class_auc": lambda: M.per_class_auc(y, s, classes=list("abcd")),
        "per_class_auprc": lambda: M.per_class_auprc(y, s),
        "macro_auc": lambda: M.macro_auc(y, s),
        "macro_auprc": lambda: M.macro_auprc(y, s),
        "macro_auc_1d": lambda: M.macro_auc(yb, sb),
        "undefined_class": lambda: [M.per_class_auc(yu, su), M.per_class_auprc(yu, su),
                                    M.macro_auc(yu, su), M.macro_auprc(yu, su)],
        "accuracy": lambda: M.accuracy(true, pred),
        "quadratic_kappa": lambda: M.quadratic_kappa(true, pred),
        "quadratic_kappa_labels": lambda: M.quadratic_kappa(true[:40] % 3, pred[:40] % 3, labels=range(5)),
        "bootstrap_ci_macro_auc": lambda: M.bootstrap_ci(y, s, n_boot=300, seed=1),
        "bootstrap_ci_cluster": lambda: M.bootstrap_ci(y, s, n_boot=250, groups=pid, seed=2),
        "bootstrap_ci_per_class_auprc": lambda: M.bootstrap_ci(y, s, metric=M.per_class_auprc, n_boot=200,
                                                               ci=0.9),
        "bootstrap_ci_undefined": lambda: M.bootstrap_ci(yu, su, metric=M.per_class_auc, n_boot=100, seed=3),
        "bootstrap_ci_accuracy": lambda: M.bootstrap_ci(true, pred, metric=M.accuracy, n_boot=200, groups=gpid),
        "bootstrap_ci_kappa": lambda: M.bootstrap_ci(true, pred, metric=M.quadratic_kappa, n_boot=200, seed=4),
        "bootstrap_ci_looped": lambda: M.bootstrap_ci(y, s, metric=mean_score, n_boot=40, seed=5),
        "paired_bootstrap": lambda: M.paired_bootstrap(y, s, s2, n_boot=300, seed=6),
        "paired_bootstrap_cluster_auprc": lambda: M.paired_bootstrap(y, s, s2, metric=M.macro_auprc, n_boot=200,
                                                                     groups=pid, ci=0.8),
        "mean_ci": lambda: [M.mean_ci([0.81, 0.79, 0.84, 0.8, 0.83]), M.mean_ci([0.7]),
                            M.mean_ci(np.arange(7.0) / 9, 0.9)],
        "evaluate_multilabel": lambda: M.evaluate(y, s, "multilabel", classes=list("abcd"), patient_ids=pid,
                                                  n_boot=200, seed=7),
        "evaluate_multilabel_point": lambda: M.evaluate(y, s, "multilabel"),
        "evaluate_binary": lambda: M.evaluate(yb, sb, "binary", n_boot=150, seed=8),
        "evaluate_multiclass_logits": lambda: M.evaluate(onehot, logits, "multiclass", patient_ids=gpid,
                                                         n_boot=200, seed=9),
        "evaluate_multiclass_probs_no_referable": lambda: M.evaluate(onehot, probs, "multiclass",
                                                                     referable=False, n_boot=100, ci=0.9),
        "evaluate_multiclass_3_referable": lambda: M.evaluate(onehot[:, :3][first3], logits[:, :3][first3],
                                                              "multiclass", referable=True),
    }


def compute(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return digest(cases()[name]())


@pytest.mark.parametrize("name", list(cases()))
def test_metric_values_are_bitwise_unchanged(name):
    assert compute(name) == GOLDEN[name]


def test_every_case_has_a_golden_value():
    assert sorted(GOLDEN) == sorted(cases())


if __name__ == "__main__":  # print the current values, to paste above after an intended change
    print("GOLDEN = {")
    for key in cases():
        print(f'    "{key}": "{compute(key)}",')
    print("}")
