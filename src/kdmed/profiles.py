"""Book profiles: which papermill parameters each chapter runs with.

A profile is ``book/profiles/<name>.yml``::

    description: one line saying what the profile is for
    common:            # optional: merged into every chapter that declares the parameter
      seed: 0
    chapters:
      01_data:
        table_rows: 20000

Every parameter is checked against the chapter's ``parameters`` cell (read with
:mod:`ast`, never executed): the name must be declared there and the value must
have the type of the declared default (an int is accepted for a float, a ``None``
default accepts anything). Everything is checked before any chapter runs, and
every problem is reported at once, naming the profile file, the chapter and the
parameter. Adding a parameter is two edits: the chapter's parameters cell and the
profile YAML.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from kdmed.utils import repo_root

PARAMETERS_TAG = "parameters"
# injected by the builder into every chapter; a profile cannot set it
BUILDER_PARAMETERS = ("profile",)
_PROFILE_KEYS = {"description", "common", "chapters"}


class ProfileError(ValueError):
    """A profile, a chapter's parameters cell or a parameter override is invalid."""


def profiles_dir() -> Path:
    """The folder holding the profile YAML files (``book/profiles``)."""
    return repo_root() / "book" / "profiles"


def available_profiles(directory: str | Path | None = None) -> list[str]:
    """Names of the profiles in ``directory`` (default :func:`profiles_dir`), sorted."""
    directory = Path(directory) if directory is not None else profiles_dir()
    return sorted(p.stem for p in directory.glob("*.yml"))


@dataclasses.dataclass(frozen=True)
class Profile:
    """A parsed profile file: its description, common parameters and per-chapter parameters."""

    name: str
    path: Path
    description: str
    common: dict[str, Any]
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
    common = data.get("common") or {}
    chapters = data.get("chapters") or {}
    if not isinstance(common, dict):
        raise ProfileError(f"{path}: 'common' must be a mapping of parameter -> value, got {type(common).__name__}")
    if not isinstance(chapters, dict):
        raise ProfileError(f"{path}: 'chapters' must be a mapping of chapter -> parameters, got {type(chapters).__name__}")
    for chapter, params in chapters.items():
        if params is None:
            chapters[chapter] = {}
        elif not isinstance(params, dict):
            raise ProfileError(
                f"{path}: chapter {chapter!r}: expected a mapping of parameter -> value, got {type(params).__name__}"
            )
    return Profile(name=name, path=path, description=description.strip(), common=common,
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


def _check(where: str, chapter: str, declared: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, value in values.items():
        if name in BUILDER_PARAMETERS:
            problems.append(f"{where}: chapter {chapter!r}: parameter {name!r} is set by the builder, not here")
        elif name not in declared:
            known = ", ".join(p for p in declared if p not in BUILDER_PARAMETERS) or "(none)"
            problems.append(
                f"{where}: chapter {chapter!r}: unknown parameter {name!r} "
                f"(not in the chapter's parameters cell; it declares: {known})"
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
) -> dict[str, dict[str, Any]]:
    """The papermill parameters of every chapter in ``declared`` under ``profile``.

    ``declared`` maps chapter stem -> its parameters cell (see :func:`chapter_parameters`);
    ``overrides`` maps chapter stem -> values given on the command line, applied last.
    Each result holds ``profile`` plus the common values the chapter declares, the
    chapter's own profile values and the overrides. Any problem (unknown chapter,
    unknown parameter, wrong type, a common parameter no chapter declares, a chapter
    without a ``profile`` parameter) raises one :class:`ProfileError` listing all.
    """
    overrides = overrides or {}
    where = str(profile.path)
    problems = []
    known_chapters = ", ".join(declared) or "(none)"
    for chapter in profile.chapters:
        if chapter not in declared:
            problems.append(f"{where}: unknown chapter {chapter!r}; chapters in the book: {known_chapters}")
    for chapter in overrides:
        if chapter not in declared:
            problems.append(f"command line (--param): unknown chapter {chapter!r}; chapters in the book: {known_chapters}")
    for chapter, params in declared.items():
        for name in BUILDER_PARAMETERS:
            if name not in params:
                problems.append(
                    f"chapter {chapter!r}: its parameters cell must declare {name!r} (a str, injected by the builder)"
                )
    for name, value in profile.common.items():
        users = [c for c, params in declared.items() if name in params]
        if name in BUILDER_PARAMETERS:
            problems.append(f"{where}: common: parameter {name!r} is set by the builder, not here")
        elif not users:
            problems.append(f"{where}: common: parameter {name!r} is declared by no chapter")
        for chapter in users:
            problems += _check(f"{where} (common)", chapter, {name: declared[chapter][name]}, {name: value})
    for chapter, values in profile.chapters.items():
        if chapter in declared:
            problems += _check(where, chapter, declared[chapter], values)
    for chapter, values in overrides.items():
        if chapter in declared:
            problems += _check("command line (--param)", chapter, declared[chapter], values)
    if problems:
        raise ProfileError(f"profile {profile.name!r} refused:\n  " + "\n  ".join(problems))
    resolved = {}
    for chapter, params in declared.items():
        values: dict[str, Any] = {"profile": profile.name}
        values.update({k: v for k, v in profile.common.items() if k in params})
        values.update(profile.chapters.get(chapter, {}))
        values.update(overrides.get(chapter, {}))
        resolved[chapter] = values
    return resolved


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``CHAPTER.NAME=VALUE`` strings (VALUE read as a YAML scalar/flow value).

    ``["01_data.table_rows=500"]`` -> ``{"01_data": {"table_rows": 500}}``.
    """
    result: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        chapter, dot, name = key.partition(".")
        if not sep or not dot or not chapter or not name:
            raise ProfileError(f"--param {item!r}: expected CHAPTER.NAME=VALUE, e.g. 01_data.table_rows=500")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ProfileError(f"--param {item!r}: the value is not a valid YAML value: {err}") from err
        result.setdefault(chapter.strip(), {})[name.strip()] = value
    return result


def missing_paths(paths: Mapping[str, str | Path | None]) -> list[str]:
    """``"name: path"`` for each entry of ``paths`` that is unset or does not exist."""
    missing = []
    for name, value in paths.items():
        if not value:
            missing.append(f"{name}: (not set)")
        elif not Path(value).expanduser().exists():
            missing.append(f"{name}: {value}")
    return missing


def require_paths(paths: Mapping[str, str | Path | None], hint: str = "") -> None:
    """Raise :class:`FileNotFoundError` listing every missing path of ``paths`` at once."""
    missing = missing_paths(paths)
    if missing:
        lines = "\n  ".join(missing)
        raise FileNotFoundError(
            f"{len(missing)} dataset path(s) missing:\n  {lines}" + (f"\n{hint}" if hint else "")
        )
