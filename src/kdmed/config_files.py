"""Run configurations from files: one run's fields, named runs and grids in YAML, and grid expansion.

The format of a grid file is :func:`load_configs`'s; ``python -m kdmed.cli run-grid``
trains one.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from kdmed.config import INITS, RunConfig, config_from_dict, replace

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


