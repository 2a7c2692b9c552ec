"""The study's grids of runs: each experiment a list of run configs with one label row per run.

Every chapter (and the conclusions, which only read) builds its runs here, so the
same run is the same config wherever it appears: the headline arms are also the
learning curve's and the sweep's points at the headline size and strength.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import pandas as pd

from kdmed.config import RunConfig
from kdmed.study import ARMS, CURVE_ARMS, SWEEP_ARMS, TRANSFER_INITS, Study

#: teacher domains of the cross-domain chapter: role -> label (the in-domain teacher is the reference)
DOMAINS = {
    "other-chest": "chest, another institution (MIMIC-like)",
    "near": "chest, the near init's institution (NIH-like)",
    "far": "fundus photographs (DR grades)",
}


@dataclasses.dataclass
class Grid:
    """Run configs and a label row per run (arm, n, seed and what else the experiment varies)."""

    configs: list[RunConfig]
    labels: list[dict[str, Any]]

    def __post_init__(self) -> None:
        if len(self.configs) != len(self.labels):
            raise ValueError(f"{len(self.configs)} configs for {len(self.labels)} label rows")

    def __len__(self) -> int:
        return len(self.configs)

    def __iter__(self) -> Iterator[tuple[RunConfig, dict[str, Any]]]:
        return iter(zip(self.configs, self.labels))

    def frame(self) -> pd.DataFrame:
        """The label rows with each run's config beside them (column ``cfg``)."""
        return pd.DataFrame(self.labels).assign(cfg=self.configs)

    def select(self, **where: Any) -> "Grid":
        """The runs whose labels equal every ``where`` value."""
        keep = [(c, lab) for c, lab in self if all(lab.get(k) == v for k, v in where.items())]
        return Grid([c for c, _ in keep], [lab for _, lab in keep])

    def __add__(self, other: "Grid") -> "Grid":
        return Grid(self.configs + other.configs, self.labels + other.labels)


def _arm_grid(study: Study, arms, sizes, seeds, **label: Any) -> Grid:
    configs, labels = [], []
    for n in sizes:
        for seed in seeds:
            for arm in arms:
                configs.append(study.student(arm, n, seed))
                labels.append({"arm": arm, "n": n, "seed": seed, **label})
    return Grid(configs, labels)


def headline(study: Study) -> Grid:
    """Every arm at the headline target size, every seed, the headline teachers."""
    return _arm_grid(study, ARMS, [study.target_n], study.seeds, pool=study.teacher_pool_n)


def learning_curve(study: Study) -> Grid:
    """The curve's arms at every target size (the headline size's runs are the headline's)."""
    return _arm_grid(study, CURVE_ARMS, study.target_sizes, study.curve_seeds, pool=study.teacher_pool_n)


def teachers(study: Study) -> Grid:
    """Every teacher and init the study trains, labelled by role."""
    configs, labels = [], []
    for pool in study.teacher_pool_sizes:
        seeds = study.teacher_seeds if pool == study.teacher_pool_n else study.teacher_seeds[:1]
        for seed in seeds:
            configs.append(study.teacher(pool, seed))
            labels.append({"role": "teacher", "pool": pool, "seed": seed})
    for role in TRANSFER_INITS:
        for seed in study.teacher_seeds:
            init = study.init(role, seed)
            if isinstance(init, RunConfig):  # an ImageNet init is torchvision's weights: nothing to train
                configs.append(init)
                labels.append({"role": f"{role} init", "pool": study.init_pool_n, "seed": seed})
    return Grid(configs, labels)


def strength_sweep(study: Study) -> Grid:
    """The sweep's arms taught by each teacher strength (pool size), at the headline target size."""
    configs, labels = [], []
    for pool in study.teacher_pool_sizes:
        for seed in study.sweep_seeds:
            for arm in SWEEP_ARMS:
                teacher = study.teacher_for(seed, pool)
                cfg = study.student(arm, study.target_n, seed, teacher=teacher)
                configs.append(cfg)
                labels.append({"arm": arm, "n": study.target_n, "seed": seed, "pool": pool,
                               "teacher": cfg.teacher.name if cfg.teacher is not None else None})
    return Grid(configs, labels)


def domain_roles(study: Study) -> dict[str, str]:
    """The cross-domain chapter's teacher domains this setting has data for: role -> label."""
    if not study.real_data:
        return {r: lab for r, lab in DOMAINS.items() if study.has_role(r)}
    return {r: f"{study.role_dataset(r)} ({'chest, another institution' if r != 'far' else 'fundus, DR grades'})"
            for r in DOMAINS if study.has_role(r)}


def cross_domain(study: Study) -> Grid:
    """Per teacher domain with data: transfer from it, kd from it (shared findings only), at from it.

    Fine-tuning from the far domain uses the far domain's network (not an ImageNet
    init): the chapter compares the ways of using one network.
    """
    configs, labels = [], []
    for seed in study.sweep_seeds:
        for role, label in domain_roles(study).items():
            # the headline inits alternate with the seed; another institution's network is one
            pair = study.paired_seed(seed) if role in TRANSFER_INITS else study.teacher_seeds[0]
            teacher = study.domain_teacher(role, pair)
            arms = ["transfer", "kd", "at"] if study.can_distil(role) else ["transfer", "at"]
            for name in arms:
                arm = f"transfer@{role}" if name == "transfer" else name
                init = study.domain_init(role, pair) if name == "transfer" else None
                configs.append(study.student(arm, study.target_n, seed, teacher=None if name == "transfer" else teacher,
                                             init=init, label=f"{name}[from {role},n={study.target_n},seed={seed}]"))
                labels.append({"domain": label, "role": role, "method": name, "seed": seed})
    return Grid(configs, labels)


def temperature_alpha(study: Study) -> Grid:
    """kd students over the T × alpha grid (picked on validation, reported on test)."""
    configs, labels = [], []
    for T in study.temperatures:
        for a in study.alphas:
            for seed in study.grid_seeds:
                configs.append(study.student("kd", study.target_n, seed, temperature=T, alpha=a))
                labels.append({"temperature": T, "alpha": a, "seed": seed})
    return Grid(configs, labels)


def overlap_rule(study: Study) -> Grid:
    """The other pool rule at the headline point: one teacher whose pool may overlap the target subsets."""
    configs, labels = [], []
    teacher = study.teacher(study.teacher_pool_n, study.teacher_seeds[0], rule="overlapping")
    for seed in study.seeds:
        for arm in ("kd", "transfer+kd@near"):
            configs.append(study.student(arm, study.target_n, seed, teacher=teacher,
                                         label=f"{arm}[n={study.target_n},seed={seed},overlapping teacher]"))
            labels.append({"arm": arm, "seed": seed, "rule": "overlapping"})
    return Grid(configs, labels)


def everything(study: Study) -> Grid:
    """Every run the book trains (for a cold build's plan and the frozen check)."""
    return (teachers(study) + headline(study) + learning_curve(study) + strength_sweep(study)
            + cross_domain(study) + temperature_alpha(study) + overlap_rule(study))
