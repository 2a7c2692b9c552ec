"""The tables the chapters show, computed from stored runs (:mod:`kdmed.store`); nothing trains here.

Every gain is in AUC points (100 × ΔAUC, :func:`kdmed.inference.points`) with a
hierarchical bootstrap CI (seeds, then patients). Evaluations of stored models on the
target's test set (a teacher's AUC there) come from :func:`kdmed.runner.evaluate_on`,
which reads them from the store.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kdmed import inference
from kdmed.experiments import Grid, domain_roles
from kdmed.metrics import evaluate, macro_auc, mean_ci
from kdmed.store import ResultStore
from kdmed.study import CONTRASTS, Study

#: epochs over which a training curve's last slope is measured (validation macro-AUC per epoch)
SLOPE_EPOCHS = 5
#: share of its best validation AUC at which a run counts as converged (epochs to 95 %)
CONVERGED_SHARE = 0.95


class AnalysisError(RuntimeError):
    """A stored result does not allow the comparison asked for."""


# ============================================================================ scores
def grouped_scores(store: ResultStore, grid: Grid, by: str = "arm", order: str = "seed"
                   ) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray]]:
    """Test-set scores of ``grid``'s runs, grouped by label ``by`` and sorted by ``order``, plus the test set.

    Every run must have been tested on the same images (same rows, labels, patients).
    The test set holds ``y_true``, ``patient_ids``, ``rows`` and, when the first run's
    result names them, its ``classes`` (the columns of ``y_true``).
    """
    groups: dict[str, list[tuple[Any, np.ndarray]]] = {}
    reference = None
    classes = None
    for cfg, lab in grid:
        s = store.load_scores(cfg)
        if reference is None:
            reference = s
            classes = store.load_result(cfg).get("classes")
        elif not np.array_equal(reference["rows"], s["rows"]):
            raise AnalysisError(f"run {cfg.name!r} was tested on other images than {grid.configs[0].name!r}")
        groups.setdefault(str(lab[by]), []).append((lab[order], s["y_score"]))
    if reference is None:
        raise AnalysisError("the grid holds no run")
    scores = {k: [v for _, v in sorted(items, key=lambda t: t[0])] for k, items in groups.items()}
    test = {"y_true": reference["y_true"], "patient_ids": reference["patient_ids"], "rows": reference["rows"]}
    if classes is not None and len(classes) == np.shape(reference["y_true"])[-1]:
        test["classes"] = list(map(str, classes))
    return scores, test


def teacher_scores(study: Study, store: ResultStore, seeds: Sequence[int], pool: int | None = None) -> list[np.ndarray]:
    """The teacher of each student seed scored on the target's test set (a stored evaluation)."""
    from kdmed.runner import evaluate_on

    return [evaluate_on(study.teacher_for(seed, pool), store, study.target_data())["y_score"] for seed in seeds]


def bootstrap(study: Study, scores: Mapping[str, Sequence[np.ndarray]], test: Mapping[str, np.ndarray],
              seed: int = 0) -> inference.AUCBootstrap:
    """:func:`kdmed.inference.auc_bootstrap` with the study's number of resamples; the replicates are
    cached in the study's results store (``.bootstrap/``), read-only when the store is frozen.

    The macro-AUC averages over the classes of the test split with enough positives and
    negatives (:func:`kdmed.inference.fixed_classes`), named by ``test["classes"]`` when
    the test set has them; :func:`excluded_classes_sentence` says which were left out."""
    from kdmed.replicates import BOOTSTRAP_DIR

    store = study.store()
    classes = test.get("classes")
    return inference.auc_bootstrap(test["y_true"], test["patient_ids"], scores, study.n_boot, seed,
                                   cache=store.root / BOOTSTRAP_DIR, writable=not store.frozen,
                                   classes=None if classes is None else list(map(str, classes)))


def excluded_classes_sentence(bs: inference.AUCBootstrap) -> str:
    """A sentence for a chapter naming the classes left out of every macro-AUC of ``bs`` (or saying none is).

    E.g. "2 classes have fewer than 5 positive or negative test images and are left out
    of every macro-AUC: Fracture (1 positive), Pleural Other (0 positives)."
    """
    excluded = list(bs.classes_excluded)
    m = inference.MIN_CLASS_COUNT
    if not excluded:
        return (f"All {len(bs.classes_used)} classes have at least {m} positive and {m} negative test images and "
                "enter every macro-AUC.")
    head = "1 class has" if len(excluded) == 1 else f"{len(excluded)} classes have"
    verb = "is" if len(excluded) == 1 else "are"
    return (f"{head} fewer than {m} positive or negative test images and {verb} left out of every macro-AUC: "
            f"{', '.join(excluded)}.")


