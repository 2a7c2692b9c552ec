"""Every command of the README runs as written (at smoke size), in a copy of the repository.

The README is the product's front page: a command on it that fails is a bug. The four
commands that ``.ci/run`` itself runs (the two front-door commands, the smoke book and
the frozen default book) are checked there; every other one runs here, literally, in a
fresh copy of the tracked files that shares this checkout's ``.venv``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

#: commands .ci/run runs on a fresh clone (so this test need not run them again)
RUN_BY_CI = {"make book", "make test", "make book PROFILE=smoke", "make book-frozen PROFILE=default"}


def readme_commands(text: str) -> list[str]:
    """The shell commands of the README's ``bash`` blocks, comments removed, continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_readme_lists_the_commands_ci_runs(repo):
    commands = readme_commands((repo / "README.md").read_text(encoding="utf-8"))
    assert RUN_BY_CI <= set(commands)
    ci = (repo / ".ci" / "run").read_text(encoding="utf-8")
    for command in ("make test", "make book PROFILE=smoke", "make book-frozen PROFILE=default"):
        assert command in ci


def _copy_of(repo: Path, where: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (repo / name).is_file():
            shutil.copy2(repo / name, target)
    (where / ".venv").symlink_to(repo / ".venv")
    return where


@pytest.mark.slow
def test_every_other_readme_command_runs_as_written(repo, tmp_path):
    if not (repo / ".venv" / "bin" / "python").exists():
        pytest.skip("needs the project's .venv (make venv)")
    commands = [c for c in readme_commands((repo / "README.md").read_text(encoding="utf-8")) if c not in RUN_BY_CI]
    assert any("papermill" in c and " -p " in c for c in commands) and any(" -y " in c for c in commands)
    work = _copy_of(repo, tmp_path / "repo")
    # the shared .venv's editable install points at this checkout: PYTHONPATH makes the copy's own code run
    env = {**os.environ, "PATH": f"{work / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "KDMED_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(work / "src")}
    env.pop("KDMED_RESULTS_DIR", None)
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, f"README command failed: {command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert (work / "out.ipynb").is_file() and (work / "_build" / "html" / "index.html").is_file()
