"""Rendering: staging the executed notebooks, jupyter-book, swapping the new HTML in, recovering a killed build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from kdmed.book.execute import _ANSI
from kdmed.book.layout import BookError, BookLayout
from kdmed.book.toc import chapter_sources, filtered_toc, toc_entries
from kdmed.utils import atomic_write_text

def stage(layout: BookLayout, profile: str, executed: Mapping[str, Path]) -> Path:
    """Lay out ``_build/stage/<profile>/``: config, toc, static pages and the executed notebooks."""
    target = layout.stage_dir(profile)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    sources = chapter_sources(layout)
    skip = {layout.profiles_dir.resolve()}
    for path in sorted(layout.book_dir.rglob("*")):
        rel = path.relative_to(layout.book_dir)
        if (path.resolve() in skip or any(p.resolve() in skip for p in path.parents)
                or any(part.startswith((".", "_build", "__pycache__")) for part in rel.parts)
                or path.suffix == ".py" or path.is_dir()):
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / rel)
    for stem, notebook in executed.items():
        (target / f"{stem}.ipynb").parent.mkdir(parents=True, exist_ok=True)
        _write_for_reading(notebook, target / f"{stem}.ipynb")
    if layout.tables_dir(profile).is_dir():
        shutil.copytree(layout.tables_dir(profile), target / "tables")
    shutil.copy2(layout.config, target / "_config.yml")
    missing = set(sources) - set(executed)
    if missing:
        _drop_findings(target, sorted(missing))
    pages = set(toc_entries(layout.toc)) - missing
    (target / "_toc.yml").write_text(filtered_toc(layout.toc, pages) if missing else layout.toc.read_text(encoding="utf-8"),
                                      encoding="utf-8")
    return target


_FINDINGS = re.compile(r"<!-- kdmed:findings -->.*?<!-- /kdmed:findings -->", re.S)


def _drop_findings(stage_dir: Path, missing: Sequence[str]) -> None:
    """In a partial build, replace the pages' findings blocks (they read every chapter) by a note."""
    note = (f"```{{note}}\nWhat this book found appears here once every chapter has been built for this profile "
            f"(not yet: {', '.join(missing)}).\n```\n")
    for page in stage_dir.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        if _FINDINGS.search(text):
            page.write_text(_FINDINGS.sub(lambda _: note, text), encoding="utf-8")


#: cells a reader never needs to see on the page (the notebooks keep them)
HIDDEN_CELL_TAGS = ("parameters", "injected-parameters")


def _write_for_reading(notebook: Path, target: Path) -> None:
    """Copy an executed notebook for rendering, with its parameter cells removed from the page."""
    data = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in data.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in HIDDEN_CELL_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
    target.write_text(json.dumps(data), encoding="utf-8")


def _jupyter_book() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.exists():
        return [str(script)]
    found = shutil.which("jupyter-book")
    if not found:
        raise BookError("jupyter-book is not installed in this environment (pip install jupyter-book==1.0.4.post1)")
    return [found]


def render(layout: BookLayout, profile: str, staged: Path) -> tuple[Path, list[str]]:
    """Render ``staged`` with ``jupyter-book build -W -n --keep-going`` into a temporary folder.

    Returns the new html folder (not yet swapped in) and the warning lines of the
    build log. A failed render raises :class:`BookError` with the warnings and
    leaves ``_build/html`` untouched.
    """
    out = layout.build_dir / f".render-{profile}-{os.getpid()}"
    if out.exists():
        shutil.rmtree(out)
    log_path = layout.build_dir / "logs" / f"render-{profile}.log"
    cmd = [*_jupyter_book(), "build", str(staged), "--path-output", str(out), "-W", "-n", "--keep-going",
           "--builder", "html"]
    proc = subprocess.run(cmd, cwd=staged, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    log = _ANSI.sub("", proc.stdout + proc.stderr)
    atomic_write_text(log_path, log)
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    html = out / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").exists():
        shutil.rmtree(out, ignore_errors=True)
        shown = "\n".join(warnings) or "\n".join(log.splitlines()[-30:])
        raise BookError(f"jupyter-book failed (exit {proc.returncode}); full log: {log_path}\n{shown}")
    return html, warnings


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_leftovers(layout: BookLayout) -> list[str]:
    """Clean up after a build that was killed: returns what it did.

    A kill between the two renames of :func:`swap_html` leaves no ``_build/html`` but a
    ``.html-old-<pid>``: that old book is put back. Render and old-html folders of
    processes that are no longer alive are deleted.
    """
    done = []
    if not layout.build_dir.exists():
        return done
    for path in sorted(layout.build_dir.glob(".html-old-*")) + sorted(layout.build_dir.glob(".render-*")):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid():
            continue  # another build is using it
        if path.name.startswith(".html-old-") and not layout.html_dir.exists():
            os.replace(path, layout.html_dir)
            done.append(f"restored {layout.html_dir} from {path.name}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path.name}")
    return done


def swap_html(layout: BookLayout, new_html: Path) -> Path:
    """Replace ``_build/html`` by ``new_html``: rename the old away, rename the new in, delete the old."""
    target = layout.html_dir
    old = layout.build_dir / f".html-old-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    try:
        os.replace(new_html, target)
    except BaseException:
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target
