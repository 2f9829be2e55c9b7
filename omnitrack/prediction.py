"""The prediction format every method writes and evaluation, visualisation and the tools read
(``results/<dataset>/predictions/<method>/<video>.<mode>.npz``, docs/formats.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnitrack.io import load_npz, save_npz


def save_prediction(
    out_path: str | Path, query_points: np.ndarray, tracks: np.ndarray, occluded: np.ndarray, width: int, height: int
) -> None:
    """Write the prediction format every method shares (docs/formats.md)."""
    save_npz(
        out_path,
        query_points=query_points.astype(np.float32),
        tracks=tracks.astype(np.float32),
        occluded=occluded.astype(bool),
        size=np.array([width, height], np.int32),
    )


def load_prediction(path: str | Path) -> dict[str, np.ndarray]:
    return load_npz(path, {"query_points": (2, "f"), "tracks": (3, "f"), "occluded": (2, "b"), "size": (1, "i")})
