"""What a rendered page must show: its notebook's figures, glued values and downloads (check-html)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from kdmed.book.layout import MANIFEST, BookLayout
from kdmed.book.toc import chapter_sources

# a MyST glue role in markdown: {glue}`key`, {glue:}`key`, {glue:text}`key:.2f`, ...
_GLUE_ROLE = re.compile(r"\{glue(?::(\w*))?\}`([^`]+)`")
_DOWNLOAD_ROLE = re.compile(r"\{download\}`[^`]+`")
#: phrases that describe the synthetic stand-in's data: a page built on real images must not carry them
SYNTHETIC_WORDS = ("stand-in", "institution A", "institution B", "institution C", "MIMIC-like", "NIH-like",
                   "NOT real patients", "No image of either dataset")

def notebook_facts(path: Path) -> dict[str, Any]:
    """What check-html must find on a chapter's page: its PNG outputs' hashes and glue roles' texts."""
    from myst_nb.core.variables import format_plain_text

    notebook = json.loads(path.read_text(encoding="utf-8"))
    pngs, glued = [], {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            # a glued figure (glue(..., display=False)) keeps its PNG under papermill's record prefix
            png_key = next((k for k in data if k == "image/png" or k.endswith("/image/png")), None)
            if png_key:
                png = data[png_key]
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
    downloads = sum(len(_DOWNLOAD_ROLE.findall("".join(c["source"]) if isinstance(c["source"], list) else c["source"]))
                    for c in notebook.get("cells", []) if c.get("cell_type") == "markdown")
    return {"png_sha256": pngs, "glue": roles, "downloads": downloads}


def _plain_quotes(text: str) -> str:
    # the renderer may typeset straight quotes and dashes (smartquotes); compare the words, not the glyphs
    return text.translate(str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                                         "\u2013": "--", "\u2014": "---"}))


class _PageScan(HTMLParser):
    """Collects the ``<img src>`` values, the pasted glue texts and the text of one HTML page."""

    _VOID = {"img", "br", "hr", "meta", "link", "input", "source", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.images: list[str] = []
        self.downloads: list[str] = []
        self.pasted: list[str] = []
        self.text: list[str] = []
        self.prose: list[str] = []  # the text outside code cells' inputs and code blocks
        self._open: list[bool] = []  # per open element: is it a glue span?
        self._code: list[bool] = []  # per open element: is it (inside) code?
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "a" and "download" in (values.get("class") or "").split():
            self.downloads.append(values.get("href") or "")
        if tag in self._VOID:
            return
        classes = (values.get("class") or "").split()
        pasted = "pasted-text" in classes
        self._open.append(pasted)
        self._code.append(tag in ("pre", "code") or "cell_input" in classes)
        if pasted:
            self.pasted.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in self._VOID:
            self._open.pop()
            self._code.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if not any(self._code):
            self.prose.append(data)
        if any(self._open):
            self.pasted[-1] += data


@dataclasses.dataclass
class HtmlReport:
    """The result of :func:`check_html`: pages verified and problems found."""

    pages: list[str]
    problems: list[str]
    #: chapters a partial build (``--chapters``) left out of the book on purpose
    left_out: list[str] = dataclasses.field(default_factory=list)

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
    # a partial build renders the chapters it ran; the builder recorded the others as left out
    left_out = [stem for stem in expected if stem in manifest.get("not_executed", [])]
    for stem in (s for s in expected if s not in left_out):
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
            elif "text" in role and _plain_quotes(role["text"]) not in {_plain_quotes(t) for t in scan.pasted}:
                problems.append(f"{stem}: glued value {role['key']!r} = {role['text']!r} is not visible on the page")
        for href in scan.downloads:
            if not (page.parent / href).resolve().is_file():
                problems.append(f"{stem}: download link {href!r} points to no file")
        if facts.get("downloads") and not scan.downloads:
            problems.append(f"{stem}: the chapter offers {facts['downloads']} download(s) but the page shows none")
        if facts.get("setting") not in (None, "synthetic"):
            problems += _synthetic_wording(stem, facts["setting"], "".join(scan.prose))
        pages.append(f"{page.relative_to(html_dir)}: {len(shown)} notebook PNG(s), "
                     f"{sum('text' in r for r in facts['glue'])} glued value(s), {len(scan.downloads)} download(s)")
    settings = {f.get("setting") for f in manifest["chapters"].values()} - {None}
    if settings and "synthetic" not in settings and (html_dir / "intro.html").is_file():
        problems += _synthetic_wording("intro", "/".join(sorted(settings)),
                                       "".join(_PageScan((html_dir / "intro.html").read_text(encoding="utf-8")).prose))
    return HtmlReport(pages, problems, left_out)


def _synthetic_wording(stem: str, setting: str, prose: str) -> list[str]:
    """A problem per :data:`SYNTHETIC_WORDS` phrase in the prose of a page built on real data."""
    out = []
    for phrase in SYNTHETIC_WORDS:
        at = prose.find(phrase)
        if at >= 0:
            context = " ".join(prose[max(0, at - 60):at + len(phrase) + 60].split())
            out.append(f"{stem}: built on real data (setting {setting!r}) but its text speaks of the synthetic "
                       f"data: {phrase!r} in \"...{context}...\"")
    return out
