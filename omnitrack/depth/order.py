"""Depth order against a true layer map: the measure for ``depth.method: layers`` and the upper bound.

- :func:`order_accuracy`: over every pair of pixels ``reach`` px apart (horizontally or vertically)
  whose true layers differ (a boundary), the share whose depth order is right (the nearer layer has
  the strictly smaller depth), and the share of ties (equal depth: a constant map scores 0 right,
  1 tie).
- :func:`layer_map_depth`: a true layer map (0 = farthest, higher = nearer, as the synthetic
  renderer's ``front``) as a depth file in the fit's units: layer k at ``LEVELS[k]`` (1.0, 0.85, 0.70,
  0.55, then 0.15 nearer per layer, never below 0.1); with the static scene's true relative inverse
  depth (a renderer with ``parallax``), its pixels go from 1.0 (the far plane) to 1.0 - ``relief``
  (the nearest static point), as ``depth.layers.parallax`` places them.
- :func:`relief_accuracy`: inside the static scene, over the pixel pairs ``reach`` px apart whose
  true inverse depths differ by more than ``min_diff``, the share ordered right and the share of ties.
"""

from __future__ import annotations

import numpy as np

LEVELS = (1.0, 0.85, 0.70, 0.55)
TIE = 1e-6


def layer_map_depth(front: np.ndarray, levels=LEVELS, inverse_depth=None, relief: float = 0.15) -> np.ndarray:
    """int [T, H, W] layer map (+ the static scene's inverse depth [T, H, W], NaN off it) -> float32
    [T, H, W] depth (see the module docstring)."""
    front = np.asarray(front).astype(np.int64)
    top = max(int(front.max()) + 1, len(levels))
    table = np.array(
        [levels[k] if k < len(levels) else max(0.1, levels[-1] - 0.15 * (k - len(levels) + 1)) for k in range(top)],
        np.float32,
    )
    depth = table[front]
    if inverse_depth is not None:
        k = np.asarray(inverse_depth, np.float64)
        static = np.isfinite(k)
        span = np.nanmax(k) - 1.0 if static.any() else 0.0
        if span > 0:
            depth[static] -= np.float32(relief) * ((k[static] - 1.0) / span).astype(np.float32)
    return depth


def order_accuracy(depth: np.ndarray, front: np.ndarray, reach: int = 2) -> dict:
    """-> {"pairs": n, "correct": share right, "ties": share equal} over the boundary pairs of
    ``front`` [T, H, W] (see the module docstring); depth [T, H, W] in any units where nearer = smaller."""
    return _pair_order(depth, np.asarray(front).astype(np.int64), reach, 0.0, "layer map")


def relief_accuracy(depth: np.ndarray, inverse_depth: np.ndarray, reach: int = 8, min_diff: float = 0.05) -> dict:
    """-> {"pairs", "correct", "ties"} over the static pixel pairs ``reach`` px apart (horizontally or
    vertically) whose true inverse depths [T, H, W] (NaN off the static scene) differ by more than
    ``min_diff``; right: the larger inverse depth has the strictly smaller depth."""
    return _pair_order(depth, inverse_depth, reach, min_diff, "inverse depth")


def _pair_order(depth: np.ndarray, nearness: np.ndarray, reach: int, min_diff: float, name: str) -> dict:
    """The order measure over pixel pairs ``reach`` px apart (horizontally or vertically) whose true
    ``nearness`` [T, H, W] (larger = nearer; NaN: not scored) differs by more than ``min_diff``."""
    depth = np.asarray(depth, np.float64)
    near = np.asarray(nearness, np.float64)
    if depth.shape != near.shape:
        raise ValueError(f"depth {depth.shape} and {name} {near.shape} differ in shape")
    pairs = correct = ties = 0
    for dy, dx in ((0, reach), (reach, 0)):
        h, w = near.shape[1] - dy, near.shape[2] - dx
        na, nb = near[:, :h, :w], near[:, dy:, dx:]
        da, db = depth[:, :h, :w], depth[:, dy:, dx:]
        with np.errstate(invalid="ignore"):
            sel = np.abs(na - nb) > min_diff  # False where either is NaN
        diff = (db - da)[sel]  # > 0 when a is nearer
        want = np.sign(na - nb)[sel]
        pairs += int(sel.sum())
        correct += int(((np.abs(diff) > TIE) & (np.sign(diff) == want)).sum())
        ties += int((np.abs(diff) <= TIE).sum())
    return {
        "pairs": pairs,
        "correct": correct / pairs if pairs else float("nan"),
        "ties": ties / pairs if pairs else float("nan"),
    }
