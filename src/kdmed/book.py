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
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kdmed.profiles import (
    PROFILES_ENV,
    Profile,
    ProfileError,
    chapter_parameters,
    load_profile,
    parse_overrides,
    resolve_parameters,
)
from kdmed.progress import ENV_VAR as PROGRESS_ENV
from kdmed.progress import Tail
from kdmed.store import FROZEN_ENV
from kdmed.utils import atomic_path, atomic_write_json, atomic_write_text, repo_root

KERNEL_NAME = "python3"
MANIFEST = "kdmed-manifest.json"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# a MyST glue role in markdown: {glue}`key`, {glue:}`key`, {glue:text}`key:.2f`, ...
_GLUE_ROLE = re.compile(r"\{glue(?::(\w*))?\}`([^`]+)`")


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
    return [re.sub(r"\.(py|ipynb|md)$", "", e) for e in entries]


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
    resolved = resolve_parameters(loaded, declared, overrides)
    if only:
        unknown = [c for c in only if c not in sources]
        if unknown:
            raise ProfileError(f"--chapters: unknown chapter(s) {unknown}; chapters in the book: {', '.join(sources)}")
        resolved = {c: p for c, p in resolved.items() if c in only}
    return loaded, resolved


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
    if exe not in bare and Path(os.path.abspath(exe)).parent != Path(os.path.abspath(sys.executable)).parent:
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
    try:
        papermill.execute_notebook(
            str(staged_input), str(running), parameters=dict(parameters),
            kernel_name=KERNEL_NAME, cwd=str(layout.root), progress_bar=progress,
            # unix sockets: the kernel's traffic never goes over a TCP port
            config=Config({"KernelManager": {"transport": "ipc"}}),
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
        staged_input.unlink(missing_ok=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    os.replace(running, final)
    failed.unlink(missing_ok=True)
    return final


def notebook_facts(path: Path) -> dict[str, Any]:
    """What check-html must find on a chapter's page: its PNG outputs' hashes and glue roles' texts."""
    from myst_nb.core.variables import format_plain_text

    notebook = json.loads(path.read_text(encoding="utf-8"))
    pngs, glued = [], {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                png = data["image/png"]
                png = "".join(png) if isinstance(png, list) else png
                pngs.append(hashlib.sha256(base64.b64decode(png)).hexdigest())
            scrapbook = output.get("metadata", {}).get("scrapbook", {})
            if "name" in scrapbook:
                prefix = scrapbook.get("mime_prefix", "")
                glued[scrapbook["name"]] = {k[len(prefix):]: v for k, v in data.items() if k.startswith(prefix)}
    roles = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for kind, body in _GLUE_ROLE.findall(source):
            kind = kind or "any"
            key, fmt = (body.rsplit(":", 1) + ["s"])[:2] if kind == "text" else (body, "")
            if "::" in key:  # glued in another document: jupyter-book -W checks those references
                continue
            role: dict[str, Any] = {"role": kind, "key": key, "found": key in glued}
            if kind == "text" and key in glued and "text/plain" in glued[key]:
                plain = glued[key]["text/plain"]
                role["text"] = format_plain_text("".join(plain) if isinstance(plain, list) else plain, fmt)
            roles.append(role)
    return {"png_sha256": pngs, "glue": roles}


def _filtered_toc(toc: Path, keep: set[str]) -> str:
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
            if "file" in item and re.sub(r"\.(py|ipynb|md)$", "", str(item["file"])) not in keep:
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
        shutil.copy2(notebook, target / f"{stem}.ipynb")
    shutil.copy2(layout.config, target / "_config.yml")
    missing = set(sources) - set(executed)
    pages = set(toc_entries(layout.toc)) - missing
    (target / "_toc.yml").write_text(_filtered_toc(layout.toc, pages) if missing else layout.toc.read_text(encoding="utf-8"),
                                      encoding="utf-8")
    return target


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
           PROFILES_ENV: str(layout.profiles_dir)}
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
                   "parameters": _notebook_parameters(path), **notebook_facts(path)}
            for stem, path in executed.items()
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


class _PageScan(HTMLParser):
    """Collects the ``<img src>`` values, the pasted glue texts and the text of one HTML page."""

    _VOID = {"img", "br", "hr", "meta", "link", "input", "source", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.images: list[str] = []
        self.pasted: list[str] = []
        self.text: list[str] = []
        self._open: list[bool] = []  # per open element: is it a glue span?
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag in self._VOID:
            return
        pasted = "pasted-text" in (values.get("class") or "").split()
        self._open.append(pasted)
        if pasted:
            self.pasted.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in self._VOID:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if any(self._open):
            self.pasted[-1] += data


@dataclasses.dataclass
class HtmlReport:
    """The result of :func:`check_html`: pages verified and problems found."""

    pages: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_html(build_dir: str | Path | None = None, layout: BookLayout | None = None) -> HtmlReport:
    """Check ``<build_dir>/html``: every toc chapter has a page with a notebook PNG and its glued values.

    A page passes when it exists, shows at least one ``<img>`` whose PNG under
    ``_images/`` is byte-identical to a figure the chapter's notebook produced, has
    every ``{glue:text}`` value visible and no raw ``{glue`` role left, and the
    render logged no warning.
    """
    layout = layout or BookLayout.default(build_dir=build_dir)
    html_dir = Path(build_dir) / "html" if build_dir is not None else layout.html_dir
    problems: list[str] = []
    pages: list[str] = []
    manifest_path = html_dir / MANIFEST
    if not (html_dir / "index.html").is_file():
        return HtmlReport([], [f"{html_dir / 'index.html'} is missing: no book was rendered there"])
    if not manifest_path.is_file():
        return HtmlReport([], [f"{manifest_path} is missing: {html_dir} was not built by `python -m kdmed.book build`"])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    problems += [f"render warning: {w}" for w in manifest.get("warnings", [])]
    expected = list(chapter_sources(layout)) if layout.toc.is_file() else list(manifest["chapters"])
    for stem in expected:
        facts = manifest["chapters"].get(stem)
        page = html_dir / f"{stem}.html"
        if facts is None or not page.is_file():
            problems.append(f"{stem}: page {page} is missing (chapter not executed for profile {manifest['profile']!r})")
            continue
        scan = _PageScan(page.read_text(encoding="utf-8"))
        text = "".join(scan.text)
        notebook_pngs = set(facts["png_sha256"])
        shown = []
        for src in scan.images:
            image = (page.parent / src).resolve()
            if src.endswith(".png") and image.parent == (html_dir / "_images").resolve() and image.is_file():
                if hashlib.sha256(image.read_bytes()).hexdigest() in notebook_pngs:
                    shown.append(src)
        if not shown:
            problems.append(f"{stem}: no <img> of a PNG the notebook produced ({len(scan.images)} <img> on the page, "
                            f"{len(notebook_pngs)} PNG outputs in the notebook)")
        if "{glue" in text:
            problems.append(f"{stem}: a raw {{glue...}} role is left in the page text")
        for role in facts["glue"]:
            if not role["found"]:
                problems.append(f"{stem}: glue key {role['key']!r} was never glued by the notebook")
            elif "text" in role and role["text"] not in scan.pasted:
                problems.append(f"{stem}: glued value {role['key']!r} = {role['text']!r} is not visible on the page")
        pages.append(f"{page.relative_to(html_dir)}: {len(shown)} notebook PNG(s), "
                     f"{sum('text' in r for r in facts['glue'])} glued value(s)")
    return HtmlReport(pages, problems)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdmed.book", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="validate, execute the chapters with papermill, render with jupyter-book")
    v = sub.add_parser("validate", help="check a profile (and --param overrides) against the chapters; run nothing")
    for p in (b, v):
        p.add_argument("--profile", required=True, help="a profile in book/profiles (smoke, default, gpu, full)")
        p.add_argument("--param", action="append", default=[], metavar="[CHAPTER.]NAME=VALUE",
                       help="override a study parameter or a chapter's parameter, in every chapter or in CHAPTER "
                            "(VALUE is read as YAML); repeatable")
        p.add_argument("--chapters", default="", help="comma-separated chapter stems to execute (default: all)")
    b.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="papermill's per-cell progress bar (default: on when stderr is a terminal)")
    b.add_argument("--frozen", action="store_true",
                   help="render only from the results store: train nothing, fail listing missing or stale runs")
    c = sub.add_parser("check-html", help="check the rendered book's pages, figures and glued values")
    c.add_argument("--build-dir", default=None, help="the build folder holding html/ (default: _build)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-html":
            report = check_html(args.build_dir)
            for page in report.pages:
                print(f"ok-checked {page}")
            if report.problems:
                print(f"check-html: {len(report.problems)} problem(s):", file=sys.stderr)
                for problem in report.problems:
                    print(f"  - {problem}", file=sys.stderr)
                return 1
            print(f"check-html: {len(report.pages)} page(s) verified")
            return 0
        overrides = parse_overrides(args.param)
        only = [c.strip() for c in args.chapters.split(",") if c.strip()] or None
        layout = BookLayout.default()
        if args.command == "validate":
            _, params = validate(layout, args.profile, overrides, only)
            for stem, values in params.items():
                print(f"{stem}: {values}")
            print(f"profile {args.profile!r} is valid for {len(params)} chapter(s)")
            return 0
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        start = time.perf_counter()
        result = build(args.profile, only, overrides, layout, progress=progress, frozen=args.frozen)
        print(f"built profile {args.profile!r} in {time.perf_counter() - start:.1f} s: {result.html_dir / 'index.html'}")
        return 0
    except ProfileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BookError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
