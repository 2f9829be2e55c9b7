"""The depth stage's file, ``results/<dataset>/depth/<video>.npz`` (docs/formats.md): ``depth`` float32
[T, H, W] in the nvp fit's depth units and ``meta``, a JSON string (method, settings, version, units)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError
from omnitrack.io import load_npz, save_npz


def save_depth_file(path: str | Path, depth: np.ndarray, info: dict) -> None:
    save_npz(path, depth=depth.astype(np.float32), meta=np.array(json.dumps(info)))


def load_depth_file(path: str | Path) -> tuple[np.ndarray, dict]:
    """A depth stage file -> (depth float32 [T, H, W], meta dict)."""
    z = load_npz(path, {"depth": (3, "f"), "meta": (0, "U")})
    try:
        meta = json.loads(str(z["meta"]))
    except ValueError as e:
        raise CacheError(path, f"its 'meta' is not JSON ({e})") from None
    return z["depth"].astype(np.float32), meta
