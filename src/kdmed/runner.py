"""Execution: train a run into the results store, score stored models, run grids.

:func:`run_one` trains one :class:`kdmed.config.RunConfig` (its missing teacher and
initialisation first, recursively), evaluates it on its test split and writes the
run's folder (:mod:`kdmed.store`). An unfinished run resumes from its ``last.pt``;
a stale one (computed by other code) is recomputed, saying why; a frozen store
refuses to train anything.

A teacher or initialisation whose result is stored but whose ``model.pt`` is not
(published results carry no checkpoints) is **restored** when new work needs its
weights: it is retrained into a temporary folder and its test-set scores are
compared with the stored ones; the checkpoint is kept only when they are bitwise
equal, otherwise :class:`CheckpointMismatchError` says so: a published run is
never silently replaced by a different model.

:func:`evaluate_on` scores a stored model on another split (a teacher on the
target's test set) once and stores the scores with the run.

:func:`kdmed.grid.run_grid` runs many configs, in parallel worker processes.

Under ``torchrun`` (a process group initialised by :mod:`kdmed.distributed`)
:func:`run_one` trains with DistributedDataParallel on every rank:
``train.batch_size`` is the global batch (each rank takes its share), val/test
predictions are gathered, only rank 0 writes the run folder, and the ranks wait
for each other at the end of each run. The result records ``world_size``.

Validation and test images are the same for every run on the same dataset
(only the training split is subsampled by ``train_n``/``subset_seed``; val/test
use their own fixed seeds), so methods are compared on identical images.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import time
from typing import Any, Callable, Sequence

import numpy as np

from kdmed.config import PART_SEED, PARTS, POOL_FRACTION, TEST_SEED, VAL_SEED, DataSpec, RunConfig, run_key
from kdmed.devices import resolve_device
from kdmed.methods import STRATEGIES
from kdmed.store import FrozenStoreError, ResultStore, StaleResultError
from kdmed.utils import to_jsonable

#: images of the fixed training subset scored in eval mode each epoch are drawn with this seed
TRAIN_EVAL_SEED = 1003


class CheckpointMismatchError(RuntimeError):
    """A run retrained to restore its checkpoint did not reproduce its stored scores."""


# ============================================================================ data
@dataclasses.dataclass(frozen=True)
class SplitData:
    """One split of a run's data: the dataset view and its uint8 image array."""

    dataset: Any
    images: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """float32 ``[N, C]`` labels of the split (NaN = unknown)."""
        return self.dataset.labels


_SPLIT_CACHE: "collections.OrderedDict[tuple, SplitData]" = collections.OrderedDict()
_SPLIT_CACHE_SIZE = 12


def clear_data_cache() -> None:
    """Forget the image arrays kept in memory by :func:`load_split`."""
    _SPLIT_CACHE.clear()


def load_split(spec: DataSpec, split: str, progress: bool = True) -> SplitData:
    """The (subsampled) ``split`` of ``spec`` and its images, loaded once per process (LRU cache)."""
    from kdmed.data import open_dataset, subsample

    n, seed = {"train": (spec.train_n, spec.subset_seed), "val": (spec.val_n, VAL_SEED),
               "test": (spec.test_n, TEST_SEED)}[split]
    part = spec.part if split == "train" else None
    # val/test do not depend on train_n/subset_seed/part: one cached copy serves every run
    key = (spec.dataset, spec.root, spec.image_size, spec.options, split, n, seed if n is not None else None, part)
    if key in _SPLIT_CACHE:
        _SPLIT_CACHE.move_to_end(key)
        return _SPLIT_CACHE[key]
    ds = open_dataset(spec.dataset, root=spec.root, split=split, image_size=spec.image_size, **spec.option_dict)
    if part is not None:
        ds = ds.take(training_part(ds.patient_ids, part))
    if n is not None:
        if n > len(ds):
            raise ValueError(f"{spec.dataset}/{split}: asked for {n} images but the split has only {len(ds)}")
        ds = subsample(ds, n, by="patient", stratify=True, seed=seed)
    data = SplitData(ds, ds.image_array(progress=progress))
    _SPLIT_CACHE[key] = data
    while len(_SPLIT_CACHE) > _SPLIT_CACHE_SIZE:
        _SPLIT_CACHE.popitem(last=False)
    return data


