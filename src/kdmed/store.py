"""The results store: one folder per run, what it holds, and whether it is still valid.

Layout (``ResultStore(root)``, e.g. ``results/<profile>/``)::

    <root>/<key>/config.json        written first: the config, its key, the code fingerprint
    <root>/<key>/last.pt            training checkpoint while the run is unfinished
    <root>/<key>/model.pt           best-epoch weights (not committed to git: large)
    <root>/<key>/scores.npz         the run's own test split: y_true, y_score (logits), patient_ids, rows
    <root>/<key>/evals/<e>.npz      the model scored on another split (e.g. a teacher on the target's test set)
    <root>/<key>/evals/<e>.json     what that evaluation is: data, split, classes, code fingerprint
    <root>/<key>/result.json        written last, atomically: the run is complete

``<key>`` is :func:`kdmed.config.run_key`: the configuration only. Whether a
stored run is still valid is decided by the **code fingerprint**
(:mod:`kdmed.fingerprint`) recorded with it: a run computed by other
numbers-producing code is *stale*. A stale run is never read: :meth:`load_result`
raises :class:`StaleResultError` naming the changed modules; the runner retrains
it (saying why) or, in a frozen store, refuses to.

Everything a chapter shows comes from these files (histories, metrics, test-set
scores, evaluations), so a store without any ``model.pt`` renders the book.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from kdmed import fingerprint
from kdmed.config import SCHEMA, TEST_SEED, VAL_SEED, DataSpec, RunConfig, run_key
from kdmed.utils import atomic_path, atomic_write_json, config_hash, to_jsonable

STATUSES = ("complete", "partial", "missing", "stale")
#: "1" makes :meth:`ResultStore.from_env` stores render-only (the book builder's ``--frozen``)
FROZEN_ENV = "KDMED_FROZEN"


class StaleResultError(RuntimeError):
    """A stored result does not belong to the configuration or the code it is read for."""


class FrozenStoreError(RuntimeError):
    """A frozen store (render-only build) was asked for a run or evaluation it does not hold."""


@dataclasses.dataclass(frozen=True)
class CodeState:
    """The fingerprint of the numbers-producing code and its per-module table."""

    fingerprint: str
    modules: tuple[tuple[str, str], ...]

    @classmethod
    def current(cls) -> "CodeState":
        """The code of this installation (:func:`kdmed.fingerprint.code_state`)."""
        fp, modules = fingerprint.code_state()
        return cls(fp, modules)

    @classmethod
    def of_package(cls, root: str | Path, package: str) -> "CodeState":
        """The code of another package folder (tests use a fixture package)."""
        table = fingerprint.module_hashes(root, package=package, excluded=())
        return cls(fingerprint.fingerprint_of(table), tuple(sorted(table.items())))

    def record(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "modules": dict(self.modules)}


def split_key(data: DataSpec, split: str) -> dict[str, Any]:
    """What decides the images of ``split`` of ``data`` (val/test ignore the training subset)."""
    d = {k: v for k, v in to_jsonable(data).items() if k != "root"}
    d["options"] = data.option_dict
    keep = {"train": ("train_n", "subset_seed", "part"), "val": ("val_n",), "test": ("test_n",)}[split]
    for name in ("train_n", "val_n", "test_n", "subset_seed", "part"):
        if name not in keep:
            d.pop(name)
    d["split_seed"] = {"train": data.subset_seed, "val": VAL_SEED, "test": TEST_SEED}[split]
    d["split"] = split
    return d


def evaluation_key(data: DataSpec, split: str) -> str:
    """File stem of an evaluation on ``split`` of ``data``."""
    return config_hash({"split": split_key(data, split), "schema": SCHEMA})


class ResultStore:
    """Results of runs on disk (see the module docstring).

    ``frozen``: a render-only store; the runner refuses to train or evaluate into
    it and lists what is missing. ``code``: the code the results must match
    (default: this installation's). ``trained``/``restored`` list the keys this
    object trained, or retrained only to restore a missing checkpoint, in this process.
    """

    def __init__(self, root: str | Path, *, frozen: bool = False, code: CodeState | None = None) -> None:
        self.root = Path(root)
        self.frozen = bool(frozen)
        self.code = code or CodeState.current()
        self.trained: list[str] = []
        self.restored: list[str] = []
        self.messages: list[str] = []

    @classmethod
    def from_env(cls, root: str | Path) -> "ResultStore":
        """A store at ``root``, frozen when ``KDMED_FROZEN=1`` (set by the book builder for a render-only build)."""
        import os

        return cls(root, frozen=os.environ.get(FROZEN_ENV, "") == "1")

    # ------------------------------------------------------------------ paths
    def run_dir(self, cfg: RunConfig) -> Path:
        """The folder of ``cfg``'s run: ``<root>/<key>``."""
        return self.root / run_key(cfg)

    def checkpoint(self, cfg: RunConfig) -> Path:
        return self.run_dir(cfg) / "model.pt"

    def say(self, message: str) -> None:
        """Record and report a line about what the store or runner did (a build shows it)."""
        from kdmed.progress import report

        self.messages.append(message)
        report(message)

    # ------------------------------------------------------------------ records
    def header(self, cfg: RunConfig) -> dict[str, Any]:
        """The fields every config.json/result.json starts with."""
        import kdmed

        return {
            "key": run_key(cfg),
            "name": cfg.name,
            "schema": SCHEMA,
            "kdmed_version": kdmed.__version__,
            "code": self.code.record(),
            "config": cfg.to_dict(),
            "key_config": cfg.key_dict(),
        }

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise StaleResultError(f"{path}: unreadable ({err}); delete {path.parent} to recompute the run") from err

    def _check_identity(self, cfg: RunConfig, record: Mapping[str, Any], path: Path) -> None:
        key = run_key(cfg)
        problems = []
        if record.get("key") != key:
            problems.append(f"stored key {record.get('key')!r} != {key!r}")
        if record.get("schema") != SCHEMA:
            problems.append(f"schema {record.get('schema')!r} != {SCHEMA}")
        if record.get("key_config") != json.loads(json.dumps(cfg.key_dict())):
            problems.append("stored configuration differs from the requested one")
        if problems:
            raise StaleResultError(
                f"{path} is stale for run {cfg.name!r}: {'; '.join(problems)}. It is not used; "
                f"delete {path.parent} to recompute the run"
            )

    def code_problem(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` was computed by other code than :attr:`code`, or None when it was not."""
        code = record.get("code") or {}
        if code.get("fingerprint") == self.code.fingerprint:
            return None
        changed = fingerprint.changed_modules(code.get("modules") or {}, dict(self.code.modules))
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        return (f"computed by other code (fingerprint {code.get('fingerprint')} -> {self.code.fingerprint}; "
                f"changed: {shown or 'unknown'})")

    def _record(self, cfg: RunConfig) -> tuple[str, dict[str, Any] | None, Path | None]:
        d = self.run_dir(cfg)
        for status, name in (("complete", "result.json"), ("partial", "config.json")):
            path = d / name
            if path.exists():
                record = self._read_json(path)
                self._check_identity(cfg, record, path)
                return status, record, path
        return "missing", None, None

    def status(self, cfg: RunConfig) -> str:
        """"complete", "partial" (started, resumable), "missing" or "stale" (other code)."""
        status, record, _ = self._record(cfg)
        if record is not None and self.code_problem(record):
            return "stale"
        return status

    def stale_reason(self, cfg: RunConfig) -> str | None:
        """Why ``cfg``'s stored run may not be used (None when it is complete and valid, or missing)."""
        _, record, _ = self._record(cfg)
        return None if record is None else self.code_problem(record)

    def is_complete(self, cfg: RunConfig) -> bool:
        """Whether ``cfg`` has a stored, valid result."""
        return self.status(cfg) == "complete"

    def load_result(self, cfg: RunConfig) -> dict[str, Any]:
        """The stored ``result.json`` of ``cfg``; raises when it is missing or stale."""
        path = self.run_dir(cfg) / "result.json"
        if not path.exists():
            raise FileNotFoundError(f"no result for run {cfg.name!r} (key {run_key(cfg)}): {path} does not exist; "
                                    "train it with run_one/run_grid")
        record = self._read_json(path)
        self._check_identity(cfg, record, path)
        problem = self.code_problem(record)
        if problem:
            raise StaleResultError(f"run {cfg.name!r} ({path.parent}) is stale: {problem}; it is not used. "
                                   "Rebuild it (make book) or regenerate the published results")
        return record

    def load_scores(self, cfg: RunConfig) -> dict[str, np.ndarray]:
        """Test-set arrays of a complete run: ``y_true``, ``y_score`` (logits), ``patient_ids``, ``rows``."""
        self.load_result(cfg)
        return _read_npz(self.run_dir(cfg) / "scores.npz")

    def load_history(self, cfg: RunConfig) -> pd.DataFrame:
        """Per-epoch training history of a complete run (one row per epoch)."""
        from kdmed.train import history_frame

        return history_frame(self.load_result(cfg)["history"])

    # ------------------------------------------------------------------ writing
    def write_scores(self, cfg: RunConfig, scores: Mapping[str, np.ndarray]) -> None:
        _write_npz(self.run_dir(cfg) / "scores.npz", scores)

    def write_config(self, cfg: RunConfig) -> None:
        atomic_write_json(self.run_dir(cfg) / "config.json", self.header(cfg))

    def write_result(self, cfg: RunConfig, result: Mapping[str, Any]) -> None:
        atomic_write_json(self.run_dir(cfg) / "result.json", result)

    def discard(self, cfg: RunConfig) -> None:
        """Delete every file of ``cfg``'s run (a stale run before it is recomputed)."""
        import shutil

        shutil.rmtree(self.run_dir(cfg), ignore_errors=True)

    def discard_leftovers(self, cfg: RunConfig) -> list[str]:
        """Delete what an interrupted process left in ``cfg``'s folder; returns the names deleted.

        Temporary files of unfinished atomic writes (``.<name>.*.tmp``) are never read but
        can be large (checkpoints). ``last.pt`` is only needed while the run is unfinished:
        it goes once ``result.json`` exists (a kill between writing the result and deleting
        the checkpoint leaves one). Only the process that writes the folder may call this
        (rank 0): the temporary file of a concurrent writer would vanish.
        """
        folder = self.run_dir(cfg)
        if not folder.is_dir():
            return []
        doomed = sorted(p for p in folder.rglob(".*.tmp") if p.is_file())
        if (folder / "result.json").exists():
            doomed.append(folder / "last.pt")
        removed = []
        for path in doomed:
            try:
                path.unlink()
                removed.append(path.name)
            except FileNotFoundError:
                pass
        return removed

    # ------------------------------------------------------------------ evaluations
    def evaluation_paths(self, cfg: RunConfig, data: DataSpec, split: str) -> tuple[Path, Path]:
        stem = self.run_dir(cfg) / "evals" / evaluation_key(data, split)
        return stem.with_suffix(".npz"), stem.with_suffix(".json")

    def read_evaluation(self, cfg: RunConfig, data: DataSpec, split: str) -> dict[str, Any] | None:
        """A stored evaluation of ``cfg``'s model on ``split`` of ``data`` (None when absent or stale)."""
        self.load_result(cfg)
        arrays, meta = self.evaluation_paths(cfg, data, split)
        if not (arrays.exists() and meta.exists()):
            return None
        info = self._read_json(meta)
        if info.get("code", {}).get("fingerprint") != self.code.fingerprint or info.get("split") != split_key(data, split):
            return None
        return {**_read_npz(arrays), "classes": info["classes"], "task": info["task"],
                "model_classes": info.get("model_classes", info["classes"]), "alignment": info.get("alignment")}

    def write_evaluation(self, cfg: RunConfig, data: DataSpec, split: str, scores: Mapping[str, Any]) -> None:
        arrays, meta = self.evaluation_paths(cfg, data, split)
        _write_npz(arrays, {k: scores[k] for k in ("y_true", "y_score", "patient_ids", "rows")})
        atomic_write_json(meta, {"run": run_key(cfg), "name": cfg.name, "split": split_key(data, split),
                                 "dataset": data.dataset, "classes": list(scores["classes"]), "task": scores["task"],
                                 "model_classes": list(scores.get("model_classes", scores["classes"])),
                                 "alignment": scores.get("alignment"),
                                 "code": {"fingerprint": self.code.fingerprint}})

    # ------------------------------------------------------------------ overview
    def scan(self) -> pd.DataFrame:
        """Every run folder with its status (complete / partial / stale) and why."""
        rows = []
        for d in sorted(p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith(".")):
            path = d / ("result.json" if (d / "result.json").exists() else "config.json")
            if not path.exists():
                rows.append({"key": d.name, "name": None, "status": "unknown", "reason": "no config.json"})
                continue
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
                expect = config_hash({"config": rec["key_config"], "schema": SCHEMA})
            except (OSError, ValueError, KeyError) as err:
                rows.append({"key": d.name, "name": None, "status": "stale", "reason": f"unreadable {path.name}: {err}"})
                continue
            if expect != d.name or rec.get("schema") != SCHEMA:
                status, reason = "stale", f"written with schema {rec.get('schema')} (now {SCHEMA})"
            else:
                reason = self.code_problem(rec) or ""
                status = "stale" if reason else ("complete" if path.name == "result.json" else "partial")
            rows.append({"key": d.name, "name": rec.get("name"), "status": status, "reason": reason})
        return pd.DataFrame(rows, columns=["key", "name", "status", "reason"])

    def index(self) -> pd.DataFrame:
        """One line per complete, valid run of the store (what :meth:`write_index` writes)."""
        rows = []
        for d in sorted(p for p in self.root.glob("*") if p.is_dir() and not p.name.startswith(".")):
            path = d / "result.json"
            if not path.exists():
                continue
            rec = self._read_json(path)
            if self.code_problem(rec):
                continue
            cfg, m = rec["config"], rec["metrics"]
            rows.append({"key": rec["key"], "name": rec["name"], "dataset": cfg["data"]["dataset"],
                         "options": json.dumps(cfg["data"]["options"], sort_keys=True), "train_n": rec["n_train"],
                         "part": cfg["data"].get("part"), "arch": cfg["arch"], "strategy": cfg["strategy"],
                         "init": cfg["init"]["name"] if isinstance(cfg["init"], dict) else cfg["init"],
                         "teacher": cfg["teacher"]["name"] if isinstance(cfg["teacher"], dict) else cfg["teacher"],
                         "seed": cfg["seed"], "macro_auc": m.get("macro_auc"),
                         "best_val_macro_auc": rec["best_val_macro_auc"], "best_epoch": rec["best_epoch"],
                         "epochs_run": rec["epochs_run"], "epoch_cap": cfg["train"]["epochs"],
                         "stopped_early": rec["stopped_early"], "train_seconds": round(rec["timings"]["train_seconds"], 1),
                         "computed_with": rec.get("compute", {}).get("numerics")})
        return pd.DataFrame(rows)

    def write_index(self) -> Path:
        """Write ``<root>/index.csv``: one line per complete run (config summary and metrics), for pandas."""
        path = self.root / "index.csv"
        with atomic_path(path) as tmp:
            self.index().to_csv(tmp, index=False)
        return path

    def compute_summary(self, configs: Sequence[RunConfig]) -> pd.DataFrame:
        """How many of ``configs``' stored runs were computed with each numerics setting."""
        from kdmed.numerics import numerics_label

        rows = [numerics_label(self.load_result(c).get("compute", {})) for c in configs]
        return pd.Series(rows, dtype=object).value_counts().rename_axis("computed with").rename("runs").reset_index()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _write_npz(path: Path, scores: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, y_true=np.asarray(scores["y_true"], dtype=np.float32),
                            y_score=np.asarray(scores["y_score"], dtype=np.float32),
                            patient_ids=np.asarray(scores["patient_ids"]).astype(str),
                            rows=np.asarray(scores["rows"], dtype=np.int64))


def load_result(cfg: RunConfig, store: ResultStore) -> dict[str, Any]:
    """The result record of a complete run."""
    return store.load_result(cfg)


def load_scores(cfg: RunConfig, store: ResultStore) -> dict[str, np.ndarray]:
    """Test-set arrays of a complete run (see :meth:`ResultStore.load_scores`)."""
    return store.load_scores(cfg)


def load_history(cfg: RunConfig, store: ResultStore) -> pd.DataFrame:
    """Per-epoch training history of a complete run (one row per epoch)."""
    return store.load_history(cfg)
