import os
from pathlib import Path

import pytest

from tests.shared import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository. Missing: fail under CI, skip elsewhere."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing: CI must run with shared/ beside the repository")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA
