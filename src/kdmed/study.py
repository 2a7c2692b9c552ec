"""The study's experiments as run configurations: what every chapter trains.

A :class:`Study` holds the knobs of the study (image size, architectures, sizes,
seeds, epochs, the KD/AT hyper-parameters, and where real data lives). Their
values live in one place, the profile YAML (``book/profiles/<name>.yml``, section
``study:``): :meth:`Study.from_profile` reads it and applies overrides (a
chapter's papermill parameters, ``--param`` on the builder's command line), each
checked against the field's type. :class:`Study` has no defaults of its own but
for the dataset folders.

From a study, the functions below build the :class:`kdmed.config.RunConfig` of
every run of a chapter. Runs are keyed by their full configuration, so a teacher
trained in the teacher chapter is the very same stored run the distillation
chapter uses.

Settings (``Study.setting``) decide the data roles. The teacher is "carefully
pre-trained" on a large training pool of the target's own domain and the student
learns from a small sample of it (the abstract's setting: CheXpert n = 5k,
ChestX-ray8 n = 5.6k); teachers from other domains are the cross-domain chapter's.
The transfer-learning initialisation comes from another chest source, as the
authors' related code started from an NIH-pretrained network:

================  ==========================  =========================  ===========================
setting           small target (student)      in-domain teacher          transfer-learning init
================  ==========================  =========================  ===========================
``synthetic``     synthetic chest inst. C     inst. C, large pool        inst. A (NIH-like)
``chexpert``      CheXpert, n = 5,000 subset  CheXpert full train        NIH ChestX-ray14 (head reinit)
``chestxray8``    NIH ChestX-ray8, n = 5,606  NIH full train_val         CheXpert (head reinit)
================  ==========================  =========================  ===========================

The methods are :data:`kdmed.methods.METHODS`; each chapter's selection is a
constant below.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from kdmed.config import DataSpec, RunConfig, TrainSpec
from kdmed.methods import METHODS, method
from kdmed.store import ResultStore
from kdmed.utils import repo_root

SETTINGS = ("synthetic", "chexpert", "chestxray8")
ROLES = ("teacher", "other-chest", "pretrain", "fundus")
#: the methods of each chapter (names of :data:`kdmed.methods.METHODS`)
DISTILLATION_METHODS = ("scratch", "transfer", "kd", "at", "kd+at", "transfer+kd")
CROSS_DOMAIN_METHODS = ("transfer", "kd", "at", "kd+at")
REGULARIZATION_METHODS = ("scratch", "transfer", "kd", "transfer+kd")
#: methods whose gain over transfer learning the distillation chapter pairs, by seed
GAIN_METHODS = ("kd", "transfer+kd", "kd+at", "at")
RESULTS_ENV = "KDMED_RESULTS_DIR"


class StudyError(ValueError):
    """A profile or an override does not describe a valid study."""


@dataclasses.dataclass(frozen=True)
class Study:
    """Every knob of the study; values come from a profile (:meth:`from_profile`)."""

    profile: str
    setting: str
    image_size: int
    student_arch: str
    teacher_arch: str
    #: training images of the teacher's source and of the transfer-learning init (None = whole split)
    teacher_n: int | None
    pretrain_n: int | None
    #: the small target subset ("n = 5k" in the paper) and the learning-curve sizes
    target_n: int
    target_sizes: tuple[int, ...]
    val_n: int | None
    test_n: int | None
    seeds: tuple[int, ...]
    epochs: int
    teacher_epochs: int
    batch_size: int
    lr: float
    patience: int
    augment: bool
    temperature: float
    alpha: float
    beta: float
    device: str
    dr_dataset: str
    #: bootstrap resamples of the confidence intervals (patients are resampled)
    n_boot: int
    #: training images of the teachers of the teacher-quality sweep
    teacher_sizes: tuple[int, ...]
    #: the T x alpha grid of the regularization chapter, and its seeds
    temperatures: tuple[float, ...]
    alphas: tuple[float, ...]
    grid_seeds: tuple[int, ...]
    #: where the real datasets lie on this machine (only the real settings use them)
    chexpert_root: str | None = None
    nih_root: str | None = None
    dr_root: str | None = None

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise StudyError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        for name in ("target_sizes", "seeds", "teacher_sizes", "grid_seeds", "temperatures", "alphas"):
            if not getattr(self, name):
                raise StudyError(f"{name} must be a non-empty list, got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def fields(cls) -> dict[str, Any]:
        """Field name -> type of every knob."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "study") -> "Study":
        """Build from ``values`` (each checked against its field's type), naming every problem at once."""
        known = cls.fields()
        problems = [f"{where}: unknown study parameter {k!r}" for k in values if k not in known]
        checked: dict[str, Any] = {}
        for name, kind in known.items():
            if name in values:
                try:
                    checked[name] = coerce(kind, values[name], name)
                except StudyError as err:
                    problems.append(f"{where}: {err}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.name not in values]
        if required:
            problems.append(f"{where}: missing study parameter(s) {', '.join(required)}")
        if problems:
            raise StudyError("\n  ".join(["the study is not valid:", *problems]))
        return cls(**checked)

    @classmethod
    def from_profile(cls, profile: str, overrides: Mapping[str, Any] | None = None,
                     directory: str | Path | None = None) -> "Study":
        """The study of ``book/profiles/<profile>.yml`` with ``overrides`` (fields of :class:`Study`) applied."""
        from kdmed.profiles import load_profile

        loaded = load_profile(profile, directory)
        values = {**loaded.study, "profile": profile}
        where = str(loaded.path)
        if overrides:
            unknown = [k for k in overrides if k not in cls.fields()]
            if unknown:
                raise StudyError(f"override(s) {unknown} are not study parameters; known: {', '.join(cls.fields())}")
            values.update(overrides)
            where += " + overrides"
        return cls.from_mapping(values, where)

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any]) -> "Study":
        """A chapter's study: its ``profile`` plus any study field papermill injected into ``namespace``."""
        overrides = {k: v for k, v in namespace.items() if k in cls.fields() and k != "profile"}
        return cls.from_profile(namespace["profile"], overrides)

    # ------------------------------------------------------------------ data roles
    def _require(self, name: str) -> str:
        value = getattr(self, name)
        if not value:
            raise ValueError(f"setting {self.setting!r} needs the parameter {name} (the dataset's folder)")
        if not Path(value).exists():
            raise FileNotFoundError(f"{name} = {value!r} does not exist; point it at your copy of the dataset")
        return str(value)

    def missing_roots(self) -> list[str]:
        """Root parameters this setting needs that are unset or point nowhere (for a clear error)."""
        need = {"synthetic": [], "chexpert": ["chexpert_root", "nih_root"],
                "chestxray8": ["nih_root", "chexpert_root"]}[self.setting]
        return [f"{n} = {getattr(self, n)!r}" for n in need if not getattr(self, n) or not Path(getattr(self, n)).exists()]

    def target_data(self, train_n: int | None = None, subset_seed: int = 0) -> DataSpec:
        """The small target set: ``train_n`` training images (whole patients), fixed val/test."""
        n = self.target_n if train_n is None else train_n
        common = dict(image_size=self.image_size, train_n=n, val_n=self.val_n, test_n=self.test_n,
                      subset_seed=subset_seed)
        if self.setting == "synthetic":
            return DataSpec(dataset="synthetic-chest", options={"institution": "C"}, **common)
        if self.setting == "chexpert":
            return DataSpec(dataset="chexpert", root=self._require("chexpert_root"), **common)
        return DataSpec(dataset="nih", root=self._require("nih_root"), options={"labels": "chestxray8"}, **common)

    def source_data(self, role: str, train_n: int | None = None) -> DataSpec:
        """A large source split for ``role``:

        * "teacher": the target institution's own large training pool (the in-domain teacher);
        * "other-chest": another chest institution (synthetic B, MIMIC-like; real: the other dataset);
        * "pretrain": the transfer-learning source (synthetic A, NIH-like; real: the other dataset);
        * "fundus": the diabetic-retinopathy domain.
        """
        common = dict(image_size=self.image_size, val_n=self.val_n, test_n=self.test_n)
        if role == "fundus":
            if self.setting == "synthetic":
                return DataSpec(dataset="synthetic-fundus", options={"task": "grade"}, train_n=train_n, **common)
            return DataSpec(dataset=self.dr_dataset, root=self._require("dr_root"), options={"task": "grade"},
                            train_n=train_n, **common)
        if role not in ROLES:
            raise ValueError(f"unknown data role {role!r}; expected one of {', '.join(ROLES)}")
        if self.setting == "synthetic":
            inst = {"teacher": "C", "other-chest": "B", "pretrain": "A"}[role]
            return DataSpec(dataset="synthetic-chest", options={"institution": inst}, train_n=train_n, **common)
        same = {"chexpert": ("chexpert", "chexpert_root", {}), "chestxray8": ("nih", "nih_root", {"labels": "chestxray8"})}
        other = {"chexpert": ("nih", "nih_root", {}), "chestxray8": ("chexpert", "chexpert_root", {})}
        dataset, root, options = (same if role == "teacher" else other)[self.setting]
        return DataSpec(dataset=dataset, root=self._require(root), options=options, train_n=train_n, **common)

    def same_label_space(self, role: str) -> bool:
        """Whether a network trained for ``role`` predicts the target's classes (soft targets need it)."""
        if self.setting == "synthetic":
            return role != "fundus"
        return role == "teacher"

    # ------------------------------------------------------------------ runs
    def train_spec(self, epochs: int | None = None, patience: int | None = None) -> TrainSpec:
        epochs = self.epochs if epochs is None else epochs
        return TrainSpec(epochs=epochs, batch_size=self.batch_size, lr=self.lr,
                         patience=min(epochs, self.patience if patience is None else patience),
                         augment=self.augment, device=self.device)

    def teacher(self, role: str = "teacher", train_n: int | None = -1, arch: str | None = None) -> RunConfig:
        """A teacher trained from scratch on a large source split (``train_n=-1``: the study's ``teacher_n``)."""
        n = self.teacher_n if train_n == -1 else train_n
        return RunConfig(name=f"teacher[{role},n={n or 'all'}]", data=self.source_data(role, n),
                         arch=arch or self.teacher_arch, strategy="scratch",
                         train=self.train_spec(self.teacher_epochs), seed=0)

    def pretrained_init(self, role: str = "pretrain") -> RunConfig:
        """The transfer-learning initialisation: the student's arch trained on another source."""
        return RunConfig(name=f"init[{role},n={self.pretrain_n or 'all'}]", data=self.source_data(role, self.pretrain_n),
                         arch=self.student_arch, strategy="scratch", train=self.train_spec(self.teacher_epochs), seed=0)

    def student(self, method_name: str, train_n: int | None = None, seed: int = 0, *,
                teacher: RunConfig | None = None, init: RunConfig | str | None = None,
                temperature: float | None = None, alpha: float | None = None, epochs: int | None = None,
                patience: int | None = None, label: str | None = None) -> RunConfig:
        """One student run of ``method_name`` (see :data:`kdmed.methods.METHODS`) on ``train_n`` target images."""
        from kdmed.models import default_taps

        m = method(method_name)
        n = self.target_n if train_n is None else train_n
        return RunConfig(
            name=label or f"{method_name}[n={n},seed={seed}]",
            data=self.target_data(n, subset_seed=seed),
            arch=self.student_arch,
            strategy=m.strategy,
            init=(init or self.pretrained_init()) if m.pretrained else "random",
            freeze_through=default_taps(self.student_arch)[2] if m.frozen else None,
            teacher=(teacher or self.teacher()) if m.taught else None,
            temperature=self.temperature if temperature is None else temperature,
            alpha=self.alpha if alpha is None else alpha,
            beta=self.beta,
            train=self.train_spec(epochs, patience),
            seed=seed,
        )

    def store(self, root: str | Path | None = None) -> ResultStore:
        """``results/<profile>/`` at the repository root (or ``$KDMED_RESULTS_DIR``, or ``root``).

        Frozen (render-only) when the builder set ``KDMED_FROZEN=1``.
        """
        root = root or os.environ.get(RESULTS_ENV) or repo_root() / "results" / self.profile
        return ResultStore.from_env(Path(root))

    def run(self, configs: Iterable[RunConfig], labels: Sequence[Mapping[str, Any]] | None = None,
            progress: bool = True) -> pd.DataFrame:
        """Run (or load from the store) ``configs``; ``labels`` adds columns (e.g. method) row by row."""
        from kdmed.grid import run_grid

        configs = list(configs)
        table = run_grid(configs, self.store(), progress=progress)
        if labels is not None:
            extra = pd.DataFrame(list(labels))
            if len(extra) != len(table):
                raise ValueError(f"{len(labels)} label rows for {len(configs)} runs")
            table = pd.concat([table, extra.set_index(table.index)], axis=1)
        return table

    def describe(self) -> dict[str, Any]:
        """What produced a chapter (for its opening box)."""
        data = "synthetic (generated offline; NOT real patients)" if self.setting == "synthetic" else \
            f"real ({self.setting})"
        return {
            "profile": self.profile,
            "data": data,
            "image size": f"{self.image_size} px",
            "student": self.student_arch,
            "teacher": self.teacher_arch,
            "target subset": f"{self.target_n} images (sweep {', '.join(map(str, self.target_sizes))})",
            "teacher / init source": f"{self.teacher_n or 'all'} / {self.pretrain_n or 'all'} images",
            "seeds": ", ".join(map(str, self.seeds)),
            "epochs": f"{self.epochs} (teacher {self.teacher_epochs}), early stop patience {self.patience}",
            "KD": f"T = {self.temperature:g}, alpha = {self.alpha:g}; AT beta = {self.beta:g}",
        }