def open_split(spec: DataSpec, split: str) -> Any:
    """The dataset behind ``spec`` for ``split``, without its subsampling and without loading images."""
    from kdmed.data import open_dataset

    return open_dataset(spec.dataset, root=spec.root, split=split, image_size=spec.image_size, **spec.option_dict)


def training_part(patient_ids: np.ndarray, part: str) -> np.ndarray:
    """Rows of the ``part`` of a training split (see :class:`kdmed.config.DataSpec`): whole patients, fixed."""
    from kdmed.data.subsets import split_by_patient

    pool, target = split_by_patient(patient_ids, [POOL_FRACTION, 1 - POOL_FRACTION], seed=PART_SEED)
    return {PARTS[0]: pool, PARTS[1]: target}[part]


def train_eval_rows(n_train: int, k: int) -> np.ndarray:
    """The fixed training rows scored in eval mode each epoch: ``min(k, n_train)`` of them, sorted."""
    rng = np.random.default_rng(TRAIN_EVAL_SEED)
    return np.sort(rng.permutation(n_train)[: min(k, n_train)])


# ============================================================================ models of stored runs
def _check_writable(cfg: RunConfig, store: ResultStore, what: str) -> None:
    if store.frozen:
        raise FrozenStoreError(f"the results store {store.root} is frozen (render-only build) but run "
                               f"{cfg.name!r} (key {run_key(cfg)}) needs {what}; build without --frozen, "
                               "or regenerate the published results")


def ensure_checkpoint(cfg: RunConfig, store: ResultStore, quiet: bool = True) -> None:
    """Make sure a complete run's ``model.pt`` exists, restoring it by retraining (see the module docstring)."""
    from kdmed import distributed

    if store.checkpoint(cfg).exists():
        return
    _check_writable(cfg, store, "its checkpoint model.pt, which is not on disk")
    if distributed.world_size() > 1:
        raise FileNotFoundError(f"{store.checkpoint(cfg)} is missing; restore it in one process before torchrun")
    store.say(f"restoring the checkpoint of {cfg.name!r}: the stored run has no model.pt, retraining it "
              f"(same config and seed) into a temporary folder and checking it reproduces the stored scores")
    tmp_root = store.root / f".restore-{run_key(cfg)}-{os.getpid()}"
    shutil.rmtree(tmp_root, ignore_errors=True)
    try:
        scratch = ResultStore(tmp_root, code=store.code)
        _train(cfg, scratch, store, quiet=quiet)
        new, old = scratch.load_scores(cfg), store.load_scores(cfg)
        if not np.array_equal(new["y_score"], old["y_score"]):
            diff = float(np.max(np.abs(new["y_score"].astype(np.float64) - old["y_score"])))
            stored = store.load_result(cfg).get("compute", {})
            here = scratch.load_result(cfg).get("compute", {})
            from kdmed.numerics import numerics_label

            raise CheckpointMismatchError(
                f"run {cfg.name!r} was retrained to restore its checkpoint, but its test scores differ from the "
                f"stored run (max |difference| {diff:.3g}): stored with {numerics_label(stored)}, retrained with "
                f"{numerics_label(here)}. The stored run is kept and not replaced. Rebuild in reproducible numerics "
                f"(KDMED_NUMERICS=reproducible) or write new results elsewhere (results_dir)"
            )
        os.replace(scratch.checkpoint(cfg), store.checkpoint(cfg))
        store.restored.append(run_key(cfg))
        store.say(f"restored {store.checkpoint(cfg)}: bitwise the same test scores as the stored run")
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def load_model_of(cfg: RunConfig, store: ResultStore, device: str = "cpu"):
    """The best weights of a complete run (restored when missing) and their metadata."""
    from kdmed.models import load_model

    store.load_result(cfg)
    ensure_checkpoint(cfg, store)
    return load_model(store.checkpoint(cfg), device=device)


