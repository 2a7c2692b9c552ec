"""The rendered book in headless Chromium: a good page passes; blank pages, broken figures and tracebacks fail."""

from __future__ import annotations

import base64

import pytest

from kdmed.book.browser import check_browser, find_browser

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium installed (.ci/run installs Debian's chromium)")

# a 4x4 PNG: two colours, so a screenshot of a page showing it is not one flat colour
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAGUlEQVR4nGP8z4ALMOGUGZUalRqVGpUalQIAJ3ABB1Ck3gwAAAAASUVORK5CYII=")
TEXT = "<p>" + "A page a reader can read. " * 20 + "</p>"


def _page(folder, name, body):
    (folder / name).write_text(f"<html><head><title>t</title></head><body><h1>Title</h1>{body}</body></html>")


def test_a_good_page_passes_and_each_fault_is_named(tmp_path):
    (tmp_path / "fig.png").write_bytes(PNG)
    _page(tmp_path, "good.html", TEXT + '<img src="fig.png" width="300" height="300">')
    _page(tmp_path, "blank.html", "")
    _page(tmp_path, "broken.html", TEXT + '<img src="missing.png">')
    _page(tmp_path, "trace.html", TEXT + "<pre>Traceback (most recent call last):\n  File x</pre>")
    views, problems = check_browser(tmp_path, ["good.html"])
    assert problems == [] and views[0].images == 1 and views[0].text_chars >= 200
    _, problems = check_browser(tmp_path, ["blank.html", "broken.html", "trace.html", "nope.html"])
    text = "\n".join(problems)
    assert "blank.html: the page is blank" in text
    assert "broken.html: a figure does not load:" in text and "missing.png" in text
    assert "trace.html: the page shows a Python traceback" in text
    assert "nope.html: no such page" in text
    assert not list(tmp_path.glob(".kdmed-browser-check-*"))  # the probe copies are gone
