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
from omnitrack.interp import flow_targets, pixel_centres, resize_area

MIN_FOLLOW = 64


def _still_static(store: FlowStore, mask: np.ndarray, previous: np.ndarray, i: int) -> np.ndarray | None:
    """bool [H * W]: frame i's pixels that land, through the reliable flow i -> i - 1, on a pixel of
    frame i - 1 with an independence share <= 0.5, or nowhere (outside, or no reliable flow);
    None without that flow."""
    k = store.index.get((i, i - 1))
    if k is None:
        return None
    row, col, inside = flow_targets(store.get(i, i - 1))
    seen = inside & ((np.asarray(mask[k]) & 1) > 0)
    static = previous.reshape(store.height, store.width)[row, col] <= 0.5
    return (~seen | static).reshape(-1)


def independence(
    store: FlowStore, mask: np.ndarray, cfg: dict, rng: np.random.Generator, follow: bool = False
) -> np.ndarray:
    """-> float32 [T, H, W] in [0, 1]: fraction of nearby partners whose flow departs from the dominant motion.

    With ``follow``, the dominant motion is the static scene's as followed through the video: frame
    i's homographies are fitted only to pixels that were static (share <= 0.5) in frame i - 1, where
    the reliable flow i -> i - 1 takes them, and to pixels it does not take anywhere (newly seen).
    Without it, each frame's largest consensus wins: where a moving object fills most of a frame
    (a camera following a jumping motorbike), the object becomes the "static" scene in those frames
    and the background the "moving" one. Frames with fewer than ``MIN_FOLLOW`` such pixels fall back
    to all reliable pixels.
    """
    import cv2

    t, h, w = store.num_frames, store.height, store.width
    grid = pixel_centres(h, w).reshape(-1, 2)
    votes = np.zeros((t, h * w), np.float32)
    partners = np.zeros(t, np.float32)
    n = int(cfg["motion_init_samples"])
    for i in range(t):
        allowed = _still_static(store, mask, votes[i - 1] / max(partners[i - 1], 1), i) if follow and i else None
        for j in (i - 1, i + 1, i - 2, i + 2):
            k = store.index.get((i, j))
            if k is None:
                continue
            flow = store.get(i, j).reshape(-1, 2)
            reliable = (np.asarray(mask[k]).reshape(-1) & 1) > 0
            if allowed is not None and np.count_nonzero(reliable & allowed) >= MIN_FOLLOW:
                reliable &= allowed
            good = np.nonzero(reliable)[0]
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
