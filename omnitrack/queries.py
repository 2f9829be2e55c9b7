"""Query points of a video, the same for every tracker and for evaluation.

Benchmark videos (synthetic, tapvid) are queried as TAP-Vid does (modes ``first`` and ``strided``,
:func:`omnitrack.data.tapvid.sample_queries`); user videos (mode ``grid``) on a regular grid of one frame.
All coordinates are working-resolution pixels (docs/formats.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omnitrack.errors import InputError
from omnitrack.io import load_npz


def load_ground_truth(source_path: str | Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """-> tracks float32 [N, T, 2] (x, y) in working pixels, occluded bool [N, T]."""
    z = load_npz(source_path, {"points": (3, "f"), "occluded": (2, "b")})
    return z["points"] * np.array([width, height], np.float32), z["occluded"]


def benchmark_queries(source_path: str | Path, mode: str, width: int, height: int):
    """-> query_points float32 [Q, 3] (t, y, x), gt_tracks [Q, T, 2], gt_occluded [Q, T] for ``mode``."""
    from omnitrack.data.tapvid import sample_queries

    tracks, occluded = load_ground_truth(source_path, width, height)
    return sample_queries(tracks, occluded, mode)


def prediction_truth(pred: dict, prediction_path: str | Path, source_path: str | Path, mode: str):
    """:func:`benchmark_queries` of ``mode`` at the size of prediction ``pred`` (as ``load_prediction``
    returns it), checked to be the queries the prediction was made for (InputError naming it if not)."""
    width, height = (int(v) for v in pred["size"])
    truth = benchmark_queries(source_path, mode, width, height)
    queries = truth[0]
    if pred["query_points"].shape != queries.shape or not np.allclose(pred["query_points"], queries, atol=1e-3):
        raise InputError(
            prediction_path,
            f"was made for other query points than the {mode} queries of {source_path} "
            f"({pred['query_points'].shape[0]} vs {queries.shape[0]} points)",
            hint="rerun its track rule",
        )
    return truth


def grid_points(width: int, height: int, frame: int, spacing: int) -> np.ndarray:
    """Pixel centres of a regular grid of ``spacing`` px on ``frame`` -> float32 [Q, 3] (t, y, x); may be empty."""
    ys = np.arange(spacing / 2, height, spacing, dtype=np.float32)
    xs = np.arange(spacing / 2, width, spacing, dtype=np.float32)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([np.full(yy.size, frame, np.float32), yy.ravel(), xx.ravel()], axis=1)


def grid_queries(num_frames: int, width: int, height: int, frame: int, spacing: int) -> np.ndarray:
    """Pixel centres of a regular grid on ``frame`` -> float32 [Q, 3] (t, y, x).

    The grid's points are at spacing/2, 3·spacing/2, ... px in x and y. A frame outside the video, or a
    spacing that leaves no point on the frame (spacing/2 >= width or height), is an InputError naming
    the key: a run must not finish with zero tracks.
    """
    if not 0 <= frame < num_frames:
        raise InputError(
            "config.yaml",
            f"grid.frame {frame} is outside the video's {num_frames} frames",
            hint=f"use a frame in 0..{num_frames - 1}",
        )
    if spacing < 1:
        raise InputError("config.yaml", f"grid.spacing {spacing} must be at least 1")
    if spacing / 2 >= width or spacing / 2 >= height:
        raise InputError(
            "config.yaml",
            f"grid.spacing {spacing} yields no query point on the {width}x{height} "
            f"working frames (the first point would be at {spacing / 2:g} px)",
            hint=f"use a spacing below {2 * min(width, height)} (the working resolution, not the source's)",
        )
    return grid_points(width, height, frame, spacing)


def video_queries(
    truth_path: str | Path | None, mode: str, num_frames: int, width: int, height: int, grid: dict
) -> np.ndarray:
    """The query points of one video in one mode -> float32 [Q, 3] (t, y, x); ``truth_path`` is the
    video's source record with ground truth (benchmark modes; unused for ``grid``)."""
    if mode == "grid":
        return grid_queries(num_frames, width, height, grid["frame"], grid["spacing"])
    if truth_path is None:
        raise ValueError(f"query mode {mode!r} needs the video's ground truth")
    return benchmark_queries(truth_path, mode, width, height)[0]
