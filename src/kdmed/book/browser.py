"""The rendered book in a real browser: headless Chromium opens pages and reports what a reader would see.

For each page, Chromium loads a copy of it with a small script that, once the page has
loaded, records how many images it has and which did not load, how much text it shows
and whether a Python traceback is on it; then it takes a screenshot, which must not be
blank. A page fails when it is blank, a figure does not load or it shows a traceback.
Chromium runs with the flags that keep it off the network (the build machine has none).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")
#: a page shows at least this many characters of text
MIN_TEXT = 200
_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.src; });
  var text = document.body ? document.body.innerText : "";
  document.title = "KDMED:" + JSON.stringify({images: imgs.length, bad: bad, text: text.length,
                                               traceback: text.indexOf("Traceback (most recent call last)") >= 0});
});
</script>"""
_TITLE = re.compile(r"<title>KDMED:(.*?)</title>", re.S)


def find_browser() -> str | None:
    """The path of a Chromium-like browser on this machine, or None."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclasses.dataclass
class PageView:
    """What the browser saw on one page."""

    page: str
    images: int
    broken_images: list[str]
    text_chars: int
    traceback: bool
    blank_screenshot: bool

    def problems(self) -> list[str]:
        out = []
        if self.text_chars < MIN_TEXT or self.blank_screenshot:
            out.append(f"{self.page}: the page is blank ({self.text_chars} characters of text"
                       f"{', blank screenshot' if self.blank_screenshot else ''})")
        for src in self.broken_images:
            out.append(f"{self.page}: a figure does not load: {src}")
        if self.traceback:
            out.append(f"{self.page}: the page shows a Python traceback")
        return out


def _run(browser: str, args: Sequence[str], profile_dir: str, timeout_s: float) -> str:
    proc = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile_dir}", *args], capture_output=True, text=True,
                          timeout=timeout_s, stdin=subprocess.DEVNULL)
    return proc.stdout


def _blank(png: Path) -> bool:
    from PIL import Image, ImageStat

    if not png.is_file():
        return True
    with Image.open(png) as img:
        stats = ImageStat.Stat(img.convert("L"))
    return stats.stddev[0] < 2.0  # one flat colour


def view_page(page: Path, browser: str, timeout_s: float = 60.0) -> PageView:
    """Open ``page`` (an HTML file) in headless ``browser`` and report what it shows."""
    html = page.read_text(encoding="utf-8")
    probe = page.with_name(f".kdmed-browser-check-{page.name}")
    probe.write_text(html.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory(prefix="kdmed-chromium-") as tmp:
            dom = _run(browser, ["--virtual-time-budget=15000", "--dump-dom", probe.as_uri()], tmp, timeout_s)
            shot = Path(tmp) / "page.png"
            _run(browser, ["--window-size=1280,1400", "--virtual-time-budget=15000", f"--screenshot={shot}",
                           probe.as_uri()], tmp, timeout_s)
            blank = _blank(shot)
    finally:
        probe.unlink(missing_ok=True)
    found = _TITLE.search(dom)
    if not found:
        return PageView(page.name, 0, [], 0, False, True)
    info = json.loads(found.group(1))
    return PageView(page.name, info["images"], [b.replace(probe.name, page.name) for b in info["bad"]], info["text"],
                    info["traceback"], blank)


def check_browser(html_dir: Path, pages: Sequence[str], browser: str | None = None) -> tuple[list[PageView], list[str]]:
    """View ``pages`` of ``html_dir``; returns the views and every problem found."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(BROWSERS)}); install Debian's chromium package")
    views, problems = [], []
    for name in pages:
        page = Path(html_dir) / name
        if not page.is_file():
            problems.append(f"{name}: no such page in {html_dir}")
            continue
        view = view_page(page, browser)
        views.append(view)
        problems += view.problems()
    return views, problems
