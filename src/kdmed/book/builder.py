"""A build: validate, execute every chapter (showing their runs' progress), render, swap in, write the manifest."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from kdmed.book.execute import check_config, check_kernel, execute_chapter, validate
from kdmed.book.html_check import notebook_facts
from kdmed.book.layout import MANIFEST, BookLayout
from kdmed.book.render import recover_leftovers, render, stage, swap_html
from kdmed.book.toc import chapter_sources
from kdmed.grid import EPOCHS_ENV
from kdmed.page import TABLES_ENV
from kdmed.profiles import PROFILES_ENV
from kdmed.progress import PROGRESS_ENV
from kdmed.progress import Tail
from kdmed.store import FROZEN_ENV
from kdmed.utils import atomic_write_json

@dataclasses.dataclass
class BuildResult:
    """What a build did: the html folder, seconds per chapter, chapters left out of the book."""

    html_dir: Path
    seconds: dict[str, float]
    render_seconds: float
    not_executed: list[str]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build(
    profile: str,
    chapters: Sequence[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    layout: BookLayout | None = None,
    progress: bool = False,
    frozen: bool = False,
) -> BuildResult:
    """Validate, execute the chapters (all, or ``chapters``) in toc order, render, swap in ``_build/html``.

    ``frozen``: a render-only build: the chapters' results stores refuse to train, so a
    missing or stale run fails the chapter with the list of runs. What the chapters'
    runs do (reused, trained, stale and why, progress with an estimate) is printed as it
    happens (:mod:`kdmed.progress`).

    Chapters not executed in this call are rendered from their last successful run
    in ``_build/executed/<profile>/`` when there is one, and left out otherwise.
    Raises :class:`ProfileError` before anything runs, :class:`ChapterFailed` on the
    first failing chapter and :class:`BookError` when rendering fails; in each case
    the previous ``_build/html`` is untouched.
    """
    layout = layout or BookLayout.default()
    loaded, params = validate(layout, profile, overrides, chapters)
    for line in recover_leftovers(layout):
        _log(f"previous build was interrupted: {line}")
    check_config(layout)
    check_kernel()
    sources = chapter_sources(layout)
    out_dir = layout.executed_dir(profile)
    seconds: dict[str, float] = {}
    progress_file = layout.build_dir / "logs" / f"runs-{profile}.log"
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    env = {FROZEN_ENV: "1" if frozen else "0", PROGRESS_ENV: str(progress_file),
           EPOCHS_ENV: "1" if sys.stderr.isatty() else "0",
           PROFILES_ENV: str(layout.profiles_dir), TABLES_ENV: str(layout.tables_dir(profile))}
    for i, (stem, values) in enumerate(params.items(), start=1):
        _log(f"[{i}/{len(params)}] {stem}: executing ({', '.join(f'{k}={v!r}' for k, v in values.items())})"
             + (" [frozen: render only]" if frozen else ""))
        start = time.perf_counter()
        try:
            with Tail(progress_file, lambda line, stem=stem: _log(f"    {stem}: {line}")):
                execute_chapter(layout, stem, sources[stem], values, out_dir, progress=progress, env=env)
        finally:
            seconds[stem] = time.perf_counter() - start
        _log(f"[{i}/{len(params)}] {stem}: done in {seconds[stem]:.1f} s")
    executed = {stem: out_dir / f"{stem}.ipynb" for stem in sources if (out_dir / f"{stem}.ipynb").exists()}
    not_executed = [stem for stem in sources if stem not in executed]
    if not_executed:
        _log(f"note: never executed for profile {profile!r}, left out of the book: {', '.join(not_executed)}")
    staged = stage(layout, profile, executed)
    _log(f"rendering {len(executed)} chapter(s) with jupyter-book ...")
    start = time.perf_counter()
    new_html, warnings = render(layout, profile, staged)
    render_seconds = time.perf_counter() - start
    manifest = {
        "profile": profile,
        "description": loaded.description,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "warnings": warnings,
        "not_executed": not_executed,
        "chapters": {
            stem: {"page": f"{stem}.html", "seconds": round(seconds[stem], 2) if stem in seconds else None,
                   "parameters": parameters, "setting": _setting(parameters, layout), **notebook_facts(path)}
            for stem, path in executed.items() for parameters in [_notebook_parameters(path)]
        },
    }
    atomic_write_json(new_html / MANIFEST, manifest)
    html = swap_html(layout, new_html)
    shutil.rmtree(new_html.parent.parent, ignore_errors=True)
    _log(f"rendered in {render_seconds:.1f} s: {html / 'index.html'}")
    return BuildResult(html, seconds, render_seconds, not_executed)


def _notebook_parameters(path: Path) -> dict[str, Any]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return notebook.get("metadata", {}).get("papermill", {}).get("parameters", {})


def _setting(parameters: Mapping[str, Any], layout: BookLayout) -> str | None:
    """The data setting a chapter ran with (its profile plus its study overrides); None when unknown."""
    from kdmed.study import Study

    try:
        overrides = {k: v for k, v in parameters.items() if k in Study.fields() and k != "profile"}
        return Study.from_profile(parameters["profile"], overrides, directory=layout.profiles_dir).setting
    except Exception:  # a chapter without a study profile (none today): nothing to check
        return None
