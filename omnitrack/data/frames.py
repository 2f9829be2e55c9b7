"""The per-video frame file every stage reads: ``results/<dataset>/frames/<video>.npz``.

Keys: ``frames`` uint8 [T, H, W, 3] RGB at the working resolution, and ``meta`` (a JSON string):
``{"video", "num_frames", "height", "width", "source", "source_size": [W0, H0], "fps", "has_gt"}``.
Evaluation space is 256x256: a working-resolution pixel x maps to x * 256 / width.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError
from omnitrack.io import load_npz, save_npz


def save_frames(path: str | Path, frames: np.ndarray, meta: dict) -> None:
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    meta = {**meta, "num_frames": t, "height": h, "width": w}
    save_npz(path, frames=frames, meta=np.array(json.dumps(meta, sort_keys=True)))


def load_frames(path: str | Path) -> tuple[np.ndarray, dict]:
    """-> frames uint8 [T, H, W, 3], meta dict (validated against the array)."""
    z = load_npz(path, {"frames": (4, "u"), "meta": (0, "U")})
    frames, meta = z["frames"], json.loads(str(z["meta"]))
    if frames.shape[-1] != 3 or list(frames.shape[:3]) != [meta["num_frames"], meta["height"], meta["width"]]:
        raise CacheError(
            path,
            f"frames {frames.shape} do not match their metadata "
            f"({meta['num_frames']}x{meta['height']}x{meta['width']}x3)",
        )
    return frames, meta


def load_meta(path: str | Path) -> dict:
    """Only the metadata (does not read the frames)."""
    return json.loads(str(load_npz(path, {"meta": (0, "U")})["meta"]))


def check_frames_match(path: str | Path, what: str, shape, meta: dict, frames_path: str | Path) -> None:
    """Raise CacheError naming ``path`` (a cached file or store made from a video's frames) if its
    (T, H, W) ``shape`` differs from that of the frames file (``meta``: its metadata)."""
    want = (meta["num_frames"], meta["height"], meta["width"])
    if tuple(int(v) for v in shape) != want:
        raise CacheError(
            path,
            f"{what} {tuple(int(v) for v in shape)} (T, H, W) do not match {frames_path} "
            f"{want}: it was computed from other frames",
        )
