"""Book profiles: which study and which papermill parameters each chapter runs with.

A profile is ``book/profiles/<name>.yml``::

    description: one line saying what the profile is for
    study:             # the values of every kdmed.study.Study field (one place for each)
      setting: synthetic
      seeds: [0, 1, 2]
      ...
    chapters:          # optional: parameters a chapter declares itself
      01_data:
        table_rows: 20000

The ``study:`` section is checked by :meth:`kdmed.study.Study.from_mapping` (every
field present, each of its type). A chapter's own parameters are checked against
its ``parameters`` cell (read with :mod:`ast`, never executed): the name must be
declared there and the value must have the type of the declared default (an int
is accepted for a float, a ``None`` default accepts anything). Command-line
overrides (``--param [CHAPTER.]NAME=VALUE``) may name either. Everything is
checked before any chapter runs, and every problem is reported at once, naming
the profile file, the chapter and the parameter.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from kdmed.utils import repo_root

PARAMETERS_TAG = "parameters"
PROFILES_ENV = "KDMED_PROFILES_DIR"
# injected by the builder into every chapter; a profile cannot set it
BUILDER_PARAMETERS = ("profile",)
_PROFILE_KEYS = {"description", "study", "chapters"}
#: the chapter name of an override that applies to every chapter (``--param NAME=VALUE``)
ALL_CHAPTERS = "*"


class ParameterTypeError(ValueError):
    """A value does not have its parameter's type (the message names the parameter)."""


class ProfileError(ValueError):
    """A profile, a chapter's parameters cell or a parameter override is invalid."""


def profiles_dir() -> Path:
    """The folder holding the profile YAML files: ``$KDMED_PROFILES_DIR`` or ``book/profiles``.

    The book builder sets the variable for the chapters it runs, so a chapter reads
    its study from the profile folder the build was validated against.
    """
    env = os.environ.get(PROFILES_ENV)
    return Path(env) if env else repo_root() / "book" / "profiles"


def available_profiles(directory: str | Path | None = None) -> list[str]:
    """Names of the profiles in ``directory`` (default :func:`profiles_dir`), sorted."""
    directory = Path(directory) if directory is not None else profiles_dir()
    return sorted(p.stem for p in directory.glob("*.yml"))


@dataclasses.dataclass(frozen=True)
class Profile:
    """A parsed profile file: its description, study values and per-chapter parameters."""

    name: str
    path: Path
    description: str
    study: dict[str, Any] | None
    chapters: dict[str, dict[str, Any]]