def evaluate_on(cfg: RunConfig, store: ResultStore, data: DataSpec, split: str = "test") -> dict[str, Any]:
    """Scores of ``cfg``'s stored model on ``split`` of ``data`` (computed once, then read from the store).

    Outputs and labels are matched by class name (:func:`kdmed.labels.align_classes`): the
    shared classes are scored, in the data's order. Returns ``y_true``, ``y_score``
    (logits), ``patient_ids``, ``rows``, ``classes``, ``model_classes``, ``task``, ``alignment``.
    """
    from kdmed.loader import ArrayLoader
    from kdmed.predict import predict

    stored = store.read_evaluation(cfg, data, split)
    if stored is not None:
        return stored
    _check_writable(cfg, store, f"an evaluation on {data.dataset} {split} that is not stored")
    from kdmed.labels import align_classes, aligned_scores

    d = load_split(data, split, progress=False)
    result = store.load_result(cfg)
    what = f"run {cfg.name!r} scored on {data.dataset} {split}"
    align_classes(result["classes"], d.dataset.classes, d.dataset.task, what, result.get("task"))  # before loading
    device = resolve_device(cfg.train.device)
    model, _ = load_model_of(cfg, store, device=device)
    loader = ArrayLoader(d.images, d.labels, batch_size=cfg.train.batch_size, shuffle=False, device=device)
    y_true, y_score, alignment = aligned_scores(predict(model, loader, amp=cfg.train.amp), result["classes"],
                                                d.labels, d.dataset.classes, d.dataset.task, what)
    scores = {"y_true": y_true, "y_score": y_score,
              "patient_ids": np.asarray(d.dataset.patient_ids), "rows": np.asarray(d.dataset.source_rows),
              "classes": alignment.classes, "model_classes": list(result["classes"]), "task": d.dataset.task,
              "alignment": alignment.describe()}
    store.write_evaluation(cfg, data, split, scores)
    return store.read_evaluation(cfg, data, split)


def _shared_outputs_key(cfg: RunConfig, store: ResultStore, device: str, world: int) -> str | None:
    """The name of ``cfg``'s teacher outputs in the shared cache (None: not shared, e.g. under DDP)."""
    from kdmed import numerics
    from kdmed.loader import parse_augment
    from kdmed.models import default_taps
    from kdmed.store import split_key
    from kdmed.strategies import matched_taps
    from kdmed.teacher_views import entry_key

    if cfg.teacher is None or world > 1:
        return None
    teacher = f"imagenet:{cfg.teacher_arch}" if cfg.teacher == "imagenet" else run_key(cfg.teacher)
    teacher_arch = cfg.teacher_arch if cfg.teacher == "imagenet" else cfg.teacher.arch
    at = STRATEGIES[cfg.strategy][1]
    taps = matched_taps(cfg.arch, teacher_arch, cfg.taps or default_taps(cfg.arch))[1] if at else None
    augment = parse_augment(cfg.train.augment)
    return entry_key({"teacher": teacher, "code": store.code.fingerprint, "images": split_key(cfg.data, "train"),
                      "view_seed": cfg.seed if augment["hflip"] or augment["rotate"] else None, "augment": augment,
                      "teacher_taps": taps, "at_p": cfg.at_p if at else None, "amp": cfg.train.amp,
                      "device": device, "numerics": numerics.mode()})


def _teacher_model(cfg: RunConfig, store: ResultStore, classes: list[str], task: str):
    """The frozen teacher of ``cfg`` and, for KD, its classes aligned by name onto the student's (None: no KD)."""
    from kdmed.labels import align_classes
    from kdmed.models import build_model

    if cfg.teacher == "imagenet":
        return build_model(cfg.teacher_arch, len(classes), init="imagenet"), None
    teacher_result = store.load_result(cfg.teacher)
    alignment = None
    if STRATEGIES[cfg.strategy][0]:
        alignment = align_classes(teacher_result["classes"], classes, task,
                                  f"run {cfg.name!r}: distilling the teacher {cfg.teacher.name!r}",
                                  source_task=teacher_result.get("task"))
    model, meta = load_model_of(cfg.teacher, store)
    if list(meta.get("classes", [])) != list(teacher_result["classes"]):
        raise StaleResultError(
            f"run {cfg.name!r}: the teacher checkpoint {store.checkpoint(cfg.teacher)} has a head for "
            f"{meta.get('num_classes')} classes {meta.get('classes')} but its result.json lists "
            f"{len(teacher_result['classes'])} classes; the folder is inconsistent: delete it to retrain the teacher"
        )
    return model, alignment


