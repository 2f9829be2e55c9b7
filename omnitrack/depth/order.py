"""Depth order against a true layer map: the measure for ``depth.method: layers`` and the upper bound.

- :func:`order_accuracy`: over every pair of pixels ``reach`` px apart (horizontally or vertically)
  whose true layers differ (a boundary), the share whose depth order is right (the nearer layer has
  the strictly smaller depth), and the share of ties (equal depth: a constant map scores 0 right,
  1 tie).
- :func:`layer_map_depth`: a true layer map (0 = farthest, higher = nearer, as the synthetic
  renderer's ``front``) as a depth file in the fit's units: layer k at ``LEVELS[k]`` (1.0, 0.85, 0.70,
  0.55, then 0.15 nearer per layer, never below 0.1).
"""

from __future__ import annotations

import numpy as np

LEVELS = (1.0, 0.85, 0.70, 0.55)
TIE = 1e-6


def layer_map_depth(front: np.ndarray, levels=LEVELS) -> np.ndarray:
    """int [T, H, W] layer map -> float32 [T, H, W] depth (see the module docstring)."""
    front = np.asarray(front).astype(np.int64)
    top = max(int(front.max()) + 1, len(levels))
    table = np.array(
        [levels[k] if k < len(levels) else max(0.1, levels[-1] - 0.15 * (k - len(levels) + 1)) for k in range(top)],
        np.float32,
    )
    return table[front]


def order_accuracy(depth: np.ndarray, front: np.ndarray, reach: int = 2) -> dict:
    """-> {"pairs": n, "correct": share right, "ties": share equal} over the boundary pairs of
    ``front`` [T, H, W] (see the module docstring); depth [T, H, W] in any units where nearer = smaller."""
    depth = np.asarray(depth, np.float64)
    front = np.asarray(front).astype(np.int64)
    if depth.shape != front.shape:
        raise ValueError(f"depth {depth.shape} and layer map {front.shape} differ in shape")
    pairs = correct = ties = 0
    for dy, dx in ((0, reach), (reach, 0)):
        h, w = front.shape[1] - dy, front.shape[2] - dx
        fa, fb = front[:, :h, :w], front[:, dy:, dx:]
        da, db = depth[:, :h, :w], depth[:, dy:, dx:]
        boundary = fa != fb
        diff = (db - da)[boundary]  # > 0 when a is nearer
        want = np.sign(fa - fb)[boundary]
        pairs += int(boundary.sum())
        correct += int(((np.abs(diff) > TIE) & (np.sign(diff) == want)).sum())
        ties += int((np.abs(diff) <= TIE).sum())
    return {
        "pairs": pairs,
        "correct": correct / pairs if pairs else float("nan"),
        "ties": ties / pairs if pairs else float("nan"),
    }