def load_profile(name: str, directory: str | Path | None = None) -> Profile:
    """Read and structurally check profile ``name`` from ``directory``.

    Raises :class:`ProfileError` for an unknown profile (listing the known ones), a
    file that is not valid YAML, unknown top-level keys, or sections that are not
    mappings.
    """
    directory = Path(directory) if directory is not None else profiles_dir()
    path = directory / f"{name}.yml"
    if not path.is_file():
        known = ", ".join(available_profiles(directory)) or "(none)"
        raise ProfileError(f"unknown profile {name!r}: {path} does not exist; known profiles: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping with keys {sorted(_PROFILE_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - _PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"{path}: unknown top-level key(s) {unknown}; expected {sorted(_PROFILE_KEYS)}")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ProfileError(f"{path}: 'description' must be a non-empty string")
    study = data.get("study")
    chapters = data.get("chapters") or {}
    if study is not None and not isinstance(study, dict):
        raise ProfileError(f"{path}: 'study' must be a mapping of study parameter -> value, got {type(study).__name__}")
    if not isinstance(chapters, dict):
        raise ProfileError(f"{path}: 'chapters' must be a mapping of chapter -> parameters, got {type(chapters).__name__}")
    for chapter, params in chapters.items():
        if params is None:
            chapters[chapter] = {}
        elif not isinstance(params, dict):
            raise ProfileError(
                f"{path}: chapter {chapter!r}: expected a mapping of parameter -> value, got {type(params).__name__}"
            )
    return Profile(name=name, path=path, description=description.strip(), study=study,
                   chapters={str(k): dict(v or {}) for k, v in chapters.items()})


def profile_description(name: str, directory: str | Path | None = None) -> str:
    """The description of profile ``name``, or a note saying it is not a known profile.

    Chapters call this for their opening box; a chapter run by hand with a profile
    name that has no file still renders, and says so.
    """
    try:
        return load_profile(name, directory).description
    except ProfileError:
        return f"'{name}' is not a profile in book/profiles (parameters were set by hand)"


def _parameters_cells(path: Path) -> list[tuple[int, str]]:
    """(first line number, source) of every cell tagged ``parameters`` in a Jupytext file."""
    import jupytext

    notebook = jupytext.read(path)
    cells = []
    for cell in notebook.cells:
        if PARAMETERS_TAG in cell.metadata.get("tags", []):
            cells.append((cell, cell.source))
    # jupytext does not keep line numbers; find each cell's header in the file for messages
    lines = path.read_text(encoding="utf-8").splitlines()
    headers = [i + 1 for i, line in enumerate(lines) if line.startswith("# %%") and PARAMETERS_TAG in line]
    return [(headers[k] if k < len(headers) else 0, source) for k, (_, source) in enumerate(cells)]


def chapter_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a chapter declares: name -> literal default, in cell order.

    ``path`` is a Jupytext percent-format notebook with exactly one cell tagged
    ``parameters``; each statement of that cell must be ``name = <literal>`` (or
    ``name: type = <literal>``). Anything else is refused with the file and line.
    """
    path = Path(path)
    cells = _parameters_cells(path)
    if len(cells) != 1:
        raise ProfileError(
            f"{path}: expected exactly one cell tagged {PARAMETERS_TAG!r} "
            f"(`# %% tags=[\"parameters\"]`), found {len(cells)}"
        )
    header, source = cells[0]
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ProfileError(f"{path}: parameters cell (line {header}) is not valid Python: {err}") from err
    params: dict[str, Any] = {}
    for node in tree.body:
        line = header + node.lineno
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value_node = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value_node = node.target.id, node.value
        else:
            raise ProfileError(
                f"{path}:{line}: the parameters cell may only hold `name = <literal>` assignments, "
                f"got {ast.unparse(node)!r}"
            )
        try:
            value = ast.literal_eval(value_node)
            # `name: int | None = 8000` (or Optional[int]) declares an int that may also be None
            if isinstance(node, ast.AnnAssign) and value is not None and "None" in ast.unparse(node.annotation):
                value = Nullable(value)
            params[name] = value
        except ValueError as err:
            raise ProfileError(
                f"{path}:{line}: parameter {name!r} needs a literal default (number, string, bool, None, "
                f"list, dict), got {ast.unparse(value_node)!r}"
            ) from err
    return params


@dataclasses.dataclass(frozen=True)
class Nullable:
    """The default of a parameter annotated ``T | None``: ``value`` of type T, and None is allowed too."""

    value: Any

    def __repr__(self) -> str:
        return repr(self.value)


def type_name(value: Any) -> str:
    """The name used in messages for the type of ``value`` (``None`` -> ``'None'``)."""
    return "None" if value is None else type(value).__name__


def expected_type_name(default: Any) -> str:
    """What a parameter whose default is ``default`` accepts, in words."""
    if default is None:
        return "any"
    if isinstance(default, Nullable):
        return f"{expected_type_name(default.value)} or None"
    if isinstance(default, float):
        return "float (or int)"
    return type_name(default)


def accepts(default: Any, value: Any) -> bool:
    """Whether ``value`` may replace a parameter whose declared default is ``default``."""
    if default is None:
        return True
    if isinstance(default, Nullable):
        return value is None or accepts(default.value, value)
    # bool is a subclass of int: never let True stand for 1 or 1 for True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    for kind in (int, str, list, dict):
        if isinstance(default, kind):
            return isinstance(value, kind)
    return type(value) is type(default)


def _check(where: str, chapter: str, declared: Mapping[str, Any], values: Mapping[str, Any],
           study: Iterable[str] = ()) -> list[str]:
    problems = []
    for name, value in values.items():
        if name in BUILDER_PARAMETERS:
            problems.append(f"{where}: chapter {chapter!r}: parameter {name!r} is set by the builder, not here")
        elif name not in declared:
            known = ", ".join(p for p in declared if p not in BUILDER_PARAMETERS) or "(none)"
            also = f"; study parameters: {', '.join(study)}" if study else ""
            problems.append(
                f"{where}: chapter {chapter!r}: unknown parameter {name!r} "
                f"(not in the chapter's parameters cell; it declares: {known}{also})"
            )
        elif not accepts(declared[name], value):
            problems.append(
                f"{where}: chapter {chapter!r}: parameter {name!r} expects {expected_type_name(declared[name])} "
                f"(default {declared[name]!r}), got {type_name(value)} {value!r}"
            )
    return problems


def resolve_parameters(
    profile: Profile,
    declared: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    study_fields: Iterable[str] = (),
    check_study: Callable[[Profile, Mapping[str, Any], str], list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The papermill parameters of every chapter in ``declared`` under ``profile``.

    ``declared`` maps chapter stem -> its parameters cell (see :func:`chapter_parameters`);
    ``overrides`` maps chapter stem (or :data:`ALL_CHAPTERS`) -> values given on the
    command line, applied last. A name is a study parameter (one of ``study_fields``,
    when the profile has a ``study:`` section; ``check_study(profile, overrides,
    chapter)`` lists what is wrong with the study they make) or one the chapter declares. Each result holds ``profile``, the chapter's profile values and
    the overrides; study values are not repeated there (the chapter reads them from the
    profile). Any problem raises one :class:`ProfileError` listing all.
    """
    overrides = dict(overrides or {})
    every = overrides.pop(ALL_CHAPTERS, {})
    where = str(profile.path)
    problems = []
    known_chapters = ", ".join(declared) or "(none)"
    study_fields = list(study_fields) if profile.study is not None else []
    for chapter in profile.chapters:
        if chapter not in declared:
            problems.append(f"{where}: unknown chapter {chapter!r}; chapters in the book: {known_chapters}")
    for chapter in overrides:
        if chapter not in declared:
            problems.append(f"command line (--param): unknown chapter {chapter!r}; chapters in the book: {known_chapters}")
    resolved: dict[str, dict[str, Any]] = {}
    for chapter, params in declared.items():
        for name in BUILDER_PARAMETERS:
            if name not in params:
                problems.append(
                    f"chapter {chapter!r}: its parameters cell must declare {name!r} (a str, injected by the builder)"
                )
        own = profile.chapters.get(chapter, {})
        problems += _check(where, chapter, params, own)
        given = {**every, **overrides.get(chapter, {})}
        study_given = {k: v for k, v in given.items() if k in study_fields and k not in params}
        problems += _check("command line (--param)", chapter, params,
                           {k: v for k, v in given.items() if k not in study_given}, study_fields)
        if profile.study is not None and check_study is not None:
            problems += check_study(profile, study_given, chapter)
        resolved[chapter] = {"profile": profile.name, **own, **given}
    if problems:
        unique = list(dict.fromkeys(problems))
        raise ProfileError(f"profile {profile.name!r} refused:\n  " + "\n  ".join(unique))
    return resolved


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``CHAPTER.NAME=VALUE`` / ``NAME=VALUE`` strings (VALUE read as a YAML scalar/flow value).

    ``["01_data.table_rows=500", "seeds=[0, 1]"]`` ->
    ``{"01_data": {"table_rows": 500}, "*": {"seeds": [0, 1]}}`` (``*``: every chapter).
    """
    result: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        chapter, dot, name = key.rpartition(".")
        chapter = chapter.strip() if dot else ALL_CHAPTERS
        if not sep or not name.strip() or (dot and not chapter):
            raise ProfileError(f"--param {item!r}: expected NAME=VALUE or CHAPTER.NAME=VALUE, e.g. seeds=[0,1] "
                               "or 03_distillation.temperature=2.0")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ProfileError(f"--param {item!r}: the value is not a valid YAML value: {err}") from err
        result.setdefault(chapter, {})[name.strip()] = value
    return result


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
                raise ParameterTypeError(f"{name}: {value!r} is not a YAML list: {err}") from None
        if not isinstance(value, (list, tuple)):
            raise ParameterTypeError(f"{name} expects a list, got {type(value).__name__} {value!r}")
        return tuple(coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
    if kind is bool:
        if not isinstance(value, bool):
            raise ParameterTypeError(f"{name} expects true or false, got {type(value).__name__} {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterTypeError(f"{name} expects an int, got {type(value).__name__} {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterTypeError(f"{name} expects a number, got {type(value).__name__} {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ParameterTypeError(f"{name} expects a string, got {type(value).__name__} {value!r}")
        return value
    raise ParameterTypeError(f"{name}: unsupported field type {kind!r}")