def coerce(kind: Any, value: Any, name: str) -> Any:
    """``value`` as the field type ``kind`` (int, float, bool, str, ``T | None``, ``tuple[T, ...]``).

    A string given for a list (papermill's ``-p seeds "[0, 1]"``) is read as YAML.
    """
    import yaml

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, name)
    if origin is tuple:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as err:
                raise StudyError(f"{name}: {value!r} is not a YAML list: {err}") from None
        if not isinstance(value, (list, tuple)):
            raise StudyError(f"{name} expects a list, got {type(value).__name__} {value!r}")
        return tuple(coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise StudyError(f"{name} expects true or false, got {type(value).__name__} {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StudyError(f"{name} expects an int, got {type(value).__name__} {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StudyError(f"{name} expects a number, got {type(value).__name__} {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise StudyError(f"{name} expects a string, got {type(value).__name__} {value!r}")
        return value
    raise StudyError(f"{name}: unsupported field type {kind!r}")


def grid(study: Study, methods: Sequence[str], sizes: Sequence[int], seeds: Sequence[int],
         **student_kwargs: Any) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Configs and label rows for methods × sizes × seeds."""
    configs, labels = [], []
    for n in sizes:
        for seed in seeds:
            for name in methods:
                configs.append(study.student(name, n, seed, **student_kwargs))
                labels.append({"method": name})
    return configs, labels


def open_chapter(namespace: Mapping[str, Any]) -> Study:
    """Build the chapter's :class:`Study` from its namespace and glue the opening box's values.

    Glued names: ``box_<key>`` for every entry of :meth:`Study.describe`, with the
    key's spaces and slashes turned into underscores (``box_image_size``...).
    A setting on real data whose folders are missing stops here, listing them.
    """
    from myst_nb import glue

    study = Study.from_namespace(namespace)
    missing = study.missing_roots()
    if missing:
        raise FileNotFoundError(
            f"profile {study.profile!r} (setting {study.setting!r}) needs these dataset folders, which are "
            f"missing: {'; '.join(missing)}. Set them in book/profiles/{study.profile}.yml or with "
            "--param NAME=PATH"
        )
    for key, value in study.describe().items():
        glue(box_name(key), value, display=False)
    return study


def box_name(key: str) -> str:
    return "box_" + key.replace(" / ", "_").replace(" ", "_").replace("/", "_")


def open_split(spec: DataSpec, split: str):
    """The dataset behind ``spec`` for ``split``, without its subsampling and without loading images."""
    from kdmed.data import open_dataset

    return open_dataset(spec.dataset, root=spec.root, split=split, image_size=spec.image_size, **spec.option_dict)


#: teacher domains of the cross-domain chapter: label -> data role (see :meth:`Study.source_data`)
CROSS_DOMAINS: dict[str, str] = {
    "chest, same institution (in-domain)": "teacher",
    "chest, MIMIC-like institution": "other-chest",
    "chest, NIH-like institution": "pretrain",
    "fundus (DR grades)": "fundus",
}


def cross_domain_grid(study: Study, methods: Sequence[str] = CROSS_DOMAIN_METHODS
                      ) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Scratch plus each method taught/initialised from each domain of :data:`CROSS_DOMAINS`, per seed.

    Methods with a KD term are skipped for a domain with another label space (soft
    targets need the student's labels); its teacher can still teach by attention transfer.
    """
    configs, labels = [], []
    for seed in study.seeds:
        configs.append(study.student("scratch", study.target_n, seed))
        labels.append({"domain": "none", "method": "scratch"})
        for domain, role in CROSS_DOMAINS.items():
            teacher, init = study.teacher(role=role), study.pretrained_init(role)
            for name in methods:
                if METHODS[name].uses_kd and not study.same_label_space(role):
                    continue
                configs.append(study.student(name, study.target_n, seed, teacher=teacher, init=init))
                labels.append({"domain": domain, "method": name})
    return configs, labels


def regularization_grid(study: Study, methods: Sequence[str] = REGULARIZATION_METHODS
                        ) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Students at the target size without early stopping (patience = epochs), per seed."""
    configs, labels = [], []
    for seed in study.seeds:
        for name in methods:
            configs.append(study.student(name, study.target_n, seed, patience=study.epochs))
            labels.append({"method": name})
    return configs, labels


def temperature_alpha_grid(study: Study) -> list[RunConfig]:
    """kd students at the target size over the study's T × alpha grid and grid seeds."""
    return [study.student("kd", study.target_n, seed, temperature=T, alpha=a)
            for T in study.temperatures for a in study.alphas for seed in study.grid_seeds]
