"""A depth start that separates independently moving regions (used when no depth maps are given).

With a constant initial depth, a moving object and the background behind it lie on one surface, so
the bijective 3-D map can move neighbouring pixels differently only once the optimisation has
pulled their depths apart, which short runs do not achieve. This start puts the pixels that do not
follow the dominant (camera) motion nearer:

For each frame i and each partner j = i +- 1, i +- 2 with a flow in the store, a homography is
fitted with RANSAC to the reliable flow (mask bit 1) from ``motion_init_samples`` random pixels;
a pixel is "independent" for that partner when its flow misses the homography by more than
``motion_init_thresh`` x |i - j| px. Its independence score is the fraction of its partners that
say so. The depth map (at the optimised resolution, area average of the score per cell) is
``depth_init x (1 - motion_init_sep x score)``. ``motion_init_sep = 0`` gives upstream's constant
start. No assumption beyond "moving objects tend to be in front of the background"; the ordering is
then refined by the losses.
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import FlowStore
from omnitrack.model.depth import resize_area


def independence(store: FlowStore, mask: np.ndarray, cfg: dict, rng: np.random.Generator) -> np.ndarray:
    """-> float32 [T, H, W] in [0, 1]: fraction of nearby partners whose flow departs from the dominant motion."""
    import cv2

    t, h, w = store.num_frames, store.height, store.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    votes = np.zeros((t, h * w), np.float32)
    partners = np.zeros(t, np.float32)
    n = int(cfg["motion_init_samples"])
    for i in range(t):
        for j in (i - 1, i + 1, i - 2, i + 2):
            k = store.index.get((i, j))
            if k is None:
                continue
            flow = store.get(i, j).reshape(-1, 2)
            good = np.nonzero(np.asarray(mask[k]).reshape(-1) & 1)[0]
            if good.size < 8:
                continue
            pick = good[rng.integers(0, good.size, min(n, good.size))]
            tol = float(cfg["motion_init_thresh"]) * abs(i - j)
            hom, _ = cv2.findHomography(grid[pick], grid[pick] + flow[pick], cv2.RANSAC, tol, maxIters=500)
            if hom is None:
                continue
            pred = cv2.perspectiveTransform(grid[None], hom)[0]
            votes[i] += np.abs(grid + flow - pred).max(1) > tol
            partners[i] += 1
    return (votes / np.maximum(partners, 1)[:, None]).reshape(t, h, w)


def motion_depth(store: FlowStore, mask: np.ndarray, dh: int, dw: int, cfg: dict) -> np.ndarray:
    """Initial depth maps float32 [T, dh, dw] (see the module docstring)."""
    base = float(cfg["depth_init"])
    t = store.num_frames
    if cfg["motion_init_sep"] <= 0:
        return np.full((t, dh, dw), base, np.float32)
    score = independence(store, mask, cfg, np.random.default_rng(cfg["seed"]))
    cells = resize_area(score, dh, dw)
    return (base * (1 - float(cfg["motion_init_sep"]) * np.clip(cells, 0, 1))).astype(np.float32)
