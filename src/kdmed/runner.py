"""Declarative experiment runs, a results cache keyed by configuration, and grids.

One :class:`RunConfig` describes a training run completely: the data
(:class:`DataSpec`), the student architecture, the strategy (which loss terms),
the student's initialisation, the teacher, the optimisation (:class:`TrainSpec`)
and the seed. A pre-trained initialisation or a teacher is itself a
``RunConfig``, so the whole dependency graph lives in the config: :func:`run_one`
trains a missing teacher/init run first (recursively) and caches it.

Cache key
    ``config_hash({"config": key_dict(cfg), "kdmed": kdmed.__version__, "schema": SCHEMA})``.
    ``key_dict`` leaves out two fields that do not change the numbers: ``name``
    (a label for tables; renaming a run does not retrain it) and ``data.root``
    (where the dataset lies on this machine; the dataset is identified by its
    name and options). Nested teacher/init configs enter with all their fields,
    so a different teacher gives a different student key.

Store layout (``ResultStore(root)``, e.g. ``results/<profile>/``)::

    <root>/<key>/config.json   written first: the config, its key, versions
    <root>/<key>/last.pt       training checkpoint while the run is unfinished
    <root>/<key>/model.pt      best-epoch weights (kdmed.models.save_model)
    <root>/<key>/scores.npz    test y_true, y_score (logits), patient_ids, rows
    <root>/<key>/result.json   written last, atomically: the run is complete

A result whose stored key or config does not match what is asked for is
*stale*: it raises :class:`StaleResultError` and is never used silently.

Under ``torchrun`` (a process group initialised by :mod:`kdmed.distributed`)
:func:`run_one` trains with DistributedDataParallel on every rank:
``train.batch_size`` is the global batch (each rank takes its share), val/test
predictions are gathered, only rank 0 writes the run folder, and the ranks wait
for each other at the end of each run (a dependency's files exist before the
run that needs them starts). The result records ``world_size``.

Validation and test images are the same for every run on the same dataset
(only the training split is subsampled by ``train_n``/``subset_seed``; val/test
use their own fixed seeds), so methods are compared on identical images.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from kdmed.strategies import STRATEGIES, check_strategy, uses_teacher
from kdmed.utils import atomic_path, atomic_write_json, config_hash, to_jsonable

#: bump when the meaning of a config field or the result format changes
SCHEMA = 1
#: fixed subset seeds of the validation and test splits (independent of ``subset_seed``)
VAL_SEED = 1001
TEST_SEED = 1002
INITS = ("random", "imagenet")
_SCALARS = (str, int, float, bool, type(None))


class StaleResultError(RuntimeError):
    """A stored result does not belong to the configuration it is filed under."""


# ============================================================================ configs
def _positive_int_or_none(owner: str, name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{owner}.{name} must be a positive int or None, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which images a run uses.

    ``dataset``/``root``/``image_size``/``options`` are passed to
    :func:`kdmed.data.open_dataset` (``options``: a dict or a tuple of
    ``(name, value)`` pairs, kept as a sorted tuple so the spec hashes);
    ``train_n``/``val_n``/``test_n``: subsample that split to this many images
    (by patient, stratified; None = the whole split); ``subset_seed`` picks the
    training subset (val/test use the fixed seeds :data:`VAL_SEED`, :data:`TEST_SEED`).
    """

    dataset: str = "synthetic-chest"
    root: str | None = None
    image_size: int = 64
    options: Any = ()
    train_n: int | None = None
    val_n: int | None = None
    test_n: int | None = None
    subset_seed: int = 0

    def __post_init__(self) -> None:
        opts = self.options
        if isinstance(opts, Mapping):
            opts = opts.items()
        try:
            pairs = tuple(sorted((str(k), v) for k, v in opts))
        except (TypeError, ValueError) as err:
            raise ValueError(f"DataSpec.options must be a dict or (name, value) pairs, got {self.options!r}") from err
        for k, v in pairs:
            if not isinstance(v, _SCALARS):
                raise ValueError(f"DataSpec.options[{k!r}] must be a str/int/float/bool/None, got {v!r}")
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError(f"DataSpec.options names an option twice: {self.options!r}")
        object.__setattr__(self, "options", pairs)
        if self.root is not None:
            object.__setattr__(self, "root", str(self.root))
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 8:
            raise ValueError(f"DataSpec.image_size must be an int >= 8, got {self.image_size!r}")
        for name in ("train_n", "val_n", "test_n"):
            _positive_int_or_none("DataSpec", name, getattr(self, name))
        if not isinstance(self.subset_seed, int) or self.subset_seed < 0:
            raise ValueError(f"DataSpec.subset_seed must be an int >= 0, got {self.subset_seed!r}")

    @property
    def option_dict(self) -> dict[str, Any]:
        """The dataset options as a dict."""
        return dict(self.options)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """How a run is optimised (see :class:`kdmed.train.Trainer`).

    ``device``: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    patience: int = 5
    plateau_patience: int = 2
    augment: bool = True
    amp: bool = True
    compile: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("plateau_patience", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"TrainSpec.{name} must be an int >= {low}, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"TrainSpec.lr must be a positive number, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"TrainSpec.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"TrainSpec.optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("augment", "amp", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainSpec.{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"TrainSpec.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One training run, completely (see the module docstring).

    ``strategy``: scratch | transfer | kd | at | kd+at (the loss, see
    :mod:`kdmed.strategies`). ``init``: "random", "imagenet" or the ``RunConfig``
    of a pre-trained run whose best weights initialise the student (same arch;
    the head is re-initialised when the label spaces differ). ``scratch`` needs a
    random init and ``transfer`` a pre-trained one; kd/at/kd+at take either.
    ``freeze_through``: freeze the stem through this block (needs a pre-trained init).
    ``teacher``: the teacher's ``RunConfig`` (kd, at, kd+at), or "imagenet" for an
    ImageNet teacher of arch ``teacher_arch`` (attention transfer only: its label space
    differs). ``temperature``/``alpha``: KD; ``beta``/``at_p``/``taps``: AT (``beta`` 0.2
    is the research group's in-domain value). ``cache_teacher_outputs``: allow
    the one-pass teacher-logit cache when the loader does not augment.
    """

    name: str = "run"
    data: DataSpec = DataSpec()
    arch: str = "small_cnn"
    strategy: str = "scratch"
    init: Any = "random"
    freeze_through: str | None = None
    teacher: Any = None
    teacher_arch: str | None = None
    temperature: float = 4.0
    alpha: float = 0.5
    beta: float = 0.2
    at_p: float = 2.0
    taps: tuple[str, ...] | None = None
    cache_teacher_outputs: bool = True
    train: TrainSpec = TrainSpec()
    seed: int = 0

    def __post_init__(self) -> None:
        from kdmed.models import ARCHS

        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", DataSpec(**self.data))
        if isinstance(self.train, Mapping):
            object.__setattr__(self, "train", TrainSpec(**self.train))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"RunConfig.name must be a non-empty string, got {self.name!r}")
        where = f"run {self.name!r}"
        if self.arch not in ARCHS:
            raise ValueError(f"{where}: unknown arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        try:
            check_strategy(self.strategy)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if not (self.init in INITS or isinstance(self.init, RunConfig)):
            raise ValueError(f"{where}: init must be 'random', 'imagenet' or a RunConfig, got {self.init!r}")
        if self.init == "imagenet" and self.arch not in ("densenet121", "resnet18"):
            raise ValueError(f"{where}: init='imagenet' needs arch 'densenet121' or 'resnet18', not {self.arch!r}")
        if isinstance(self.init, RunConfig) and self.init.arch != self.arch:
            raise ValueError(f"{where}: init run {self.init.name!r} is a {self.init.arch} but this run's arch is {self.arch}")
        if self.strategy == "scratch" and self.init != "random":
            raise ValueError(f"{where}: strategy 'scratch' starts from init='random'; use 'transfer' for a pre-trained init")
        if self.strategy == "transfer" and self.init == "random":
            raise ValueError(f"{where}: strategy 'transfer' needs a pre-trained init ('imagenet' or a RunConfig)")
        if self.freeze_through is not None and self.init == "random":
            raise ValueError(f"{where}: freeze_through={self.freeze_through!r} needs a pre-trained init")
        if uses_teacher(self.strategy):
            if self.teacher is None:
                raise ValueError(f"{where}: strategy {self.strategy!r} needs a teacher (a RunConfig or 'imagenet')")
            if not (self.teacher == "imagenet" or isinstance(self.teacher, RunConfig)):
                raise ValueError(f"{where}: teacher must be a RunConfig or 'imagenet', got {self.teacher!r}")
            if self.teacher == "imagenet":
                if STRATEGIES[self.strategy][0]:
                    raise ValueError(f"{where}: an ImageNet teacher has another label space; it can only "
                                     "teach by attention transfer (strategy 'at')")
                if self.teacher_arch not in ("densenet121", "resnet18"):
                    raise ValueError(f"{where}: teacher='imagenet' needs teacher_arch 'densenet121' or 'resnet18', "
                                     f"got {self.teacher_arch!r}")
            elif self.teacher_arch is not None:
                raise ValueError(f"{where}: teacher_arch is only used with teacher='imagenet' "
                                 f"(the teacher run {self.teacher.name!r} has its own arch)")
        elif self.teacher is not None or self.teacher_arch is not None:
            raise ValueError(f"{where}: strategy {self.strategy!r} trains on labels only; remove the teacher")
        if self.taps is not None:
            object.__setattr__(self, "taps", tuple(str(t) for t in self.taps))
        for name in ("temperature", "alpha", "beta", "at_p"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: {name} must be a number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.temperature > 0:
            raise ValueError(f"{where}: temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"{where}: alpha must lie in [0, 1], got {self.alpha}")
        if not self.beta >= 0 or not self.at_p > 0:
            raise ValueError(f"{where}: beta must be >= 0 and at_p > 0, got beta={self.beta}, at_p={self.at_p}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"{where}: seed must be an int >= 0, got {self.seed!r}")

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON/YAML friendly); :func:`config_from_dict` inverts it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, RunConfig):
                v = v.to_dict()
            elif f.name == "data":
                v = {**to_jsonable(v), "options": v.option_dict}
            elif f.name == "taps" and v is not None:
                v = list(v)
            else:
                v = to_jsonable(v)
            out[f.name] = v
        return out

    def key_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that do not change results (``name``, ``data.root``), recursively."""
        return _strip_labels(self.to_dict())

    @property
    def key(self) -> str:
        """The cache key (see the module docstring)."""
        return run_key(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Same as :func:`config_from_dict`."""
        return config_from_dict(d)


def _strip_labels(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k != "name"}
    out["data"] = {k: v for k, v in d["data"].items() if k != "root"}
    for k in ("init", "teacher"):
        if isinstance(out.get(k), dict):
            out[k] = _strip_labels(out[k])
    return out


def run_key(cfg: RunConfig) -> str:
    """``config_hash`` of the key dict, the kdmed version and :data:`SCHEMA`."""
    import kdmed

    return config_hash({"config": cfg.key_dict(), "kdmed": kdmed.__version__, "schema": SCHEMA})


def _build(cls: type, d: Mapping[str, Any], where: str) -> Any:
    if not isinstance(d, Mapping):
        raise ValueError(f"{where} must be a mapping of fields, got {type(d).__name__}: {d!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid fields: {', '.join(names)}")
    return dict(d)


def config_from_dict(d: Mapping[str, Any], where: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from a nested dict (as written by :meth:`RunConfig.to_dict` or YAML).

    Unknown fields are refused with a message naming them, ``where`` and the valid fields.
    """
    fields = _build(RunConfig, d, where)
    if "data" in fields:
        data = _build(DataSpec, fields["data"], f"{where}.data")
        fields["data"] = DataSpec(**data)
    if "train" in fields:
        fields["train"] = TrainSpec(**_build(TrainSpec, fields["train"], f"{where}.train"))
    for k in ("init", "teacher"):
        if isinstance(fields.get(k), Mapping):
            fields[k] = config_from_dict(fields[k], f"{where}.{k}")
    if isinstance(fields.get("taps"), list):
        fields["taps"] = tuple(fields["taps"])
    try:
        return RunConfig(**fields)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from err


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """A copy of ``cfg`` with fields changed; nested fields by dotted (or ``__``) names, e.g. ``data.train_n``."""
    for dotted, value in changes.items():
        path = dotted.replace("__", ".").split(".")
        cfg = _replace_path(cfg, path, value, dotted)
    return cfg


def _replace_path(obj: Any, path: list[str], value: Any, dotted: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ValueError(f"cannot set {dotted!r}: {type(obj).__name__} {obj!r} has no fields")
    names = [f.name for f in dataclasses.fields(obj)]
    head = path[0]
    if head not in names:
        raise ValueError(f"cannot set {dotted!r}: {type(obj).__name__} has no field {head!r}; fields: {', '.join(names)}")
    if len(path) > 1:
        value = _replace_path(getattr(obj, head), path[1:], value, dotted)
    return dataclasses.replace(obj, **{head: value})


def expand_grid(base: RunConfig, **axes: Sequence[Any]) -> list[RunConfig]:
    """The Cartesian product of ``axes`` applied to ``base``, in row-major order.

    Axis names are fields, nested ones dotted (``expand_grid(cfg, strategy=[...],
    **{"data.train_n": [...]})``) or with ``__`` (``data__train_n=[...]``). Each run is
    named ``"<base name>[axis=value,...]"``.
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"grid axis {name!r} must be a list of values, got {values!r}")
    keys = list(axes)
    out = []
    for combo in itertools.product(*(list(axes[k]) for k in keys)):
        changes = dict(zip(keys, combo))
        label = ",".join(f"{k.replace('__', '.')}={_short(v)}" for k, v in changes.items())
        cfg = replace(base, **changes)
        out.append(dataclasses.replace(cfg, name=f"{base.name}[{label}]" if label else base.name))
    return out


def _short(v: Any) -> str:
    return v.name if isinstance(v, RunConfig) else str(v)


def load_config(path: str | Path) -> RunConfig:
    """Read one :class:`RunConfig` from a YAML file (a mapping of its fields; nested teacher/init as mappings)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    return config_from_dict(data or {}, where=str(path))


def load_configs(path: str | Path) -> list[RunConfig]:
    """Read named runs and grids from a YAML file.

    Format::

        runs:
          teacher_B:                  # the key is the run's name
            data: {options: {institution: B}, train_n: 2000}
          kd_C:
            strategy: kd
            teacher: teacher_B        # a string naming an earlier run
            grid: {seed: [0, 1, 2], data.train_n: [200, 500]}   # optional: expand_grid axes

    ``teacher``/``init`` strings other than "random"/"imagenet" refer to runs
    defined above them (runs with a ``grid`` cannot be referred to). Returns
    every run, grids expanded, in file order.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, Mapping) or not isinstance(data.get("runs"), Mapping) or set(data) - {"runs"}:
        raise ValueError(f"{path}: expected a mapping with one key 'runs' (name -> run fields)")
    named: dict[str, RunConfig] = {}
    out: list[RunConfig] = []
    for name, fields in data["runs"].items():
        where = f"{path}: runs.{name}"
        if not isinstance(fields, Mapping):
            raise ValueError(f"{where} must be a mapping of run fields")
        fields = dict(fields)
        grid = fields.pop("grid", None)
        for k in ("teacher", "init"):
            ref = fields.get(k)
            if isinstance(ref, str) and ref not in INITS:
                if ref not in named:
                    raise ValueError(f"{where}.{k}: {ref!r} is not a run defined above (known: {sorted(named)})")
                fields[k] = named[ref].to_dict()
        cfg = config_from_dict({**fields, "name": str(name)}, where)
        if grid is None:
            named[str(name)] = cfg
            out.append(cfg)
        else:
            if not isinstance(grid, Mapping):
                raise ValueError(f"{where}.grid must be a mapping axis -> list of values")
            out.extend(expand_grid(cfg, **{str(k): v for k, v in grid.items()}))
    return out


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
    # val/test do not depend on train_n/subset_seed: one cached copy serves every run
    key = (spec.dataset, spec.root, spec.image_size, spec.options, split, n, seed if n is not None else None)
    if key in _SPLIT_CACHE:
        _SPLIT_CACHE.move_to_end(key)
        return _SPLIT_CACHE[key]
    ds = open_dataset(spec.dataset, root=spec.root, split=split, image_size=spec.image_size, **spec.option_dict)
    if n is not None:
        if n > len(ds):
            raise ValueError(f"{spec.dataset}/{split}: asked for {n} images but the split has only {len(ds)}")
        ds = subsample(ds, n, by="patient", stratify=True, seed=seed)
    data = SplitData(ds, ds.image_array(progress=progress))
    _SPLIT_CACHE[key] = data
    while len(_SPLIT_CACHE) > _SPLIT_CACHE_SIZE:
        _SPLIT_CACHE.popitem(last=False)
    return data


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; other values unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ============================================================================ store
class ResultStore:
    """Results of runs on disk, one folder per cache key (see the module docstring).

    ``trained`` lists the keys this object trained in this process (dependencies included).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.trained: list[str] = []

    def run_dir(self, cfg: RunConfig) -> Path:
        """The folder of ``cfg``'s run: ``<root>/<key>``."""
        return self.root / run_key(cfg)

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
        doomed = sorted(p for p in folder.glob(".*.tmp") if p.is_file())
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

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise StaleResultError(f"{path}: unreadable ({err}); delete {path.parent} to recompute the run") from err

    def _check(self, cfg: RunConfig, record: dict[str, Any], path: Path) -> None:
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

    def status(self, cfg: RunConfig) -> str:
        """"complete", "partial" (started, maybe resumable) or "missing"; raises :class:`StaleResultError`."""
        d = self.run_dir(cfg)
        result = d / "result.json"
        if result.exists():
            self._check(cfg, self._read_json(result), result)
            return "complete"
        if (d / "config.json").exists():
            self._check(cfg, self._read_json(d / "config.json"), d / "config.json")
            return "partial"
        return "missing"

    def is_complete(self, cfg: RunConfig) -> bool:
        """Whether ``cfg`` has a stored, matching result."""
        return self.status(cfg) == "complete"

    def load_result(self, cfg: RunConfig) -> dict[str, Any]:
        """The stored ``result.json`` of ``cfg`` (checked against ``cfg``)."""
        path = self.run_dir(cfg) / "result.json"
        if not path.exists():
            raise FileNotFoundError(f"no result for run {cfg.name!r} (key {run_key(cfg)}): {path} does not exist; "
                                    "train it with run_one/run_grid")
        record = self._read_json(path)
        self._check(cfg, record, path)
        return record

    def scan(self) -> pd.DataFrame:
        """Every run folder with its status: complete / partial / stale (key no longer matches its config)."""
        import kdmed

        rows = []
        for d in sorted(p for p in self.root.glob("*") if p.is_dir()):
            cfg_file = d / "config.json"
            if not cfg_file.exists():
                rows.append({"key": d.name, "name": None, "status": "unknown", "reason": "no config.json"})
                continue
            try:
                rec = json.loads(cfg_file.read_text(encoding="utf-8"))
                expect = config_hash({"config": rec["key_config"], "kdmed": kdmed.__version__, "schema": SCHEMA})
            except (OSError, ValueError, KeyError) as err:
                rows.append({"key": d.name, "name": None, "status": "stale", "reason": f"unreadable config.json: {err}"})
                continue
            if expect != d.name:
                status, reason = "stale", f"written by kdmed {rec.get('kdmed_version')} schema {rec.get('schema')}"
            else:
                status = "complete" if (d / "result.json").exists() else "partial"
                reason = ""
            rows.append({"key": d.name, "name": rec.get("name"), "status": status, "reason": reason})
        return pd.DataFrame(rows, columns=["key", "name", "status", "reason"])


def load_result(cfg: RunConfig, store: ResultStore) -> dict[str, Any]:
    """The result record of a complete run."""
    return store.load_result(cfg)


def load_scores(cfg: RunConfig, store: ResultStore) -> dict[str, np.ndarray]:
    """Test-set arrays of a complete run: ``y_true``, ``y_score`` (logits), ``patient_ids``, ``rows``."""
    store.load_result(cfg)
    with np.load(store.run_dir(cfg) / "scores.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_history(cfg: RunConfig, store: ResultStore) -> pd.DataFrame:
    """Per-epoch training history of a complete run (one row per epoch)."""
    from kdmed.train import history_frame

    return history_frame(store.load_result(cfg)["history"])


# ============================================================================ running
def _record_header(cfg: RunConfig) -> dict[str, Any]:
    import torch

    import kdmed

    return {
        "key": run_key(cfg),
        "name": cfg.name,
        "schema": SCHEMA,
        "kdmed_version": kdmed.__version__,
        "torch_version": torch.__version__,
        "config": cfg.to_dict(),
        "key_config": cfg.key_dict(),
    }


def _teacher_model(cfg: RunConfig, store: ResultStore, classes: list[str]):
    from kdmed.models import build_model, load_model

    if cfg.teacher == "imagenet":
        return build_model(cfg.teacher_arch, len(classes), init="imagenet")
    teacher_result = store.load_result(cfg.teacher)
    if STRATEGIES[cfg.strategy][0] and list(teacher_result["classes"]) != list(classes):
        raise ValueError(
            f"run {cfg.name!r}: the teacher {cfg.teacher.name!r} predicts {teacher_result['classes']} but the "
            f"student's classes are {classes}; distillation (kd) needs the same label space (use 'at')"
        )
    path = store.run_dir(cfg.teacher) / "model.pt"
    model, meta = load_model(path)
    if list(meta.get("classes", [])) != list(teacher_result["classes"]):
        raise StaleResultError(
            f"run {cfg.name!r}: the teacher checkpoint {path} has a head for {meta.get('num_classes')} classes "
            f"{meta.get('classes')} but its result.json lists {len(teacher_result['classes'])} classes; the folder "
            f"{path.parent} is inconsistent: delete it to retrain the teacher"
        )
    return model


def _student_model(cfg: RunConfig, store: ResultStore, classes: list[str]):
    from kdmed.models import build_model

    if isinstance(cfg.init, RunConfig):
        init_result = store.load_result(cfg.init)
        head = "match" if list(init_result["classes"]) == list(classes) else "reinit"
        return build_model(cfg.arch, len(classes), init=str(store.run_dir(cfg.init) / "model.pt"), head=head)
    return build_model(cfg.arch, len(classes), init=cfg.init)


def run_one(cfg: RunConfig, store: ResultStore, quiet: bool = False,
            callbacks: Sequence[Callable[[int, dict], Any]] = ()) -> dict[str, Any]:
    """Train, evaluate and store ``cfg`` (or return its cached result); see the module docstring.

    Missing teacher/init runs are trained first. An unfinished run resumes from its
    ``last.pt``. ``callbacks`` are passed to the trainer (``f(epoch, record)``).
    """
    from kdmed import distributed
    from kdmed.loader import ArrayLoader
    from kdmed.metrics import evaluate
    from kdmed.models import freeze_through, save_model
    from kdmed.strategies import Strategy
    from kdmed.train import Trainer, loader_labels, predict
    from kdmed.utils import set_seed

    if store.status(cfg) == "complete":
        if distributed.rank() == 0:
            store.discard_leftovers(cfg)
        return store.load_result(cfg)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0  # only rank 0 writes the run folder and shows progress
    quiet = quiet or not main
    t_start = time.perf_counter()
    key = run_key(cfg)
    run_dir = store.run_dir(cfg)
    if main:
        store.discard_leftovers(cfg)

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
            run_one(dep, store, quiet=quiet)
    teacher = _teacher_model(cfg, store, classes) if cfg.teacher is not None else None
    if main:
        atomic_write_json(run_dir / "config.json", _record_header(cfg))
    set_seed(cfg.seed)
    model = _student_model(cfg, store, classes)
    frozen = freeze_through(model, cfg.arch, cfg.freeze_through) if cfg.freeze_through else []
    device = distributed.local_device(resolve_device(cfg.train.device))
    ts = cfg.train
    n_train = len(train_d.dataset)
    shard = {"rank": rank, "world_size": world}
    train_loader = ArrayLoader(train_d.images, train_d.labels, batch_size=distributed.per_rank_batch_size(ts.batch_size),
                               shuffle=True, seed=cfg.seed, augment=ts.augment, device=device,
                               drop_last=n_train > ts.batch_size, **shard)
    val_loader = ArrayLoader(val_d.images, val_d.labels, batch_size=ts.batch_size, shuffle=False, device=device, **shard)
    test_loader = ArrayLoader(test_d.images, test_d.labels, batch_size=ts.batch_size, shuffle=False, device=device,
                              **shard)
    strategy = Strategy(cfg.strategy, task, teacher=teacher, student_arch=cfg.arch,
                        teacher_arch=None if teacher is None else getattr(teacher, "kdmed_arch", cfg.teacher_arch),
                        temperature=cfg.temperature, alpha=cfg.alpha, beta=cfg.beta, at_p=cfg.at_p, taps=cfg.taps,
                        cache_teacher_outputs=cfg.cache_teacher_outputs)
    trainer = Trainer(model, strategy, epochs=ts.epochs, lr=ts.lr, optimizer=ts.optimizer,
                      weight_decay=ts.weight_decay, patience=ts.patience, plateau_patience=ts.plateau_patience,
                      amp=ts.amp, compile=ts.compile, device=device, checkpoint_path=run_dir / "last.pt",
                      fingerprint=key, callbacks=callbacks, quiet=quiet)
    try:
        fitted = trainer.fit(train_loader, val_loader)
    finally:
        strategy.close()

    t0 = time.perf_counter()
    y_score = predict(model, test_loader, amp=ts.amp)
    y_true = loader_labels(test_loader)
    ds_test = test_d.dataset
    metrics = evaluate(y_true, y_score, task, classes=classes, patient_ids=ds_test.patient_ids, n_boot=0)
    eval_seconds = time.perf_counter() - t0

    if main:
        save_model(model, run_dir / "model.pt", cfg.arch, classes,
                   extra={"key": key, "name": cfg.name, "best_epoch": fitted.best_epoch, "config": cfg.to_dict()})
        with atomic_path(run_dir / "scores.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, y_true=y_true.astype(np.float32), y_score=y_score.astype(np.float32),
                                patient_ids=np.asarray(ds_test.patient_ids).astype(str),
                                rows=np.asarray(ds_test.source_rows, dtype=np.int64))
    result = {
        **_record_header(cfg),
        "device": device,
        "device_name": _device_name(device),
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
        },
    }
    if main:
        atomic_write_json(run_dir / "result.json", result)
        (run_dir / "last.pt").unlink(missing_ok=True)
    distributed.barrier()
    store.trained.append(key)
    return json.loads(json.dumps(to_jsonable(result)))


def _device_name(device: str) -> str:
    import platform

    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {torch.get_num_threads()} threads"


def _init_label(cfg: RunConfig) -> str:
    return cfg.init.name if isinstance(cfg.init, RunConfig) else cfg.init


def _teacher_label(cfg: RunConfig) -> str | None:
    if cfg.teacher == "imagenet":
        return f"imagenet:{cfg.teacher_arch}"
    return cfg.teacher.name if isinstance(cfg.teacher, RunConfig) else None


def summary_row(cfg: RunConfig, result: Mapping[str, Any]) -> dict[str, Any]:
    """One tidy table row for a run (what :func:`run_grid` returns per run)."""
    kd, at = STRATEGIES[cfg.strategy]
    m = result["metrics"]
    return {
        "key": result["key"],
        "name": cfg.name,
        "dataset": cfg.data.dataset,
        "institution": cfg.data.option_dict.get("institution"),
        "arch": cfg.arch,
        "strategy": cfg.strategy,
        "init": _init_label(cfg),
        "teacher": _teacher_label(cfg),
        "freeze_through": cfg.freeze_through,
        "train_n": cfg.data.train_n,
        "n_train": result["n_train"],
        "seed": cfg.seed,
        "temperature": cfg.temperature if kd else None,
        "alpha": cfg.alpha if kd else None,
        "beta": cfg.beta if at else None,
        "macro_auc": m.get("macro_auc"),
        "macro_auprc": m.get("macro_auprc"),
        "best_val_macro_auc": result["best_val_macro_auc"],
        "best_epoch": result["best_epoch"],
        "epochs_run": result["epochs_run"],
        "train_seconds": result["timings"]["train_seconds"],
        "teacher_mode": result["teacher_mode"],
        "device": result["device"],
    }


def run_grid(configs: Iterable[RunConfig], store: ResultStore, progress: bool = True,
             quiet: bool = True) -> pd.DataFrame:
    """Run every config not yet complete (with a progress bar) and return one row per config.

    A stale stored result stops the grid with :class:`StaleResultError` before anything trains.
    """
    from tqdm.auto import tqdm

    configs = list(configs)
    for cfg in configs:
        store.status(cfg)  # raises on a stale result before any training starts
    rows = []
    with tqdm(total=len(configs), desc="runs", disable=not progress) as bar:
        for cfg in configs:
            bar.set_postfix_str(cfg.name[:40])
            rows.append(summary_row(cfg, run_one(cfg, store, quiet=quiet)))
            bar.update(1)
    return pd.DataFrame(rows)
