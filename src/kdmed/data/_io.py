"""The checks the real loaders share: errors, option checks, table checks, safe paths, file identities.

Every check names the culprit (file, column, row, parameter) and what was expected, so a
broken download is diagnosed from the message alone. Row references use the CSV's data
row (1-based) and its line number in the file (the header is line 1).

This module also owns :data:`SPLITS`, the split names every dataset accepts. Image
decoding lives in :mod:`kdmed.data.images`.
"""

from __future__ import annotations

import os
import posixpath
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

#: the split names every dataset accepts (``open_dataset`` checks them)
SPLITS = ("train", "val", "test")
MISSING_POLICIES = ("raise", "skip")
#: how many missing/offending items an error message lists before summarising
SHOW = 5


class DataError(ValueError):
    """A dataset's files or options do not match what the loader expects."""


class MissingDataError(FileNotFoundError):
    """A dataset folder, table or listed image is absent on disk."""


class DataWarning(UserWarning):
    """Something was dropped or adjusted while opening a dataset (e.g. skipped missing images)."""


# ---------------------------------------------------------------------------- options
def check_choice(dataset: str, parameter: str, value: Any, allowed: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming the parameter and choices."""
    if isinstance(value, (list, dict, set)) or value not in allowed:
        raise DataError(f"{dataset}: {parameter}={value!r} is not allowed; expected one of {tuple(allowed)}")
    return value


def check_fraction(dataset: str, parameter: str, value: Any) -> float:
    """A fraction in ``[0, 1)`` (the share of patients held out)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not 0.0 <= f < 1.0:
        raise DataError(f"{dataset}: {parameter}={value!r} must be a number in [0, 1)")
    return f


def check_fractions(dataset: str, parameter: str, value: Any, n: int) -> tuple[float, ...]:
    """``n`` non-negative fractions summing to 1."""
    try:
        fr = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        fr = ()
    if len(fr) != n or any(not (f >= 0.0) for f in fr) or not np.isclose(sum(fr), 1.0):
        raise DataError(
            f"{dataset}: {parameter}={value!r} must be {n} non-negative fractions summing to 1 "
            f"(for the {'/'.join(SPLITS[:n])} splits)"
        )
    return fr


def require_root(dataset: str, root: str | os.PathLike | None, expected: str) -> Path:
    """The dataset folder as a ``Path``; refuses ``None`` or a missing folder, saying what belongs there."""
    if root is None:
        raise DataError(f"{dataset}: no root given; pass root=<the folder holding {expected}>")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"{dataset}: root folder {path} does not exist; expected a folder holding {expected}")
    return path


def check_nonempty(dataset: str, n: int, what: str) -> None:
    """Refuse a split or filter that leaves no rows."""
    if n == 0:
        raise DataError(f"{dataset}: {what} leaves zero images")


# ---------------------------------------------------------------------------- tables
def row_ref(i: int) -> str:
    """Human reference to data row ``i`` (0-based) of a CSV with one header line."""
    return f"row {i + 1} (line {i + 2})"


def _compression(path: Path) -> str | None:
    # gzip is recognised by content so a label-only root can link to a compressed table
    with open(path, "rb") as fh:
        return "gzip" if fh.read(2) == b"\x1f\x8b" else None


