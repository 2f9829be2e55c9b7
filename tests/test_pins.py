"""envs/omnitrack.yaml (for conda users) pins exactly the packages and versions of pyproject.toml."""

import re
import tomllib

import pytest
import yaml

from tests.shared import REPO


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(parse(d) for d in deps)


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load((REPO / "envs" / "omnitrack.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(parse(d) for d in pip if not d.startswith("-e"))


def parse(requirement: str) -> tuple[str, str]:
    """'torch==2.14.1' -> ('torch', '2.14.1'); anything but an exact pin is an error."""
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", requirement.strip())
    assert m, f"{requirement!r} is not an exact pin (name==version)"
    return m.group(1).lower().replace("_", "-"), m.group(2)


def test_conda_env_and_pyproject_pin_the_same_versions():
    assert conda_pins() == pyproject_pins()


def test_a_loose_pin_is_reported():
    with pytest.raises(AssertionError, match="not an exact pin"):
        parse("numpy>=2")
