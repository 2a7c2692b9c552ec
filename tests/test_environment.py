"""environment.yml (conda) and pyproject.toml must pin the same packages at the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)\s*$")


def _pins(requirements: list[str], where: str) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = _PIN.match(req)
        assert match, f"{where}: {req!r} is not an exact pin (name==version)"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def pyproject_pins(path: Path) -> dict[str, str]:
    """The runtime and test dependencies of pyproject.toml as name -> version."""
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("test", []))
    return _pins(reqs, str(path))


def environment_pins(text: str, where: str = "environment.yml") -> tuple[dict[str, str], dict]:
    """The pip section of a conda environment file as name -> version, plus the parsed file."""
    env = yaml.safe_load(text)
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, f"{where}: expected exactly one `pip:` section"
    reqs = [r for r in pip_sections[0] if not r.startswith("-e")]
    return _pins(reqs, where), env


def differences(project: dict[str, str], conda: dict[str, str]) -> list[str]:
    """Every package whose presence or version differs, named."""
    problems = []
    for name in sorted(set(project) | set(conda)):
        if name not in conda:
            problems.append(f"{name}=={project[name]} is in pyproject.toml but not in environment.yml")
        elif name not in project:
            problems.append(f"{name}=={conda[name]} is in environment.yml but not in pyproject.toml")
        elif project[name] != conda[name]:
            problems.append(f"{name}: pyproject.toml pins {project[name]}, environment.yml pins {conda[name]}")
    return problems


def test_environment_matches_pyproject(repo):
    project = pyproject_pins(repo / "pyproject.toml")
    conda, env = environment_pins((repo / "environment.yml").read_text(encoding="utf-8"))
    assert differences(project, conda) == []
    assert env["name"] == "kdmed"
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section
    # torch and the book toolchain are the ones that matter most; they must be there
    assert {"torch", "jupyter-book", "papermill", "jupytext", "pytest"} <= set(project)


def test_a_difference_names_the_package(repo):
    project = pyproject_pins(repo / "pyproject.toml")
    text = (repo / "environment.yml").read_text(encoding="utf-8")
    changed = text.replace(f"papermill=={project['papermill']}", "papermill==0.0.1")
    dropped = "\n".join(line for line in text.splitlines() if "seaborn==" not in line)
    assert differences(project, environment_pins(changed)[0]) == [
        f"papermill: pyproject.toml pins {project['papermill']}, environment.yml pins 0.0.1"
    ]
    assert differences(project, environment_pins(dropped)[0]) == [
        f"seaborn=={project['seaborn']} is in pyproject.toml but not in environment.yml"
    ]


def test_a_loose_pin_is_refused():
    with pytest.raises(AssertionError, match=r"'numpy>=2' is not an exact pin"):
        _pins(["numpy>=2"], "environment.yml")