def _student_model(cfg: RunConfig, store: ResultStore, classes: list[str]):
    from kdmed.models import build_model

    if isinstance(cfg.init, RunConfig):
        init_result = store.load_result(cfg.init)
        ensure_checkpoint(cfg.init, store)
        head = "match" if list(init_result["classes"]) == list(classes) else "reinit"
        return build_model(cfg.arch, len(classes), init=str(store.checkpoint(cfg.init)), head=head)
    return build_model(cfg.arch, len(classes), init=cfg.init)


# ============================================================================ training
def run_one(cfg: RunConfig, store: ResultStore, quiet: bool = False,
            callbacks: Sequence[Callable[[int, dict], Any]] = ()) -> dict[str, Any]:
    """Train, evaluate and store ``cfg`` (or return its stored result); see the module docstring.

    Missing teacher/init runs are trained first. An unfinished run resumes from its
    ``last.pt``. ``callbacks`` are passed to the trainer (``f(epoch, record)``).
    """
    from kdmed import distributed

    status = store.status(cfg)
    main = distributed.rank() == 0
    if status == "complete":
        if main:
            store.discard_leftovers(cfg)
        return store.load_result(cfg)
    if status == "stale":
        reason = store.stale_reason(cfg)
        _check_writable(cfg, store, f"retraining (its stored run is stale: {reason})")
        if main:
            store.say(f"retraining {cfg.name!r}: its stored run is stale, {reason}")
            store.discard(cfg)
        distributed.barrier()
    else:
        _check_writable(cfg, store, "training (it is not in the store)")
    return _train(cfg, store, store, quiet=quiet, callbacks=callbacks)


