"""The study's experiments as run configurations: what every chapter trains.

A :class:`Study` holds the knobs of the study. Their values live in one place, the
profile YAML (``book/profiles/<name>.yml``, section ``study:``):
:meth:`Study.from_profile` reads it and applies overrides (a chapter's papermill
parameters, ``--param`` on the builder's command line), each checked against the
field's type. :class:`Study` has no defaults of its own but for the dataset folders.

The design (what each knob means is in the field comments):

* **Target and pool.** The target domain's training split is cut once, by patient,
  into a large **pool** (teachers learn from it) and a **target** part (the small
  target subsets are drawn from it): a student never shares a patient with its
  teacher, for every seed (:data:`kdmed.config.PARTS`). The other rule -- a teacher
  whose pool overlaps the target subsets -- is measured once, at the headline point.
* **Teachers.** The headline teacher learns from ``teacher_pool_n`` pool images (the
  paper's ratio: 20--45 × the target subset), ``teacher_seeds`` of them (student seed
  ``s`` is taught by teacher ``s mod len``, so the teacher's randomness is in the
  intervals); weaker and stronger teachers (``teacher_pool_sizes``) map the regime.
  Teachers use the student's architecture or a larger one.
* **Transfer-learning inits**, two: **near** (another chest institution, as the
  authors' NIH-pretrained network) and **far** (a distant domain, fundus photographs:
  the stand-in for ImageNet), each ``init_pool_n`` images, ``teacher_seeds`` of them.
* **Arms** (``method@init`` for the methods that start from an init, see
  :data:`kdmed.methods.METHODS`): scratch, kd, at, kd+at; with the near init transfer,
  transfer-frozen, transfer+kd, transfer+at, transfer+kd+at; with the far init transfer,
  transfer-frozen and transfer+kd.
* **Framings** (:data:`CONTRASTS`): *taught from scratch vs transfer* (the abstract's)
  and *the same init with vs without a teacher* (the authors' code), near and far.
* Every run trains until its validation macro-AUC stops improving for ``patience``
  epochs, under a cap (``epochs``) it should never reach.

Settings (``Study.setting``) decide which data plays each role:

================  ==========================  ======================  ===================  ==================  ================
setting           target (student)            teacher pool            near init            other chest         far domain
================  ==========================  ======================  ===================  ==================  ================
``synthetic``     synthetic chest inst. C     inst. C, pool part      inst. A (NIH-like)   inst. B             synthetic fundus
``chexpert``      CheXpert, target part       CheXpert, pool part     NIH ChestX-ray14     not run             DR fundus set
``chestxray8``    NIH ChestX-ray8, target     NIH, pool part          CheXpert             not run             DR fundus set
``medmnist``      ChestMNIST, target part     ChestMNIST, pool part   PneumoniaMNIST       not run             RetinaMNIST
================  ==========================  ======================  ===================  ==================  ================

A role without a dataset of its own is **not run** (never filled with another
role's data: the cross-domain rows would count one network twice). ``far_init``
decides what the far *init* is: ``fundus`` (a network trained on the far domain's
images) or ``imagenet`` (torchvision's ImageNet weights from the local torch hub
cache, as the authors; densenet121/resnet18 only). The far *teacher* of the
cross-domain chapter is always a network of the far domain.

Outputs and labels are matched by class name (:mod:`kdmed.labels`): a chest network
of another label space is scored, and distils, over the findings both share.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from kdmed.config import DataSpec, RunConfig, TrainSpec
from kdmed.methods import method
from kdmed.profiles import ParameterTypeError, coerce
from kdmed.roles import ROOTS, SETTINGS, role_dataset, role_domain
from kdmed.store import ResultStore
from kdmed.utils import repo_root

FAR_INITS = ("fundus", "imagenet")
#: the two transfer-learning initialisations
TRANSFER_INITS = {"near": "another chest institution (NIH-like)", "far": "a distant domain (fundus photographs, the stand-in for ImageNet)"}
#: every domain a network can be pre-trained on for a student (the cross-domain chapter adds a third chest source)
INIT_ROLES = (*TRANSFER_INITS, "other-chest")
#: every arm of the headline comparison, in table order
BASE_ARMS = ("scratch", "kd", "at", "kd+at")
#: with the near init every method; with the far one those the framings and the frozen baseline need
INIT_METHODS = {"near": ("transfer", "transfer-frozen", "transfer+kd", "transfer+at", "transfer+kd+at"),
                "far": ("transfer", "transfer-frozen", "transfer+kd")}
ARMS = BASE_ARMS + tuple(f"{m}@{init}" for init in TRANSFER_INITS for m in INIT_METHODS[init])
#: the gain comparisons: label -> (framing, init, taught arm, baseline arm)
CONTRASTS: dict[str, tuple[str, str, str, str]] = {
    "kd − transfer (near)": ("taught from scratch vs transfer", "near", "kd", "transfer@near"),
    "kd − transfer (far)": ("taught from scratch vs transfer", "far", "kd", "transfer@far"),
    "transfer+kd − transfer (near)": ("same init with vs without a teacher", "near", "transfer+kd@near", "transfer@near"),
    "transfer+kd − transfer (far)": ("same init with vs without a teacher", "far", "transfer+kd@far", "transfer@far"),
    "transfer+at − transfer-frozen (near)": ("the authors' pair", "near", "transfer+at@near", "transfer-frozen@near"),
}
#: arms of the learning curve and of the teacher-strength sweep
CURVE_ARMS = ("scratch", "transfer@near", "transfer@far", "kd", "transfer+kd@near")
SWEEP_ARMS = ("kd", "transfer+kd@near", "transfer+kd@far", "transfer@near", "transfer@far")
RESULTS_ENV = "KDMED_RESULTS_DIR"


class StudyError(ValueError):
    """A profile or an override does not describe a valid study."""


def arm_method(arm: str) -> tuple[str, str | None]:
    """``"transfer+kd@near"`` -> ``("transfer+kd", "near")``; ``"kd"`` -> ``("kd", None)``."""
    name, _, init = arm.partition("@")
    m = method(name)
    if m.pretrained != bool(init) or (init and init not in INIT_ROLES):
        need = "needs an init" if m.pretrained else "starts from random weights: it takes no init"
        raise ValueError(f"arm {arm!r}: {name!r} {need} (inits: {', '.join(INIT_ROLES)}; e.g. 'transfer@near')")
    return name, init or None


@dataclasses.dataclass(frozen=True)
class Study:
    """Every knob of the study; values come from a profile (:meth:`from_profile`)."""

    profile: str
    setting: str
    image_size: int
    student_arch: str
    teacher_arch: str
    #: student taps of attention transfer (the teacher's are the taps at the same stages)
    at_taps: tuple[str, ...]
    #: the headline target subset (the paper's "n = 5k"), its seeds, and the learning curve
    target_n: int
    seeds: tuple[int, ...]
    target_sizes: tuple[int, ...]
    curve_seeds: tuple[int, ...]
    #: the headline teacher's pool and the pools of the strength sweep (includes the headline)
    teacher_pool_n: int
    teacher_pool_sizes: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    #: seeds of the headline teachers and of the inits (student seed s uses teacher/init s mod len)
    teacher_seeds: tuple[int, ...]
    #: training images of each transfer-learning init
    init_pool_n: int
    val_n: int | None
    test_n: int | None
    train_eval_n: int
    #: students: epoch cap and early-stopping patience (validation macro-AUC); teachers/inits the same
    epochs: int
    patience: int
    teacher_epochs: int
    teacher_patience: int
    batch_size: int
    lr: float
    augment: bool
    temperature: float
    alpha: float
    beta: float
    #: the T x alpha grid (picked on validation, reported on test) and its seeds
    temperatures: tuple[float, ...]
    alphas: tuple[float, ...]
    grid_seeds: tuple[int, ...]
    device: str
    dr_dataset: str
    #: the far init: "fundus" (trained on the far domain) or "imagenet" (torchvision weights, local file)
    far_init: str
    #: bootstrap resamples of the confidence intervals (seeds, then patients)
    n_boot: int
    #: where the real datasets lie on this machine (only the real settings use them)
    chexpert_root: str | None = None
    nih_root: str | None = None
    dr_root: str | None = None
    #: the folder of MedMNIST's chestmnist_<size>.npz, pneumoniamnist_<size>.npz, retinamnist_<size>.npz
    medmnist_root: str | None = None

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise StudyError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.far_init not in FAR_INITS:
            raise StudyError(f"far_init must be one of {FAR_INITS}, got {self.far_init!r}")
        for name in ("target_sizes", "seeds", "curve_seeds", "sweep_seeds", "teacher_seeds", "teacher_pool_sizes",
                     "grid_seeds", "temperatures", "alphas", "at_taps"):
            if not getattr(self, name):
                raise StudyError(f"{name} must be a non-empty list, got {getattr(self, name)!r}")
        if self.teacher_pool_n not in self.teacher_pool_sizes:
            raise StudyError(f"teacher_pool_sizes {list(self.teacher_pool_sizes)} must include the headline "
                             f"teacher_pool_n = {self.teacher_pool_n}")
        if self.target_n not in self.target_sizes:
            raise StudyError(f"target_sizes {list(self.target_sizes)} must include target_n = {self.target_n}")

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
                except ParameterTypeError as err:
                    problems.append(f"{where}: {err}")
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.name not in values]
        if required:
            problems.append(f"{where}: missing study parameter(s) {', '.join(required)}")
        if problems:
            raise StudyError("\n  ".join(["the study is not valid:", *problems]))
        try:
            return cls(**checked)
        except StudyError as err:
            raise StudyError(f"the study is not valid:\n  {where}: {err}") from None

    @classmethod
    def from_profile(cls, profile: str, overrides: Mapping[str, Any] | None = None,
                     directory: str | Path | None = None) -> "Study":
        """The study of ``book/profiles/<profile>.yml`` with ``overrides`` (fields of :class:`Study`) applied."""
        from kdmed.profiles import load_profile

        loaded = load_profile(profile, directory)
        values = {**(loaded.study or {}), "profile": profile}
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
        return [f"{n} = {getattr(self, n)!r}" for n in ROOTS[self.setting]
                if not getattr(self, n) or not Path(getattr(self, n)).exists()]

    @property
    def real_data(self) -> bool:
        """Whether this study reads real images (every setting but ``synthetic``)."""
        return self.setting != "synthetic"

    def has_role(self, role: str) -> bool:
        """Whether this setting has a dataset of its own for ``role`` (a role without one is not run)."""
        return role != "other-chest" or self.setting == "synthetic"

    def role_dataset(self, role: str) -> str:
        """The dataset that plays ``role`` (for tables and prose), or "not run"."""
        return role_dataset(self.setting, role, self.dr_dataset)

    def _domain(self, role: str) -> dict[str, Any]:
        """Dataset, root and options of a role: "target", "near", "far" or "other-chest"."""
        if not self.has_role(role):
            raise StudyError(f"setting {self.setting!r} has no dataset for the role {role!r} (only the synthetic "
                             "setting has a third chest institution): it is not run")
        return role_domain(self.setting, role, self._require, self.dr_dataset)

    def data_roles(self) -> dict[str, DataSpec]:
        """The data each role trains on, labelled with its dataset (roles without data are left out)."""
        target = self.role_dataset("target")
        roles = {f"target ({target})": self.target_data(),
                 f"teacher pool ({target})": self.teacher(self.teacher_pool_n).data,
                 f"near init ({self.role_dataset('near')})": self.domain_init("near").data}
        if self.has_role("other-chest"):
            roles[f"other chest ({self.role_dataset('other-chest')})"] = self.domain_init("other-chest").data
        far = "far init" if not self._imagenet("far") else "far-domain teacher"
        roles[f"{far} ({self.role_dataset('far')})"] = self.domain_init("far").data
        return roles

    def _data(self, role: str, train_n: int, subset_seed: int, part: str | None) -> DataSpec:
        return DataSpec(**self._domain(role), image_size=self.image_size, train_n=train_n, val_n=self.val_n,
                        test_n=self.test_n, subset_seed=subset_seed, part=part)

    def target_data(self, train_n: int | None = None, subset_seed: int = 0) -> DataSpec:
        """A small target subset: ``train_n`` images (whole patients) of the target part; fixed val/test."""
        return self._data("target", self.target_n if train_n is None else train_n, subset_seed, "target")

    def can_distil(self, role: str) -> bool:
        """Whether a network of ``role`` shares findings with the target (soft targets need them): the chest roles."""
        return role != "far"

    # ------------------------------------------------------------------ runs
    def train_spec(self, teacher: bool = False) -> TrainSpec:
        return TrainSpec(epochs=self.teacher_epochs if teacher else self.epochs, batch_size=self.batch_size,
                         lr=self.lr, patience=self.teacher_patience if teacher else self.patience,
                         augment=self.augment, train_eval_n=self.train_eval_n, device=self.device)

    def teacher(self, pool_n: int | None = None, seed: int = 0, rule: str = "disjoint") -> RunConfig:
        """An in-domain teacher on ``pool_n`` pool images (``rule="overlapping"``: drawn from the whole split)."""
        n = self.teacher_pool_n if pool_n is None else pool_n
        if rule not in ("disjoint", "overlapping"):
            raise ValueError(f"rule must be 'disjoint' or 'overlapping', got {rule!r}")
        part = "pool" if rule == "disjoint" else None
        suffix = "" if rule == "disjoint" else ",overlapping"
        return RunConfig(name=f"teacher[n={n},seed={seed}{suffix}]", data=self._data("target", n, seed, part),
                         arch=self.teacher_arch, strategy="scratch", train=self.train_spec(teacher=True), seed=seed)

    def domain_teacher(self, role: str, seed: int = 0) -> RunConfig:
        """A teacher from another domain (cross-domain chapter): "other-chest", "near" or "far".

        The near and far teachers are the transfer inits themselves when the teacher's
        architecture is the student's: one network, used both ways.
        """
        if role in TRANSFER_INITS and self.teacher_arch == self.student_arch:
            return self.domain_init(role, seed)
        return RunConfig(name=f"teacher[{role},seed={seed}]", data=self._data(role, self.init_pool_n, seed, None),
                         arch=self.teacher_arch, strategy="scratch", train=self.train_spec(teacher=True), seed=seed)

    def _imagenet(self, role: str) -> bool:
        return role == "far" and self.far_init == "imagenet"

    def init(self, role: str, seed: int = 0) -> RunConfig | str:
        """A transfer-learning initialisation: the student's arch trained on the ``role`` domain.

        The far init is ``"imagenet"`` (torchvision's weights, no run) when ``far_init`` says so.
        """
        if self._imagenet(role):
            return "imagenet"
        return self.domain_init(role, seed)

    def domain_init(self, role: str, seed: int = 0) -> RunConfig:
        """The student's arch trained on the ``role`` domain's images (whatever ``far_init`` says)."""
        if role not in INIT_ROLES:
            raise ValueError(f"unknown init {role!r}; expected one of {', '.join(INIT_ROLES)}")
        return RunConfig(name=f"init[{role},seed={seed}]", data=self._data(role, self.init_pool_n, seed, None),
                         arch=self.student_arch, strategy="scratch", train=self.train_spec(teacher=True), seed=seed)

    def paired_seed(self, seed: int) -> int:
        """The seed of the teacher and init that student seed ``seed`` uses."""
        return self.teacher_seeds[seed % len(self.teacher_seeds)]

    def teacher_for(self, seed: int, pool_n: int | None = None) -> RunConfig:
        """The teacher of student seed ``seed``: headline teachers alternate, sweep teachers are one each."""
        n = self.teacher_pool_n if pool_n is None else pool_n
        return self.teacher(n, self.paired_seed(seed) if n == self.teacher_pool_n else self.teacher_seeds[0])

    def student(self, arm: str, train_n: int | None = None, seed: int = 0, *, teacher: RunConfig | None = None,
                init: RunConfig | None = None, temperature: float | None = None, alpha: float | None = None,
                label: str | None = None) -> RunConfig:
        """One student run of ``arm`` (e.g. ``"kd"``, ``"transfer+at@near"``) on ``train_n`` target images."""
        from kdmed.models import default_taps

        name, init_role = arm_method(arm)
        m = method(name)
        n = self.target_n if train_n is None else train_n
        if m.pretrained:
            init = init or self.init(init_role, self.paired_seed(seed))
        return RunConfig(
            name=label or f"{arm}[n={n},seed={seed}]",
            data=self.target_data(n, subset_seed=seed),
            arch=self.student_arch,
            strategy=m.strategy,
            init=init if m.pretrained else "random",
            freeze_through=default_taps(self.student_arch)[2] if m.frozen else None,
            teacher=(teacher or self.teacher_for(seed)) if m.taught else None,
            temperature=self.temperature if temperature is None else temperature,
            alpha=self.alpha if alpha is None else alpha,
            beta=self.beta,
            taps=self.at_taps if m.uses_at else None,
            train=self.train_spec(),
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
        """Run (or load from the store) ``configs``; ``labels`` adds columns (e.g. arm) row by row."""
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
            f"real ({self.setting}: target {self.role_dataset('target')}, near init {self.role_dataset('near')}, " \
            f"far domain {self.role_dataset('far')})"
        ratio = self.teacher_pool_n / self.target_n
        return {
            "profile": self.profile,
            "data": data,
            "image size": f"{self.image_size} px",
            "student": self.student_arch,
            "teacher": f"{self.teacher_arch} on {self.teacher_pool_n:,} pool images ({ratio:.0f} x the target subset), "
                       f"{len(self.teacher_seeds)} seeds",
            "target subset": f"{self.target_n:,} images, {len(self.seeds)} seeds "
                             f"(learning curve {', '.join(map(str, self.target_sizes))})",
            "inits": f"near and far, {self.init_pool_n:,} images each"
                     + ("; the far init is torchvision's ImageNet weights" if self._imagenet("far") else ""),
            "training": f"until validation AUC stops improving for {self.patience} epochs (cap {self.epochs}; "
                        f"teachers {self.teacher_patience} / {self.teacher_epochs}), Adam lr {self.lr:g}, "
                        f"batch {self.batch_size}",
            "KD": f"T = {self.temperature:g}, alpha = {self.alpha:g}; AT beta = {self.beta:g} at "
                  f"{', '.join(self.at_taps)}",
        }