# ============================================================================ tables
def arm_table(bs: inference.AUCBootstrap, arms: Iterable[str]) -> pd.DataFrame:
    """Mean test macro-AUC of each arm over seeds, with its hierarchical 95 % CI; indexed by arm."""
    rows = []
    for arm in arms:
        c = inference.level_ci(bs, arm)
        rows.append({"arm": arm, "macro-AUC": c["estimate"], "low": c["low"], "high": c["high"],
                     "seeds": len(bs.point[arm])})
    return pd.DataFrame(rows).set_index("arm")


def contrast_table(bs: inference.AUCBootstrap, contrasts: Mapping[str, tuple[str, str, str, str]] = CONTRASTS
                   ) -> pd.DataFrame:
    """Each contrast's gain in AUC points (mean over seeds) with its CI and p-value; indexed by contrast."""
    rows = []
    for label, (framing, init, a, b) in contrasts.items():
        if a not in bs.point or b not in bs.point:
            continue
        c = inference.contrast(bs, a, b)
        rows.append({"comparison": label, "framing": framing, "init": init, "gain (AUC points)": c["estimate"],
                     "low": c["low"], "high": c["high"], "p": c["p_value"], "seeds": c["seeds"]})
    return pd.DataFrame(rows).set_index("comparison")


def with_holm(table: pd.DataFrame, real_data: bool, p: str = "p", estimate: str = "gain (AUC points)") -> pd.DataFrame:
    """``table`` with Holm-adjusted p-values over its rows and the verdict of each row."""
    out = table.copy()
    out["p (Holm)"] = inference.holm(out[p].to_numpy())
    out["verdict"] = [inference.verdict(e, q, real_data) for e, q in zip(out[estimate], out["p (Holm)"])]
    return out


def training_summary(store: ResultStore, grid: Grid) -> pd.DataFrame:
    """Per run: epochs run, cap, best epoch, stopped early, the last epochs' slope of validation AUC.

    The slope (AUC per epoch, least squares over the last :data:`SLOPE_EPOCHS` epochs) says
    whether the curve was still rising when the run stopped.
    """
    rows = []
    for cfg, lab in grid:
        res = store.load_result(cfg)
        h = pd.DataFrame(res["history"])
        tail = h["val_macro_auc"].to_numpy()[-SLOPE_EPOCHS:]
        slope = float(np.polyfit(np.arange(len(tail)), tail, 1)[0]) if len(tail) >= 2 else np.nan
        best = res["best_val_macro_auc"]
        reached = np.flatnonzero(h["val_macro_auc"].to_numpy() >= CONVERGED_SHARE * best)
        best_row = h[h["epoch"] == res["best_epoch"]].iloc[0]
        rows.append({**lab, "name": cfg.name, "epochs run": res["epochs_run"], "cap": cfg.train.epochs,
                     "at cap": res["epochs_run"] >= cfg.train.epochs and not res["stopped_early"],
                     "best epoch": res["best_epoch"], "stopped early": res["stopped_early"],
                     "epochs to 95 % of best": int(h["epoch"].iloc[reached[0]]) if reached.size else np.nan,
                     "last slope (AUC/epoch)": slope, "best val AUC": best,
                     "gap at best (AUC points)": inference.points(best_row.get("train_eval_macro_auc", np.nan)
                                                                   - best_row["val_macro_auc"]),
                     "loss gap at best": float(best_row["val_loss"] - best_row.get("train_eval_loss", np.nan)),
                     "test AUC": res["metrics"]["macro_auc"], "train seconds": res["timings"]["train_seconds"]})
    return pd.DataFrame(rows)


def histories(store: ResultStore, grid: Grid) -> pd.DataFrame:
    """Per-epoch histories of ``grid``'s runs, long format, with their label columns."""
    return pd.concat([store.load_history(c).assign(**lab) for c, lab in grid], ignore_index=True)


