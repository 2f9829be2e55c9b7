import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository. Missing: fail under CI, skip elsewhere."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing: CI must run with shared/ beside the repository")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


def shared_file(shared_data: Path, rel: str) -> Path:
    """A file under ../shared/data that a test needs: fail under CI if absent, skip otherwise."""
    p = shared_data / rel
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing")
        pytest.skip(f"{p} not present")
    return p
