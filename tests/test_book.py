"""The book pipeline: profile validation, the chapters' layout, and a real build of a toy book."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import nbformat
import pytest

from kdmed import book
from kdmed.profiles import (
    ProfileError,
    accepts,
    chapter_parameters,
    load_profile,
    parse_overrides,
)

TOY_CONFIG = """\
title: toy
author: tests
only_build_toc_files: true
execute:
  execute_notebooks: "off"
launch_buttons:
  binderhub_url: ""
  colab_url: ""
  thebe: false
repository:
  url: ""
sphinx:
  config:
    intersphinx_mapping: {}
"""

TOY_CHAPTER = '''\
# %% [markdown]
# # Toy chapter
#
# The answer is {glue:text}`answer:.3f`, from the {glue:text}`toy_profile` profile.

# %% tags=["parameters"]
profile = "default"
scale = 2.0
points = 5

# %%
import matplotlib.pyplot as plt
from myst_nb import glue

values = [scale * i for i in range(points)]
glue("answer", sum(values) / 7, display=False)
glue("toy_profile", profile, display=False)
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot(values)
plt.show()
'''


def make_toy_book(root: Path, chapter: str = TOY_CHAPTER) -> book.BookLayout:
    """A one-chapter book in ``root`` with a ``toy`` profile; returns its layout."""
    (root / "book" / "profiles").mkdir(parents=True)
    (root / "_config.yml").write_text(TOY_CONFIG)
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: toy\n")
    (root / "book" / "intro.md").write_text("# Toy book\n\nA book for the tests.\n")
    (root / "book" / "toy.py").write_text(chapter)
    (root / "book" / "profiles" / "toy.yml").write_text(
        "description: a toy profile\nchapters:\n  toy:\n    scale: 3\n    points: 4\n"
    )
    return book.BookLayout.default(root=root)


# --- profile validation ---------------------------------------------------------------


@pytest.fixture
def toy_layout(tmp_path) -> book.BookLayout:
    return make_toy_book(tmp_path)


def test_toy_profile_resolves_with_profile_injected(toy_layout):
    profile, params = book.validate(toy_layout, "toy")
    assert profile.description == "a toy profile"
    assert params == {"toy": {"profile": "toy", "scale": 3, "points": 4}}
    _, params = book.validate(toy_layout, "toy", parse_overrides(["toy.points=9", "toy.scale=0.5"]))
    assert params == {"toy": {"profile": "toy", "scale": 0.5, "points": 9}}


def test_unknown_profile_lists_the_known_ones(toy_layout):
    with pytest.raises(ProfileError, match=r"unknown profile 'nope': .*nope\.yml does not exist; known profiles: toy"):
        book.validate(toy_layout, "nope")


def test_unknown_chapter_is_refused(toy_layout):
    path = toy_layout.profiles_dir / "toy.yml"
    path.write_text("description: d\nchapters:\n  toi: {}\n")
    with pytest.raises(ProfileError) as err:
        book.validate(toy_layout, "toy")
    assert f"{path}: unknown chapter 'toi'; chapters in the book: toy" in str(err.value)


def test_unknown_parameter_is_refused_with_what_the_chapter_declares(toy_layout):
    path = toy_layout.profiles_dir / "toy.yml"
    path.write_text("description: d\nchapters:\n  toy:\n    scal: 3\n")
    with pytest.raises(ProfileError) as err:
        book.validate(toy_layout, "toy")
    assert (f"{path}: chapter 'toy': unknown parameter 'scal' "
            "(not in the chapter's parameters cell; it declares: scale, points)") in str(err.value)


def test_wrong_types_are_all_reported_at_once(toy_layout):
    path = toy_layout.profiles_dir / "toy.yml"
    path.write_text("description: d\nchapters:\n  toy:\n    scale: fast\n    points: 2.5\n")
    with pytest.raises(ProfileError) as err:
        book.validate(toy_layout, "toy")
    message = str(err.value)
    assert f"{path}: chapter 'toy': parameter 'scale' expects float (or int) (default 2.0), got str 'fast'" in message
    assert f"{path}: chapter 'toy': parameter 'points' expects int (default 5), got float 2.5" in message


def test_command_line_overrides_are_checked_the_same_way(toy_layout):
    with pytest.raises(ProfileError, match=r"command line \(--param\): chapter 'toy': parameter 'points' "
                                           r"expects int \(default 5\), got bool True"):
        book.validate(toy_layout, "toy", parse_overrides(["toy.points=true"]))
    with pytest.raises(ProfileError, match=r"command line \(--param\): unknown chapter 'other'"):
        book.validate(toy_layout, "toy", parse_overrides(["other.points=1"]))
    assert parse_overrides(["points=1", "toy.scale=2"]) == {"*": {"points": 1}, "toy": {"scale": 2}}
    assert book.validate(toy_layout, "toy", parse_overrides(["points=1"]))[1]["toy"]["points"] == 1
    with pytest.raises(ProfileError, match=r"--param '=1': expected NAME=VALUE or CHAPTER\.NAME=VALUE"):
        parse_overrides(["=1"])
    with pytest.raises(ProfileError, match=r"--chapters: unknown chapter\(s\) \['nope'\]"):
        book.validate(toy_layout, "toy", only=["nope"])


def test_profile_may_not_set_the_builder_parameter(toy_layout):
    (toy_layout.profiles_dir / "toy.yml").write_text("description: d\nchapters:\n  toy:\n    profile: other\n")
    with pytest.raises(ProfileError, match=r"parameter 'profile' is set by the builder"):
        book.validate(toy_layout, "toy")


def test_study_section_is_validated_against_the_study(tmp_path, repo):
    layout = make_toy_book(tmp_path)
    path = layout.profiles_dir / "toy.yml"
    smoke = (repo / "book" / "profiles" / "smoke.yml").read_text()
    broken = re.sub(r"(?m)^  seeds: .*$", "  seeds: 3", smoke)
    path.write_text(re.sub(r"(?m)^  epochs: (.*)$", r"  epochz: \1", broken))
    with pytest.raises(ProfileError) as err:
        book.validate(layout, "toy")
    message = str(err.value)
    assert "seeds expects a list, got int 3" in message and "unknown study parameter 'epochz'" in message
    assert "missing study parameter(s) epochs" in message
    path.write_text(smoke)
    # a study parameter may be overridden for every chapter or one; a chapter's own parameter too
    params = book.validate(layout, "toy", parse_overrides(["seeds=[4, 5]", "toy.points=2"]))[1]
    assert params == {"toy": {"profile": "toy", "seeds": [4, 5], "points": 2}}
    with pytest.raises(ProfileError, match=r"temperature expects a number, got str 'hot'"):
        book.validate(layout, "toy", parse_overrides(["temperature=hot"]))


def test_type_rules():
    assert accepts(1.0, 3) and accepts(1.0, 2.5) and not accepts(1.0, "2")
    assert accepts(3, 4) and not accepts(3, 4.0) and not accepts(3, True) and not accepts(True, 1)
    assert accepts(None, "anything") and accepts(None, [1]) and accepts("", "x") and not accepts("", None)
    assert accepts([1], []) and not accepts([1], {"a": 1}) and accepts({}, {"a": 1}) and not accepts({}, [1])


def test_optional_annotation_accepts_none_and_the_declared_type(tmp_path):
    path = tmp_path / "ch.py"
    path.write_text('# %% tags=["parameters"]\nprofile = "x"\nn: int | None = 8\nroot: str | None = None\nm = 3\n')
    declared = chapter_parameters(path)
    assert accepts(declared["n"], None) and accepts(declared["n"], 5) and not accepts(declared["n"], "5")
    assert accepts(declared["root"], "/data") and accepts(declared["root"], None)
    assert not accepts(declared["m"], None)


def test_parameters_cell_must_be_literal_assignments(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text('# %% [markdown]\n# hi\n\n# %% tags=["parameters"]\nprofile = "x"\nsize = 2 ** 3\n')
    with pytest.raises(ProfileError, match=r"bad\.py:6: parameter 'size' needs a literal default.*'2 \*\* 3'"):
        chapter_parameters(path)
    path.write_text('# %% tags=["parameters"]\nimport os\n')
    with pytest.raises(ProfileError, match=r"may only hold `name = <literal>` assignments, got 'import os'"):
        chapter_parameters(path)
    path.write_text('# %% tags=["parameters"]\na = 1\n\n# %% tags=["parameters"]\nb = 2\n')
    with pytest.raises(ProfileError, match=r"expected exactly one cell tagged 'parameters'.*found 2"):
        chapter_parameters(path)


# --- the repository's book -------------------------------------------------------------


def test_every_chapter_has_one_parameters_cell_and_is_in_the_toc(repo):
    layout = book.BookLayout.default(root=repo)
    entries = book.toc_entries(layout.toc)
    chapters = sorted(p.stem for p in layout.book_dir.glob("*.py"))
    assert chapters == ["01_data", "02_teacher", "03_distillation", "04_cross_domain",
                        "05_regularization", "06_conclusions", "appendix_compute"]
    assert list(book.chapter_sources(layout)) == chapters  # toc order is chapter order
    assert entries[0] == "intro"
    for stem in chapters:
        path = layout.book_dir / f"{stem}.py"
        source = path.read_text(encoding="utf-8")
        assert stem in entries, f"{path} is not in {layout.toc}"
        assert source.count('# %% tags=["parameters"') == 1
        params = chapter_parameters(path)
        assert isinstance(params.get("profile"), str), f"{path}: needs a str `profile` parameter"
        assert "from myst_nb import glue" in source and re.search(r"\{glue(:\w*)?\}`", source), path
        assert "matplotlib.use(" not in source, f"{path}: never force a backend in a chapter"


@pytest.mark.parametrize("name", ["smoke", "default", "gpu", "full"])
def test_every_profile_validates(repo, name):
    layout = book.BookLayout.default(root=repo)
    profile, params = book.validate(layout, name)
    assert profile.description
    assert list(params) == list(book.chapter_sources(layout))
    assert all(values["profile"] == name for values in params.values())


def test_full_profile_names_the_dataset_roots(repo):
    profile = load_profile("full", repo / "book" / "profiles")
    assert {"chexpert_root", "nih_root", "dr_root"} <= set(profile.study)
    assert profile.study["setting"] in ("chexpert", "chestxray8")


def test_cli_validate_reports_errors_with_exit_code_2(capsys):
    assert book.main(["validate", "--profile", "smoke", "--param", "01_data.image_size=many"]) == 2
    err = capsys.readouterr().err
    assert "smoke.yml with --param for 01_data: image_size expects an int, got str 'many'" in err
    assert book.main(["validate", "--profile", "smoke", "--chapters", "01_data"]) == 0
    assert "01_data: {'profile': 'smoke'" in capsys.readouterr().out


# --- rendering and the end-to-end build -----------------------------------------------


def test_filtered_toc_drops_chapters_not_executed(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n"
                   "      - file: one\n      - file: two\n  - caption: B\n    chapters:\n      - file: three\n")
    import yaml

    kept = yaml.safe_load(book.filtered_toc(toc, {"intro", "two"}))
    assert kept == {"format": "jb-book", "root": "intro", "parts": [{"caption": "A", "chapters": [{"file": "two"}]}]}


def test_render_warning_fails_and_keeps_the_old_html(toy_layout):
    html = toy_layout.html_dir
    html.mkdir(parents=True)
    (html / "index.html").write_text("old book")
    staged = toy_layout.stage_dir("toy")
    staged.mkdir(parents=True)
    (staged / "_config.yml").write_text(TOY_CONFIG)
    (staged / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: page\n")
    (staged / "intro.md").write_text("# Intro\n\nSee [nowhere](missing-target).\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Page\n\nValue {glue:text}`never_glued`.")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(staged / "page.ipynb"))
    with pytest.raises(book.BookError) as err:
        book.render(toy_layout, "toy", staged)
    message = str(err.value)
    assert re.match(r"jupyter-book failed \(exit [1-9]\d*\); full log: .*render-toy\.log", message)
    # -W -n --keep-going: every warning is reported, the nitpicky link and the missing glue key
    assert "missing-target" in message
    assert "WARNING: No key 'never_glued' found in glue data for this document" in message
    assert (html / "index.html").read_text() == "old book"
    assert not list(toy_layout.build_dir.glob(".render-*"))


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_toy_book_builds_end_to_end_and_a_failing_chapter_keeps_it(toy_layout, monkeypatch):
    # a headless MPLBACKEND=Agg must not stop the chapter's figure reaching the page
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = book.build("toy", layout=toy_layout)
    html = toy_layout.html_dir
    assert result.html_dir == html and result.not_executed == [] and set(result.seconds) == {"toy"}
    page = (html / "toy.html").read_text(encoding="utf-8")
    # scale=3, points=4 from the profile: (0 + 3 + 6 + 9) / 7
    assert f'<span class="pasted-text">{18 / 7:.3f}</span>' in page
    assert '<span class="pasted-text">toy</span>' in page
    images = re.findall(r'<img[^>]+src="(_images/[0-9a-f]+\.png)"', page)
    assert len(images) == 1 and (html / images[0]).is_file()
    executed = json.loads((toy_layout.executed_dir("toy") / "toy.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"profile": "toy", "scale": 3, "points": 4}
    report = book.check_html(layout=toy_layout)
    assert report.problems == [] and report.pages == ["toy.html: 1 notebook PNG(s), 2 glued value(s), 0 download(s)"]

    # check-html notices a figure that is not the notebook's and a glued value that is gone
    before = _tree_digest(html)
    png = html / images[0]
    original = png.read_bytes()
    png.write_bytes(original + b"x")
    (html / "toy.html").write_text(page.replace(f">{18 / 7:.3f}<", ">?<"), encoding="utf-8")
    problems = book.check_html(layout=toy_layout).problems
    assert any(p.startswith("toy: no <img> of a PNG the notebook produced") for p in problems)
    assert f"toy: glued value 'answer' = '{18 / 7:.3f}' is not visible on the page" in problems
    (html / "toy.html").unlink()
    assert book.check_html(layout=toy_layout).problems == [
        f"toy: page {html / 'toy.html'} is missing (chapter not executed for profile 'toy')"]
    # a chapter a partial build left out on purpose (the builder records it) is no problem
    manifest_path = html / book.MANIFEST
    manifest = manifest_path.read_text(encoding="utf-8")
    manifest_path.write_text(json.dumps({**json.loads(manifest), "not_executed": ["toy"]}), encoding="utf-8")
    partial = book.check_html(layout=toy_layout)
    assert partial.problems == [] and partial.pages == [] and partial.left_out == ["toy"]
    manifest_path.write_text(manifest, encoding="utf-8")
    png.write_bytes(original)
    # a page built on real data may not speak of the synthetic stand-in (code cells may)
    real = json.loads(manifest)
    assert real["chapters"]["toy"]["setting"] is None  # the toy profile has no study
    real["chapters"]["toy"]["setting"] = "chexpert"
    manifest_path.write_text(json.dumps(real), encoding="utf-8")
    code = '<div class="cell_input docutils container"><pre>print("holds on the stand-in")</pre></div>'
    (html / "toy.html").write_text(page.replace("</main>", code + "</main>"), encoding="utf-8")
    assert book.check_html(layout=toy_layout).problems == []
    (html / "toy.html").write_text(page.replace("</main>", "<p>This holds on the stand-in only.</p></main>"),
                                   encoding="utf-8")
    (problem,) = book.check_html(layout=toy_layout).problems
    assert problem.startswith("toy: built on real data (setting 'chexpert') but its text speaks of the synthetic "
                              "data: 'stand-in' in \"...") and "This holds on the stand-in only." in problem
    (html / "toy.html").write_text(page, encoding="utf-8")
    manifest_path.write_text(manifest, encoding="utf-8")
    assert _tree_digest(html) == before

    # a failing chapter: the error names the chapter and the cell's error; the book is untouched
    (toy_layout.book_dir / "toy.py").write_text(TOY_CHAPTER.replace(
        "values = [", 'raise ValueError(f"boom {points}")\nvalues = ['))
    with pytest.raises(book.ChapterFailed) as err:
        book.build("toy", layout=toy_layout, overrides={"toy": {"points": 42}})
    assert err.value.chapter == "toy" and err.value.ename == "ValueError" and err.value.evalue == "boom 42"
    message = str(err.value)
    assert message.startswith("chapter 'toy' failed: ValueError: boom 42")
    assert 'raise ValueError(f"boom {points}")' in message and "\x1b[" not in message
    assert err.value.notebook == toy_layout.executed_dir("toy") / "toy.failed.ipynb"
    assert _tree_digest(html) == before
    # the last good executed notebook is kept, so the book can still be rendered from it
    assert json.loads((toy_layout.executed_dir("toy") / "toy.ipynb").read_text()) == executed


def test_leftovers_of_a_killed_build_are_recovered(tmp_path):
    layout = book.BookLayout.default(root=tmp_path, build_dir=tmp_path / "_build")
    dead = 999_999_999  # no such process
    old = layout.build_dir / f".html-old-{dead}"
    old.mkdir(parents=True)
    (old / "index.html").write_text("old book")
    (layout.build_dir / f".render-smoke-{dead}").mkdir()
    done = book.recover_leftovers(layout)
    assert (layout.html_dir / "index.html").read_text() == "old book"  # killed between the two renames
    assert not old.exists() and not (layout.build_dir / f".render-smoke-{dead}").exists()
    assert any("restored" in line for line in done) and any("removed" in line for line in done)
    # with a book in place, an old copy is deleted, not restored
    old.mkdir()
    (old / "index.html").write_text("older")
    book.recover_leftovers(layout)
    assert (layout.html_dir / "index.html").read_text() == "old book" and not old.exists()


def test_the_kernel_check_accepts_a_linked_environment_and_refuses_another(tmp_path, monkeypatch):
    import sys
    import types

    from jupyter_client.kernelspec import KernelSpecManager

    from kdmed.book.layout import BookError
    from kdmed.book.execute import check_kernel

    linked = tmp_path / "linked-bin"
    linked.symlink_to(Path(sys.executable).parent)
    other = tmp_path / "other-env" / "bin"
    other.mkdir(parents=True)

    def spec_running(exe):
        return lambda self, name: types.SimpleNamespace(argv=[str(exe), "-m", "ipykernel_launcher"],
                                                        resource_dir=str(tmp_path / "kernel"))

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", spec_running(linked / Path(sys.executable).name))
    check_kernel()
    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", spec_running(other / "python"))
    with pytest.raises(BookError, match="other-env/bin/python, not this environment's"):
        check_kernel()


def test_the_reproduce_command_reads_back_as_the_same_overrides():
    from kdmed.page import reproduce_command
    from kdmed.profiles import parse_overrides

    overrides = {"temperature": 2.0, "seeds": (0, 1), "setting": "synthetic", "n_boot": 200, "augment": False}
    cmd = reproduce_command("smoke", "03_distillation", overrides)
    assert cmd.startswith("make book PROFILE=smoke CHAPTERS=03_distillation PARAMS=\"") and "\n" not in cmd
    params = cmd.split('PARAMS="', 1)[1].rstrip('"').split(" ")
    assert parse_overrides(params)["*"] == {**overrides, "seeds": [0, 1]}
    assert reproduce_command("smoke", "01_data", {}) == "make book PROFILE=smoke CHAPTERS=01_data"


def test_cli_builds_into_the_build_folder_it_is_given(toy_layout, monkeypatch, tmp_path, capsys):
    # two builds at once (CI's two real settings) need two build folders
    monkeypatch.setattr("kdmed.book.layout.repo_root", lambda: toy_layout.root)
    elsewhere = tmp_path / "elsewhere"
    assert book.main(["build", "--profile", "toy", "--no-progress", "--build-dir", str(elsewhere)]) == 0
    assert (elsewhere / "html" / "toy.html").is_file() and (elsewhere / "executed" / "toy" / "toy.ipynb").is_file()
    assert not toy_layout.build_dir.exists()
    assert book.main(["check-html", "--build-dir", str(elsewhere)]) == 0
    assert "check-html: 1 page(s) verified" in capsys.readouterr().out


def test_a_chapter_kernel_keeps_its_sockets_out_of_the_working_folder(toy_layout, tmp_path):
    # jupyter_client's default names a kernel's unix sockets kernel-ipc-N in the working folder,
    # where two builds at once picked the same ones and one kernel never answered
    from kdmed.book.execute import execute_chapter

    source = tmp_path / "look.py"
    source.write_text("# %%\nimport glob, json, os\n"
                      "json.dump({'cwd': os.getcwd(), 'sockets': glob.glob('kernel-ipc-*')}, open('seen.json', 'w'))\n")
    execute_chapter(toy_layout, "look", source, {}, tmp_path / "out")
    seen = json.loads((toy_layout.root / "seen.json").read_text())
    assert seen == {"cwd": str(toy_layout.root), "sockets": []}