def evaluate_with_ci(scores: Mapping[str, Any], n_boot: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """:func:`kdmed.metrics.evaluate` with patient-bootstrap CIs, plus a per-class table (class, auc, low, high)."""
    m = evaluate(scores["y_true"], scores["y_score"], scores["task"], classes=scores["classes"],
                 patient_ids=scores["patient_ids"], n_boot=n_boot)
    ci = m.get("per_class_auc_ci", {})
    rows = []
    for k, name in enumerate(scores["classes"]):
        low, high = ci.get(name, (np.nan, np.nan))
        rows.append({"class": name, "auc": m["per_class_auc"][name], "low": float(low), "high": float(high),
                     "positives": int(np.nansum(scores["y_true"][:, k] > 0.5))})
    return m, pd.DataFrame(rows)


# ============================================================================ the regime map
def regime(study: Study, store: ResultStore, sweep: Grid, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain over transfer against the teacher's advantage, per strength; and the crossover of each framing.

    Returns (points, fits): one row per teacher strength and framing with the teacher's
    advantage (its AUC on the target test set minus the baseline's) and the gain, in
    AUC points with CIs; and per framing the fitted slope and crossover (the advantage
    at which the taught student starts to beat transfer).
    """
    scores, test = {}, None
    for pool in study.teacher_pool_sizes:
        part = sweep.select(pool=pool)
        arm_scores, test = grouped_scores(store, part)
        for arm, values in arm_scores.items():
            scores[f"{arm}|{pool}"] = values
        scores[f"teacher|{pool}"] = teacher_scores(study, store, study.sweep_seeds, pool)
    bs = bootstrap(study, scores, test, seed)
    framings = {"kd − transfer (near)": ("kd", "transfer@near"), "kd − transfer (far)": ("kd", "transfer@far"),
                "transfer+kd − transfer (near)": ("transfer+kd@near", "transfer@near"),
                "transfer+kd − transfer (far)": ("transfer+kd@far", "transfer@far")}
    rows, fits = [], []
    for label, (a, b) in framings.items():
        triples = []
        for pool in study.teacher_pool_sizes:
            t, ka, kb = f"teacher|{pool}", f"{a}|{pool}", f"{b}|{pool}"
            adv, gain = inference.contrast(bs, t, kb), inference.contrast(bs, ka, kb)
            rows.append({"comparison": label, "teacher pool": pool, "pool / target": pool / study.target_n,
                         "teacher AUC": float(np.mean(bs.point[t])), "baseline AUC": float(np.mean(bs.point[kb])),
                         "advantage (AUC points)": adv["estimate"], "advantage low": adv["low"],
                         "advantage high": adv["high"], "gain (AUC points)": gain["estimate"],
                         "low": gain["low"], "high": gain["high"], "p": gain["p_value"]})
            triples.append((t, ka, kb))
        fit = inference.regime_fit(bs, triples)
        fits.append({"comparison": label, **{k: v for k, v in fit.items() if k not in ("advantages", "gains")}})
    return pd.DataFrame(rows), pd.DataFrame(fits).set_index("comparison")


# ============================================================================ other chapters
def cross_domain_table(study: Study, store: ResultStore, grid: Grid, seed: int = 0) -> pd.DataFrame:
    """Per teacher domain, separately: each way of using it (kd, at) against fine-tuning from it."""
    scores, test = grouped_scores(store, keyed(grid), by="key")
    bs = bootstrap(study, scores, test, seed)
    rows = []
    for role, label in domain_roles(study).items():
        for method in ("kd", "at"):
            a, b = f"{role}:{method}", f"{role}:transfer"
            if a not in bs.point:
                continue
            c = inference.contrast(bs, a, b)
            rows.append({"domain": label, "comparison": f"{method} − transfer (both from this domain)",
                         "gain (AUC points)": c["estimate"], "low": c["low"], "high": c["high"], "p": c["p_value"],
                         "taught AUC": float(np.mean(bs.point[a])), "transfer AUC": float(np.mean(bs.point[b])),
                         "seeds": c["seeds"]})
    return pd.DataFrame(rows)


def keyed(grid: Grid) -> Grid:
    """``grid`` with a ``key`` label ``"<role>:<method>"`` (for :func:`grouped_scores`)."""
    return Grid(grid.configs, [{**lab, "key": f"{lab['role']}:{lab['method']}"} for lab in grid.labels])


def select_temperature_alpha(store: ResultStore, grid: Grid) -> tuple[pd.DataFrame, dict[str, float]]:
    """The T × alpha grid: validation AUC (mean over the grid seeds) picks the cell; its test AUC is reported."""
    rows = []
    for cfg, lab in grid:
        res = store.load_result(cfg)
        rows.append({**lab, "val AUC": res["best_val_macro_auc"], "test AUC": res["metrics"]["macro_auc"]})
    table = pd.DataFrame(rows).groupby(["temperature", "alpha"], as_index=False)[["val AUC", "test AUC"]].mean()
    best = table.loc[table["val AUC"].idxmax()]
    return table, {"temperature": float(best["temperature"]), "alpha": float(best["alpha"]),
                   "val AUC": float(best["val AUC"]), "test AUC": float(best["test AUC"]),
                   "test AUC of the test-best cell": float(table["test AUC"].max())}


@functools.lru_cache(maxsize=16)
def _whole_split(dataset: str, root: Any, image_size: int, options: Any, split: str) -> Any:
    # one table per split, however many subsets of it a page inspects (take/subsample return new views)
    from kdmed.config import DataSpec
    from kdmed.runner import open_split

    return open_split(DataSpec(dataset, root=root, image_size=image_size, options=options), split)


def split_view(spec, split: str) -> Any:
    """The dataset rows :func:`kdmed.runner.load_split` trains and scores on, without decoding
    or rendering a single image: for tables of patients, labels and prevalence.

    The same selection as ``load_split`` (the part, then the seeded stratified
    subsample); a test checks that both give the same rows. It lives here, not in the
    runner, so that the runner's code fingerprint (and so every published result)
    stays as it is.
    """
    from kdmed.config import TEST_SEED, VAL_SEED
    from kdmed.data import subsample
    from kdmed.runner import training_part

    n, seed = {"train": (spec.train_n, spec.subset_seed), "val": (spec.val_n, VAL_SEED),
               "test": (spec.test_n, TEST_SEED)}[split]
    ds = _whole_split(spec.dataset, spec.root, spec.image_size, spec.options, split)
    if split == "train" and spec.part is not None:
        ds = ds.take(training_part(ds.patient_ids, spec.part))
    if n is not None:
        if n > len(ds):
            raise ValueError(f"{spec.dataset}/{split}: asked for {n} images but the split has only {len(ds)}")
        ds = subsample(ds, n, by="patient", stratify=True, seed=seed)
    return ds


def patient_overlap(study: Study, rule: str = "disjoint") -> pd.DataFrame:
    """Patients each target subset shares with its teacher's pool, for every seed and size.

    Under the study's rule (``disjoint``) this must be 0 for every row:
    :class:`AnalysisError` is raised otherwise. ``overlapping`` measures the other rule.
    """
    rows = []
    for n in study.target_sizes:
        for seed in sorted(set(study.seeds) | set(study.curve_seeds)):
            target = set(map(str, split_view(study.target_data(n, seed), "train").patient_ids))
            teacher = study.teacher_for(seed) if rule == "disjoint" else \
                study.teacher(study.teacher_pool_n, study.teacher_seeds[0], rule=rule)
            pool = set(map(str, split_view(teacher.data, "train").patient_ids))
            shared = len(target & pool)
            rows.append({"target n": n, "seed": seed, "teacher": teacher.name, "target patients": len(target),
                         "pool patients": len(pool), "shared patients": shared,
                         "share of the target": shared / len(target)})
    table = pd.DataFrame(rows)
    if rule == "disjoint" and table["shared patients"].any():
        bad = table[table["shared patients"] > 0]
        raise AnalysisError(f"target subsets share patients with their teacher's pool:\n{bad.to_string()}")
    return table


def compute_line(store: ResultStore, configs: Sequence) -> str:
    """What the stored runs of ``configs`` were computed with, e.g. ``reproducible (AVX2, 1 thread, cpu): 12 runs``."""
    summary = store.compute_summary(list(configs))
    return "; ".join(f"{r['computed with']}: {r['runs']} runs" for r in summary.to_dict("records"))


def split_leaks(spec) -> int:
    """Patients of ``spec``'s dataset on two sides of its train/val/test split; raises when it is not 0."""
    from kdmed.runner import open_split

    ids = {s: set(map(str, open_split(spec, s).patient_ids)) for s in ("train", "val", "test")}
    shared = len(ids["train"] & ids["val"]) + len(ids["train"] & ids["test"]) + len(ids["val"] & ids["test"])
    if shared:
        raise AnalysisError(f"{spec.dataset} {spec.option_dict}: {shared} patients are on two sides of its split")
    return shared


def capped_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """The runs of a :func:`training_summary` that stopped at their epoch cap (there should be none)."""
    return summary[summary["at cap"]]


def mean_over_seeds(values: Sequence[float]) -> dict[str, float]:
    """Mean with a t-interval over seeds (for quantities without scores, e.g. epochs)."""
    return mean_ci(np.asarray(values, dtype=float))


__all__ = ["AnalysisError", "arm_table", "bootstrap", "capped_runs", "compute_line", "contrast_table",
           "cross_domain_table", "evaluate_with_ci", "excluded_classes_sentence", "grouped_scores", "histories",
           "keyed", "macro_auc", "mean_over_seeds", "patient_overlap", "regime", "select_temperature_alpha",
           "split_leaks", "split_view", "teacher_scores", "training_summary", "with_holm"]
