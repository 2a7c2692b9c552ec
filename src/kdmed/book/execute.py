"""Running the chapters: validating a profile against them, the kernel, papermill."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kdmed.book.layout import KERNEL_NAME, BookError, BookLayout, ChapterFailed
from kdmed.book.toc import chapter_sources
from kdmed.profiles import Profile, ProfileError, chapter_parameters, load_profile, resolve_parameters
from kdmed.study import Study, StudyError
from kdmed.utils import atomic_path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

def validate(
    layout: BookLayout,
    profile: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    only: Sequence[str] | None = None,
) -> tuple[Profile, dict[str, dict[str, Any]]]:
    """Check ``profile`` (and command-line ``overrides``) against every chapter; run nothing.

    Returns the profile and the parameters of the chapters to run (all, or ``only``
    in toc order). Raises :class:`ProfileError` naming every problem.
    """
    sources = chapter_sources(layout)
    declared = {stem: chapter_parameters(path) for stem, path in sources.items()}
    loaded = load_profile(profile, layout.profiles_dir)
    resolved = resolve_parameters(loaded, declared, overrides, Study.fields(), _study_problems)
    if only:
        unknown = [c for c in only if c not in sources]
        if unknown:
            raise ProfileError(f"--chapters: unknown chapter(s) {unknown}; chapters in the book: {', '.join(sources)}")
        resolved = {c: p for c, p in resolved.items() if c in only}
    return loaded, resolved


def _study_problems(profile: Profile, overrides: Mapping[str, Any], chapter: str) -> list[str]:
    """What is wrong with the study that ``profile`` plus a chapter's ``overrides`` make (empty when valid)."""
    where = str(profile.path) + (f" with --param for {chapter}" if overrides else "")
    try:
        Study.from_mapping({**profile.study, **overrides, "profile": profile.name}, where)
    except StudyError as err:
        return [line.strip() for line in str(err).splitlines()[1:]]
    return []


def check_config(layout: BookLayout) -> None:
    """Refuse a ``_config.yml`` that would make jupyter-book execute the notebooks again."""
    if not layout.config.is_file():
        raise BookError(f"{layout.config}: book configuration not found")
    config = yaml.safe_load(layout.config.read_text(encoding="utf-8")) or {}
    mode = (config.get("execute") or {}).get("execute_notebooks", "auto")
    if mode not in ("off", False):  # YAML 1.1 reads a bare off as False
        raise BookError(
            f"{layout.config}: execute.execute_notebooks must be \"off\" (the builder executes the chapters "
            f"with papermill and jupyter-book renders them as they are), got {mode!r}"
        )


def check_kernel() -> None:
    """Refuse to run when the ``python3`` kernel would start another interpreter than this one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as err:
        raise BookError(
            f"no Jupyter kernel named {KERNEL_NAME!r}; install one for this environment with "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL_NAME}`"
        ) from err
    exe = spec.argv[0] if spec.argv else ""
    # jupyter_client replaces a bare python/python3/python3.X by sys.executable itself
    bare = {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}
    # the same environment reached through a symlinked folder (e.g. a linked .venv) is this environment
    if exe not in bare and os.path.realpath(Path(exe).parent) != os.path.realpath(Path(sys.executable).parent):
        raise BookError(
            f"the Jupyter kernel {KERNEL_NAME!r} ({spec.resource_dir}) runs {exe}, not this environment's "
            f"{sys.executable}; reinstall it with `{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL_NAME}`"
        )


def _known_parameter_filter(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Passed unknown parameter")


def execute_chapter(layout: BookLayout, stem: str, source: Path, parameters: Mapping[str, Any],
                    out_dir: Path, progress: bool = False, env: Mapping[str, str] | None = None) -> Path:
    """Execute one Jupytext chapter with papermill into ``out_dir/<stem>.ipynb``.

    The notebook runs in ``layout.root`` with the ``python3`` kernel. On an error the
    executed notebook is kept as ``<stem>.failed.ipynb`` and :class:`ChapterFailed`
    is raised; ``<stem>.ipynb`` is only ever replaced by a complete, successful run.
    ``env``: variables set for the kernel (and restored afterwards in this process).
    """
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    # our validation already checked every name against the parameters cell; papermill's own
    # check misreads annotated defaults (`n: int | None = 8`) and would warn for each of them
    logging.getLogger("papermill").addFilter(_known_parameter_filter)
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}
    final, failed = out_dir / f"{stem}.ipynb", out_dir / f"{stem}.failed.ipynb"
    running, staged_input = out_dir / f".{stem}.running.ipynb", out_dir / f".{stem}.input.ipynb"
    with atomic_path(staged_input) as tmp:
        nbformat.write(notebook, str(tmp))
    # the kernel inherits this process's environment: an MPLBACKEND=Agg set for
    # headless tests would make plt.show() draw nothing into the notebook
    kernel_env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline", **(env or {})}
    saved = {k: os.environ.get(k) for k in kernel_env}
    os.environ.update(kernel_env)
    # unix sockets, so the kernel's traffic never goes over a TCP port, in a folder of this
    # chapter's own: jupyter_client's default names them kernel-ipc-N in the working
    # directory, where two builds at once would pick the same sockets and one kernel hang
    sockets = tempfile.TemporaryDirectory(prefix="kdmed-kernel-")
    try:
        papermill.execute_notebook(
            str(staged_input), str(running), parameters=dict(parameters),
            kernel_name=KERNEL_NAME, cwd=str(layout.root), progress_bar=progress,
            config=Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets.name, "ipc")}}),
        )
    except PapermillExecutionError as err:
        if running.exists():
            os.replace(running, failed)
        raise ChapterFailed(stem, err.ename, err.evalue, _ANSI.sub("", "\n".join(err.traceback)),
                            failed if failed.exists() else None, cell=err.source) from None
    except Exception as err:  # the kernel died, did not start, or papermill failed around the notebook
        if running.exists():
            os.replace(running, failed)
        raise ChapterFailed(stem, type(err).__name__, str(err), "", failed if failed.exists() else None) from err
    finally:
        sockets.cleanup()
        staged_input.unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    os.replace(running, final)
    failed.unlink(missing_ok=True)
    return final