def _train(cfg: RunConfig, out: ResultStore, deps: ResultStore, quiet: bool = False,
           callbacks: Sequence[Callable[[int, dict], Any]] = ()) -> dict[str, Any]:
    """Train ``cfg`` into ``out``, taking its teacher/init from ``deps`` (the same store, or not when restoring)."""
    from kdmed import distributed, numerics
    from kdmed.loader import ArrayLoader
    from kdmed.metrics import evaluate
    from kdmed.models import freeze_through, save_model
    from kdmed.strategies import Strategy
    from kdmed.predict import loader_labels, predict
    from kdmed.train import Trainer
    from kdmed.utils import set_seed

    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0  # only rank 0 writes the run folder and shows progress
    quiet = quiet or not main
    t_start = time.perf_counter()
    key = run_key(cfg)
    if main:
        out.discard_leftovers(cfg)
    device = distributed.local_device(resolve_device(cfg.train.device))
    compute = numerics.enforce() if not device.startswith("cuda") else numerics.compute_record(device)

    # data first: the classes decide the heads of the student and of a teacher check
    t0 = time.perf_counter()
    if not main:
        distributed.barrier()  # rank 0 builds the on-disk image cache first; the others then read it
    train_d, val_d, test_d = (load_split(cfg.data, s, progress=not quiet) for s in ("train", "val", "test"))
    if main:
        distributed.barrier()
    data_seconds = time.perf_counter() - t0
    classes = list(train_d.dataset.classes)
    task = train_d.dataset.task

    # dependencies first (training them moves the global RNGs), then seed, then the student
    for dep in (cfg.teacher, cfg.init):
        if isinstance(dep, RunConfig):
            run_one(dep, deps, quiet=quiet)
    teacher, kd_alignment = _teacher_model(cfg, deps, classes, task) if cfg.teacher is not None else (None, None)
    if main:
        out.write_config(cfg)
    set_seed(cfg.seed)
    model = _student_model(cfg, deps, classes)
    frozen = freeze_through(model, cfg.arch, cfg.freeze_through) if cfg.freeze_through else []
    ts = cfg.train
    n_train = len(train_d.dataset)
    shard = {"rank": rank, "world_size": world}
    train_loader = ArrayLoader(train_d.images, train_d.labels, batch_size=distributed.per_rank_batch_size(ts.batch_size),
                               shuffle=True, seed=cfg.seed, augment=ts.augment, device=device,
                               drop_last=n_train > ts.batch_size, view_ids=train_d.dataset.source_rows, **shard)
    val_loader = ArrayLoader(val_d.images, val_d.labels, batch_size=ts.batch_size, shuffle=False, device=device, **shard)
    test_loader = ArrayLoader(test_d.images, test_d.labels, batch_size=ts.batch_size, shuffle=False, device=device,
                              **shard)
    train_eval_loader = None
    if ts.train_eval_n:
        train_eval_loader = ArrayLoader(train_d.images, train_d.labels, batch_size=ts.batch_size, shuffle=False,
                                        device=device, indices=train_eval_rows(n_train, ts.train_eval_n), **shard)
    kd, at = STRATEGIES[cfg.strategy]
    strategy = Strategy(cfg.strategy, task, teacher=teacher, student_arch=cfg.arch,
                        teacher_arch=None if teacher is None else getattr(teacher, "kdmed_arch", cfg.teacher_arch),
                        temperature=cfg.temperature if kd else None, alpha=cfg.alpha if kd else None,
                        beta=cfg.beta if at else None, at_p=cfg.at_p if at else None,
                        taps=cfg.taps if at else None,
                        shared_outputs_key=_shared_outputs_key(cfg, out, device, world), kd_alignment=kd_alignment)
    trainer = Trainer(model, strategy, ts, device=device, checkpoint_path=out.run_dir(cfg) / "last.pt",
                      fingerprint=f"{key}:{out.code.fingerprint}", callbacks=callbacks, quiet=quiet)
    try:
        fitted = trainer.fit(train_loader, val_loader, train_eval_loader)
    finally:
        strategy.close()

    t0 = time.perf_counter()
    y_score = predict(model, test_loader, amp=ts.amp)
    y_true = loader_labels(test_loader)
    ds_test = test_d.dataset
    metrics = evaluate(y_true, y_score, task, classes=classes, patient_ids=ds_test.patient_ids, n_boot=0)
    eval_seconds = time.perf_counter() - t0

    if main:
        save_model(model, out.checkpoint(cfg), cfg.arch, classes,
                   extra={"key": key, "name": cfg.name, "best_epoch": fitted.best_epoch, "config": cfg.to_dict()})
        out.write_scores(cfg, {"y_true": y_true, "y_score": y_score, "patient_ids": ds_test.patient_ids,
                               "rows": ds_test.source_rows})
    result = {
        **out.header(cfg),
        "compute": compute,
        "device": device,
        "world_size": world,
        "task": task,
        "classes": classes,
        "metrics": metrics,
        "per_class_auc": metrics.get("per_class_auc"),
        "history": fitted.history,
        "best_epoch": fitted.best_epoch,
        "best_val_macro_auc": fitted.best_val_macro_auc,
        "epochs_run": fitted.epochs_run,
        "stopped_early": fitted.stopped_early,
        "resumed_from_epoch": fitted.resumed_from_epoch,
        "teacher_mode": fitted.teacher_mode,
        "compiled": fitted.compiled,
        "strategy": strategy.describe(),
        "frozen_parameters": len(frozen),
        "n_train": n_train,
        "n_val": len(val_d.dataset),
        "n_test": len(ds_test),
        "dependencies": {k: run_key(getattr(cfg, k)) for k in ("teacher", "init")
                         if isinstance(getattr(cfg, k), RunConfig)},
        "timings": {
            "train_seconds": fitted.train_seconds,
            "data_seconds": data_seconds,
            "eval_seconds": eval_seconds,
            "total_seconds": time.perf_counter() - t_start,
            "images_per_s": float(np.mean([h["images_per_s"] for h in fitted.history])) if fitted.history else None,
            # shared teacher passes: who computed a view and who read it depends on the order runs ran in
            "teacher_pass_seconds": strategy.teacher_pass_seconds,
            "teacher_passes": strategy.teacher_pass_counts(),
        },
    }
    if main:
        out.write_result(cfg, result)
        (out.run_dir(cfg) / "last.pt").unlink(missing_ok=True)
    distributed.barrier()
    out.trained.append(key)
    return json.loads(json.dumps(to_jsonable(result)))
