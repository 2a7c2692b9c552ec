"""Where the book's sources are, where its build goes, and the errors of a build."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kdmed.utils import repo_root

KERNEL_NAME = "python3"
MANIFEST = "kdmed-manifest.json"


class BookError(RuntimeError):
    """The book cannot be built as asked (layout, kernel, rendering)."""


class ChapterFailed(BookError):
    """A chapter raised while executing; carries the failing cell's error and traceback."""

    def __init__(self, chapter: str, ename: str, evalue: str, traceback: str, notebook: Path | None, cell: str = ""):
        self.chapter, self.ename, self.evalue, self.traceback, self.notebook = chapter, ename, evalue, traceback, notebook
        self.cell = cell
        where = f"\nexecuted notebook with the error: {notebook}" if notebook else ""
        source = f"\nfailing cell:\n{cell}\n" if cell else ""
        super().__init__(f"chapter {chapter!r} failed: {ename}: {evalue}{source}\n{traceback}{where}")


@dataclasses.dataclass(frozen=True)
class BookLayout:
    """Where the book's sources are and where its build goes.

    ``root`` is the working directory the chapters execute in; the tests point a
    layout at a temporary folder.
    """

    root: Path
    book_dir: Path
    config: Path
    toc: Path
    profiles_dir: Path
    build_dir: Path

    @classmethod
    def default(cls, root: str | Path | None = None, build_dir: str | Path | None = None) -> "BookLayout":
        """The repository's layout: ``book/``, ``_config.yml``, ``_toc.yml``, ``book/profiles``, ``_build``."""
        root = Path(root) if root is not None else repo_root()
        build = Path(build_dir) if build_dir is not None else root / "_build"
        return cls(root=root, book_dir=root / "book", config=root / "_config.yml", toc=root / "_toc.yml",
                   profiles_dir=root / "book" / "profiles", build_dir=build)

    @property
    def html_dir(self) -> Path:
        return self.build_dir / "html"

    def executed_dir(self, profile: str) -> Path:
        return self.build_dir / "executed" / profile

    def stage_dir(self, profile: str) -> Path:
        return self.build_dir / "stage" / profile

    def tables_dir(self, profile: str) -> Path:
        """Where the chapters write the tables they offer as CSV downloads (copied into the book)."""
        return self.build_dir / "tables" / profile
