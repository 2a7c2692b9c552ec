"""The table of contents: its entries in order, the chapters behind them, and a toc of some of them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kdmed.book.layout import BookError, BookLayout

def stem(entry: str) -> str:
    """A toc file entry without its suffix (``03_distillation.py`` -> ``03_distillation``)."""
    return re.sub(r"\.(py|ipynb|md)$", "", entry)


def toc_entries(toc: str | Path) -> list[str]:
    """Every ``file`` of a jupyter-book ``_toc.yml`` (root first), without suffix, in order."""
    toc = Path(toc)
    if not toc.is_file():
        raise BookError(f"{toc}: table of contents not found")
    data = yaml.safe_load(toc.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or "root" not in data:
        raise BookError(f"{toc}: expected a jupyter-book toc with a 'root' entry")
    entries = [str(data["root"])]

    def walk(items: Any) -> None:
        for item in items or []:
            if not isinstance(item, dict):
                raise BookError(f"{toc}: every entry must be a mapping (file:, chapters:, sections:), got {item!r}")
            if "file" in item:
                entries.append(str(item["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(item.get(key))

    walk([{k: v for k, v in data.items() if k in ("parts", "chapters", "sections")}])
    return [stem(e) for e in entries]


def chapter_sources(layout: BookLayout) -> dict[str, Path]:
    """Chapter stem -> Jupytext ``.py`` source, in toc order; every other toc entry must be a page file."""
    chapters: dict[str, Path] = {}
    for entry in toc_entries(layout.toc):
        source = layout.book_dir / f"{entry}.py"
        if source.is_file():
            chapters[entry] = source
        elif not any((layout.book_dir / f"{entry}{ext}").is_file() for ext in (".md", ".ipynb")):
            raise BookError(f"{layout.toc}: entry {entry!r} has no {entry}.py, {entry}.md or {entry}.ipynb in {layout.book_dir}")
    return chapters


def filtered_toc(toc: Path, keep: set[str]) -> str:
    """The toc with every file entry not in ``keep`` dropped (for a partly executed book)."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))

    def prune(items: list) -> list:
        result = []
        for item in items:
            item = dict(item)
            for key in ("parts", "chapters", "sections"):
                if key in item:
                    item[key] = prune(item[key])
                    if not item[key]:
                        del item[key]
            if "file" in item and stem(str(item["file"])) not in keep:
                continue
            if "file" in item or any(k in item for k in ("chapters", "sections")):
                result.append(item)
        return result

    for key in ("parts", "chapters", "sections"):
        if key in data:
            data[key] = prune(data[key])
            if not data[key]:
                del data[key]
    return yaml.safe_dump(data, sort_keys=False)
