"""Build the kdmed book: validate a profile, execute the chapters, render, check.

``python -m kdmed.book build --profile smoke [--chapters 01_data,02_teacher] [--param 01_data.key=value ...]``
validates every parameter first (see :mod:`kdmed.profiles`), then executes each
chapter of ``_toc.yml`` in order with papermill (cwd = repository root, the
``python3`` kernel of this environment) into ``_build/executed/<profile>/``,
stages the executed notebooks beside ``_config.yml``/``_toc.yml``/static pages in
``_build/stage/<profile>/``, renders them with ``jupyter-book build -W -n
--keep-going`` into a temporary folder and only then swaps it in as
``_build/html``. ``check-html`` verifies the rendered pages; ``validate`` only checks
a profile.

The package's modules, one job each: :mod:`~kdmed.book.layout` (paths, errors),
:mod:`~kdmed.book.toc`, :mod:`~kdmed.book.execute` (validation, papermill),
:mod:`~kdmed.book.render` (stage, jupyter-book, swap), :mod:`~kdmed.book.html_check`,
:mod:`~kdmed.book.browser`, :mod:`~kdmed.book.builder` and :mod:`~kdmed.book.cli`.
"""

from kdmed.book.builder import BuildResult, build
from kdmed.book.cli import main
from kdmed.book.execute import check_config, check_kernel, execute_chapter, validate
from kdmed.book.html_check import HtmlReport, check_html, notebook_facts
from kdmed.book.layout import KERNEL_NAME, MANIFEST, BookError, BookLayout, ChapterFailed
from kdmed.book.render import HIDDEN_CELL_TAGS, recover_leftovers, render, stage, swap_html
from kdmed.book.toc import chapter_sources, filtered_toc, toc_entries

__all__ = ["BookError", "BookLayout", "BuildResult", "ChapterFailed", "HIDDEN_CELL_TAGS", "HtmlReport", "KERNEL_NAME",
           "MANIFEST", "build", "chapter_sources", "check_config", "check_html", "check_kernel", "execute_chapter",
           "filtered_toc", "main", "notebook_facts", "recover_leftovers", "render", "stage", "swap_html",
           "toc_entries", "validate"]
