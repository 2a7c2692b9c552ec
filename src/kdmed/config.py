"""Run configurations: what one training run is, its cache key, YAML files and grids.

One :class:`RunConfig` describes a training run completely: the data
(:class:`DataSpec`), the student architecture, the strategy (which loss terms),
the student's initialisation, the teacher, the optimisation (:class:`TrainSpec`)
and the seed. A pre-trained initialisation or a teacher is itself a
``RunConfig``, so the whole dependency graph lives in the config.

Cache key
    ``config_hash({"config": cfg.key_dict(), "schema": SCHEMA})``. ``key_dict``
    leaves out two fields that do not change the numbers: ``name`` (a label for
    tables; renaming a run does not retrain it) and ``data.root`` (where the
    dataset lies on this machine; the dataset is identified by its name and
    options). Nested teacher/init configs enter with all their fields, so a
    different teacher gives a different student key. The code that computes a
    run is not in the key: the results store checks it separately
    (:mod:`kdmed.fingerprint`), so a code change shows up as a *stale* run in the
    same folder rather than as a silently new one.

This module holds every default of a run's settings; the classes that use them
(strategies, losses, the trainer) take them from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from kdmed.methods import STRATEGIES, check_strategy, uses_teacher
from kdmed.utils import config_hash, to_jsonable

#: bump when the meaning of a config field or the result format changes
SCHEMA = 2
#: fixed subset seeds of the validation and test splits (independent of ``subset_seed``)
VAL_SEED = 1001
TEST_SEED = 1002
INITS = ("random", "imagenet")
#: the two disjoint parts of a training split (whole patients): a large pool that teachers and
#: transfer inits learn from, and the part the small target subsets are drawn from
PARTS = ("pool", "target")
POOL_FRACTION = 0.7
PART_SEED = 1004
OPTIMIZERS = ("adam", "sgd")
_SCALARS = (str, int, float, bool, type(None))

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
    ``part``: draw the training images from one of the two disjoint, patient-level
    parts of the training split (:data:`PARTS`: ``pool`` holds :data:`POOL_FRACTION` of
    the patients, ``target`` the rest; fixed by :data:`PART_SEED`), so a small target
    subset never shares a patient with a teacher's pool, whatever its seed; None = the
    whole split.
    """

    dataset: str = "synthetic-chest"
    root: str | None = None
    image_size: int = 64
    options: Any = ()
    train_n: int | None = None
    val_n: int | None = None
    test_n: int | None = None
    subset_seed: int = 0
    part: str | None = None

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
        if self.part is not None and self.part not in PARTS:
            raise ValueError(f"DataSpec.part must be one of {', '.join(PARTS)} or None, got {self.part!r}")

    @property
    def option_dict(self) -> dict[str, Any]:
        """The dataset options as a dict."""
        return dict(self.options)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """How a run is optimised (see :class:`kdmed.train.Trainer`).

    ``epochs``: the cap; ``patience``: stop when the validation macro-AUC has not
    improved for this many epochs; ``plateau_patience``: halve the learning rate
    when the validation loss has not improved for this many epochs. ``momentum``
    is SGD's. ``train_eval_n``: size of the fixed, un-augmented subset of the
    training images scored in eval mode after every epoch (the training side of
    the generalization gap; 0 = none). ``device``: "auto" (CUDA when available),
    "cpu", "cuda" or "cuda:N".
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 5e-5
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    patience: int = 5
    plateau_patience: int = 2
    augment: bool = True
    amp: bool = True
    compile: bool = False
    train_eval_n: int = 1000
    device: str = "auto"

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("plateau_patience", 0),
                          ("train_eval_n", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"TrainSpec.{name} must be an int >= {low}, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"TrainSpec.lr must be a positive number, got {self.lr!r}")
        object.__setattr__(self, "lr", float(self.lr))
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"TrainSpec.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        if isinstance(self.momentum, bool) or not isinstance(self.momentum, (int, float)) or not 0 <= self.momentum < 1:
            raise ValueError(f"TrainSpec.momentum must be a number in [0, 1), got {self.momentum!r}")
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainSpec.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
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
    is the research group's in-domain value).
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
    train: TrainSpec = TrainSpec()
    seed: int = 0

    def __post_init__(self) -> None:
        from kdmed.models import ARCHS, IMAGENET_ARCHS

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
        if self.init == "imagenet" and self.arch not in IMAGENET_ARCHS:
            raise ValueError(f"{where}: init='imagenet' needs an arch with ImageNet weights "
                             f"({', '.join(IMAGENET_ARCHS)}), not {self.arch!r}")
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
                if self.teacher_arch not in IMAGENET_ARCHS:
                    raise ValueError(f"{where}: teacher='imagenet' needs a teacher_arch with ImageNet weights "
                                     f"({', '.join(IMAGENET_ARCHS)}), got {self.teacher_arch!r}")
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
    """``config_hash`` of the key dict and :data:`SCHEMA` (see the module docstring)."""
    return config_hash({"config": cfg.key_dict(), "schema": SCHEMA})


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
