"""Paths the tests share: the repository, and the data under ../shared/data beside it."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(shared_data: Path, rel: str) -> Path:
    """A file under ../shared/data that a test needs: fail under CI if absent, skip otherwise."""
    p = shared_data / rel
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing")
        pytest.skip(f"{p} not present")
    return p
