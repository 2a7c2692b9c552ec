"""``python -m kdmed.book``: build, validate, check-html, check-browser."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from kdmed.book.builder import build
from kdmed.book.execute import validate
from kdmed.book.html_check import check_html
from kdmed.book.layout import BookError, BookLayout
from kdmed.profiles import ProfileError, parse_overrides

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
    b.add_argument("--build-dir", default=None,
                   help="the build folder: executed notebooks, logs, html/ (default: _build); two builds at once "
                        "need two folders")
    c = sub.add_parser("check-html", help="check the rendered book's pages, figures and glued values")
    c.add_argument("--build-dir", default=None, help="the build folder holding html/ (default: _build)")
    w = sub.add_parser("check-browser", help="open pages of the rendered book in headless Chromium")
    w.add_argument("--build-dir", default=None, help="the build folder holding html/ (default: _build)")
    w.add_argument("--pages", default="intro.html,03_distillation.html", help="comma-separated pages to open")
    w.add_argument("--require", action="store_true", help="fail (instead of skipping) when no Chromium is installed")
    return parser


def _check_browser(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kdmed.book.browser import check_browser, find_browser

    layout = BookLayout.default(build_dir=args.build_dir)
    if find_browser() is None and not args.require:
        print("check-browser: skipped, no Chromium installed (apt-get install chromium)")
        return 0
    views, problems = check_browser(Path(layout.html_dir), [p.strip() for p in args.pages.split(",") if p.strip()])
    for v in views:
        print(f"viewed {v.page}: {v.images} image(s), {len(v.broken_images)} not loaded, {v.text_chars} characters")
    if problems:
        print(f"check-browser: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"check-browser: {len(views)} page(s) look right in Chromium")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-browser":
            return _check_browser(args)
        if args.command == "check-html":
            report = check_html(args.build_dir)
            for page in report.pages:
                print(f"ok-checked {page}")
            if report.problems:
                print(f"check-html: {len(report.problems)} problem(s):", file=sys.stderr)
                for problem in report.problems:
                    print(f"  - {problem}", file=sys.stderr)
                return 1
            print(f"check-html: {len(report.pages)} page(s) verified"
                  + (f" (left out of this partial build: {', '.join(report.left_out)})" if report.left_out else ""))
            return 0
        overrides = parse_overrides(args.param)
        only = [c.strip() for c in args.chapters.split(",") if c.strip()] or None
        layout = BookLayout.default(build_dir=getattr(args, "build_dir", None))
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


