"""The study's experiments as run configurations: what every chapter trains.

A :class:`Study` holds the knobs a profile sets (image size, architectures,
sizes, seeds, epochs, the KD/AT hyper-parameters, and where real data lives).
From it, the functions below build the :class:`kdmed.runner.RunConfig` of every
run of a chapter. Runs are keyed by their full configuration, so a teacher
trained in the teacher chapter is the very same cached run the distillation
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

Other-domain teachers (cross-domain chapter): synthetic institution B (MIMIC-like) or
the other real chest dataset, the fundus (DR) domain, and ImageNet where weights exist.

Methods (what the book compares), each a strategy plus an initialisation:

==================  ===========  ===========================  =======
method              strategy     student init                 teacher
==================  ===========  ===========================  =======
``scratch``         scratch      random                       --
``transfer``        transfer     transfer-learning init       --
``kd``              kd           random                       yes
``at``              at           random                       yes
``kd+at``           kd+at        random                       yes
``transfer+kd``     kd           transfer-learning init       yes
==================  ===========  ===========================  =======
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from kdmed.runner import DataSpec, ResultStore, RunConfig, TrainSpec, run_grid
from kdmed.utils import repo_root

SETTINGS = ("synthetic", "chexpert", "chestxray8")
ROLES = ("teacher", "other-chest", "pretrain", "fundus")
METHODS: dict[str, tuple[str, bool, bool]] = {
    # method -> (strategy, pre-trained init, teacher)
    "scratch": ("scratch", False, False),
    "transfer": ("transfer", True, False),
    "kd": ("kd", False, True),
    "at": ("at", False, True),
    "kd+at": ("kd+at", False, True),
    "transfer+kd": ("kd", True, True),
}


@dataclasses.dataclass(frozen=True)
class Study:
    """Every knob of the study; a profile sets them through the chapters' parameters."""

    profile: str = "default"
    setting: str = "synthetic"
    image_size: int = 64
    student_arch: str = "small_cnn"
    teacher_arch: str = "small_densenet"
    #: training images of the teacher's source and of the transfer-learning init (None = whole split)
    teacher_n: int | None = 8000
    pretrain_n: int | None = 8000
    #: the small target subset ("n = 5k" in the paper) and the learning-curve sizes
    target_n: int = 1000
    target_sizes: tuple[int, ...] = (250, 500, 1000, 2000)
    val_n: int | None = 1000
    test_n: int | None = 2000
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 20
    teacher_epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 5
    augment: bool = True
    temperature: float = 4.0
    alpha: float = 0.5
    beta: float = 0.2
    device: str = "auto"
    chexpert_root: str | None = None
    nih_root: str | None = None
    dr_root: str | None = None
    dr_dataset: str = "aptos"
    results_dir: str | None = None

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        for name in ("target_sizes", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (int, str)) or not len(value):
                raise ValueError(f"{name} must be a non-empty list, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Study":
        """Build from a chapter's namespace (e.g. ``globals()``), taking only the fields it knows."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

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

    def student(self, method: str, train_n: int | None = None, seed: int = 0, *, teacher: RunConfig | None = None,
                init: RunConfig | None = None, temperature: float | None = None, alpha: float | None = None,
                epochs: int | None = None, patience: int | None = None, label: str | None = None) -> RunConfig:
        """One student run of ``method`` (see :data:`METHODS`) on ``train_n`` target images."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        strategy, pretrained, taught = METHODS[method]
        n = self.target_n if train_n is None else train_n
        return RunConfig(
            name=label or f"{method}[n={n},seed={seed}]",
            data=self.target_data(n, subset_seed=seed),
            arch=self.student_arch,
            strategy=strategy,
            init=(init or self.pretrained_init()) if pretrained else "random",
            teacher=(teacher or self.teacher()) if taught else None,
            temperature=self.temperature if temperature is None else temperature,
            alpha=self.alpha if alpha is None else alpha,
            beta=self.beta,
            train=self.train_spec(epochs, patience),
            seed=seed,
        )

    def store(self) -> ResultStore:
        """``results/<profile>/`` at the repository root (or ``results_dir``)."""
        return ResultStore(Path(self.results_dir) if self.results_dir else repo_root() / "results" / self.profile)

    def run(self, configs: Iterable[RunConfig], labels: Sequence[Mapping[str, Any]] | None = None,
            progress: bool = True) -> pd.DataFrame:
        """Run (or load from the cache) ``configs``; ``labels`` adds columns (e.g. method) row by row."""
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

    def describe_markdown(self) -> str:
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.describe().items())
        return "| setting | value |\n| --- | --- |\n" + rows


def grid(study: Study, methods: Sequence[str], sizes: Sequence[int], seeds: Sequence[int],
         **student_kwargs: Any) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Configs and label rows for methods × sizes × seeds."""
    configs, labels = [], []
    for n in sizes:
        for seed in seeds:
            for method in methods:
                configs.append(study.student(method, n, seed, **student_kwargs))
                labels.append({"method": method})
    return configs, labels


def open_chapter(params: Mapping[str, Any]) -> Study:
    """Build the chapter's :class:`Study` from its parameters and glue the opening box's values.

    Glued names: ``box_<key>`` for every entry of :meth:`Study.describe`, with the
    key's spaces and slashes turned into underscores (``box_image_size``...).
    A setting on real data whose folders are missing stops here, listing them.
    """
    from myst_nb import glue

    study = Study.from_params(params)
    missing = study.missing_roots()
    if missing:
        raise FileNotFoundError(
            f"profile {study.profile!r} (setting {study.setting!r}) needs these dataset folders, which are "
            f"missing: {'; '.join(missing)}. Set them in book/profiles/{study.profile}.yml or with "
            "--param CHAPTER.NAME=PATH"
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


def cross_domain_grid(study: Study, methods: Sequence[str]) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Scratch plus each method taught/initialised from each domain of :data:`CROSS_DOMAINS`, per seed.

    kd and kd+at are skipped for a domain with another label space (soft targets need
    the student's labels); its teacher can still teach by attention transfer.
    """
    configs, labels = [], []
    for seed in study.seeds:
        configs.append(study.student("scratch", study.target_n, seed))
        labels.append({"domain": "none", "method": "scratch"})
        for domain, role in CROSS_DOMAINS.items():
            teacher, init = study.teacher(role=role), study.pretrained_init(role)
            for method in methods:
                if method in ("kd", "kd+at", "transfer+kd") and not study.same_label_space(role):
                    continue
                configs.append(study.student(method, study.target_n, seed, teacher=teacher, init=init))
                labels.append({"domain": domain, "method": method})
    return configs, labels


def regularization_grid(study: Study, methods: Sequence[str]) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Students at the target size without early stopping (patience = epochs), per seed."""
    configs, labels = [], []
    for seed in study.seeds:
        for method in methods:
            configs.append(study.student(method, study.target_n, seed, patience=study.epochs))
            labels.append({"method": method})
    return configs, labels
