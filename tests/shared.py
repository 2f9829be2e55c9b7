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


def tiny_nvp_config(**overrides) -> dict:
    """The nvp cpu preset shrunk for unit tests (4 pairs per step, small planes and MLP, one CPU thread,
    no progress bar), with ``overrides``."""
    from omnitrack.model import default_config

    cfg = default_config("cpu")
    cfg.update(num_pairs=4, progress=False, plane_res=[8, 32], feature_dim=16, hidden=[32, 16], device="cpu", threads=1)
    cfg.update(overrides)
    return cfg