def read_table(
    dataset: str,
    path: Path,
    required: Iterable[str],
    dtype: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read CSV ``path`` (plain or gzip); column names are stripped of surrounding spaces.

    Raises ``FileNotFoundError`` naming the file if absent, :class:`DataError` if it does
    not parse or lacks one of the ``required`` columns (naming the column and the file).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{dataset}: table {path} does not exist")
    try:
        df = pd.read_csv(path, dtype=dtype, compression=_compression(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{dataset}: cannot parse table {path}: {err}") from err
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(f"{dataset}: table {path} has no column {col!r}; its columns are {list(df.columns)}")
    return df


def check_present(dataset: str, df: pd.DataFrame, column: str, path: Path) -> None:
    """Refuse blank cells in ``column``."""
    blank = df[column].isna().to_numpy()
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        raise DataError(f"{dataset}: {path}, {row_ref(i)}, column {column!r} is empty ({int(blank.sum())} empty cells)")


def numeric_column(
    dataset: str,
    df: pd.DataFrame,
    column: str,
    path: Path,
    allowed: Sequence[float],
    allow_blank: bool,
) -> np.ndarray:
    """Column ``column`` as float64 (blank -> NaN), every value checked against ``allowed``."""
    raw = df[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values) & raw.notna().to_numpy()
    bad |= ~np.isnan(values) & ~np.isin(values, np.asarray(allowed, dtype=np.float64))
    if not allow_blank:
        bad |= raw.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        v = raw.iloc[i]
        shown = "blank" if pd.isna(v) else f"{float(v):g}" if isinstance(v, (int, float, np.number)) else repr(str(v))
        allowed_s = ", ".join(f"{a:g}" for a in allowed) + (", blank" if allow_blank else "")
        raise DataError(
            f"{dataset}: {path}, {row_ref(i)}, column {column!r}: value {shown} is not allowed "
            f"(expected one of {allowed_s}; {int(bad.sum())} bad values in that column)"
        )
    return values


def check_unique(dataset: str, values: pd.Series, path: Path, column: str) -> None:
    """Refuse duplicated image ids, naming one duplicate and where it occurs."""
    dup = values.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = values.iloc[rows[0]]
        where = np.flatnonzero((values == first).to_numpy())
        raise DataError(
            f"{dataset}: {path}, column {column!r}: {first!r} appears more than once "
            f"(rows {', '.join(str(int(r) + 1) for r in where[:SHOW])}); "
            f"{int(values[dup].nunique())} duplicated value(s) in all"
        )


# ---------------------------------------------------------------------------- paths
def safe_relpaths(dataset: str, rel: pd.Series, path: Path, column: str) -> list[str]:
    """Normalised relative paths from a table column; absolute paths or ones leaving the root are refused."""
    out = rel.astype(str).tolist()
    suspicious = np.flatnonzero(rel.str.contains("..", regex=False).to_numpy() | rel.str.startswith("/").to_numpy())
    for i in suspicious:
        norm = posixpath.normpath(out[i])
        if norm.startswith("/") or norm == ".." or norm.startswith("../"):
            raise DataError(
                f"{dataset}: {path}, {row_ref(int(i))}, column {column!r}: path {out[i]!r} points outside the "
                "dataset root; expected a path relative to the root"
            )
        out[i] = norm
    return out


def check_plain_names(dataset: str, names: pd.Series, path: Path, column: str) -> None:
    """Refuse ids that are not plain file names (they would address files elsewhere)."""
    s = names.astype(str)
    bad = (s.str.contains("/", regex=False) | s.str.contains("\\", regex=False) | s.isin([".", ".."])).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{dataset}: {path}, {row_ref(i)}, column {column!r}: {s.iloc[i]!r} is not a plain file name "
            "(a path separator or '..' would point outside the image folder)"
        )


def missing_mask(paths: Sequence[str], progress: bool, desc: str) -> np.ndarray:
    """Boolean mask of ``paths`` that are not regular files (one cheap stat each)."""
    from tqdm.auto import tqdm

    isfile = os.path.isfile
    return np.fromiter(
        (not isfile(p) for p in tqdm(paths, desc=desc, unit="file", disable=not progress, leave=False)),
        dtype=bool,
        count=len(paths),
    )


def apply_missing_policy(dataset: str, missing: np.ndarray, paths: Sequence[str], policy: str, listed_in: str) -> int:
    """Raise (policy ``"raise"``) or warn (``"skip"``) about absent images; returns how many are absent."""
    n = int(missing.sum())
    if n == 0:
        return 0
    shown = [paths[i] for i in np.flatnonzero(missing)[:SHOW]]
    msg = (
        f"{dataset}: {n} of {len(paths)} images listed in {listed_in} are missing, e.g. "
        + ", ".join(shown)
        + (" ..." if n > SHOW else "")
    )
    if policy == "raise":
        raise MissingDataError(msg + "; pass missing='skip' to drop them, or check_files=False for label-only use")
    warnings.warn(msg + "; they are skipped (missing='skip')", DataWarning, stacklevel=3)
    return n


def file_identity(path: Path) -> dict[str, Any]:
    """Path, size and modification time of a file (so an edited table changes the cache key)."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def paths_digest(paths: Sequence[str]) -> str:
    """Digest of an ordered list of image paths (identifies which file sits at each row)."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode("utf-8", "surrogateescape") + b"\0")
    return f"{len(paths)}:{h.hexdigest()[:16]}"
