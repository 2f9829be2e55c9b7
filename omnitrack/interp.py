"""Sampling per-pixel arrays at continuous points (numpy, CPU).

Points follow the project convention (docs/formats.md): pixel (r, c) has its centre at
(c + 0.5, r + 0.5), so the array index coordinate of point (x, y) is (x - 0.5, y - 0.5).
"""

from __future__ import annotations

import numpy as np


def bilinear(arr: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample ``arr`` [H, W, C] (or [H, W]) at points ``xy`` [N, 2] -> [N, C] (or [N]) float32.

    Only the 4 neighbours of each point are read, so ``arr`` may be a memory map of any dtype.

    Points outside the image are clamped to the border pixels (replicate padding).
    """
    (y0, x0, y1, x1), (fx, fy) = bilinear_corners(xy, *arr.shape[:2])
    if arr.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]

    def at(r, c):
        return arr[r, c].astype(np.float32)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


def bilinear_corners(xy: np.ndarray, h: int, w: int):
    """The 4 pixels and the fractions of bilinear sampling of an [h, w] array at points ``xy`` [N, 2]
    (border replicated) -> (y0, x0, y1, x1) int64 [N] and (fx, fy) float32 [N]: the sample is
    (a[y0, x0] (1 - fx) + a[y0, x1] fx) (1 - fy) + (a[y1, x0] (1 - fx) + a[y1, x1] fx) fy."""
    x = np.clip(np.asarray(xy[:, 0], np.float64) - 0.5, 0, w - 1)
    y = np.clip(np.asarray(xy[:, 1], np.float64) - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2 if h > 1 else 0)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    return (y0, x0, y1, x1), ((x - x0).astype(np.float32), (y - y0).astype(np.float32))


def nearest(arr: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Value of the pixel containing each point of ``xy`` [N, 2] (clamped to the image)."""
    h, w = arr.shape[:2]
    c = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, w - 1)
    r = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, h - 1)
    return arr[r, c]


def pixel_centres(height: int, width: int) -> np.ndarray:
    """float32 [H, W, 2]: the (x, y) centre of every pixel."""
    ys, xs = np.meshgrid(
        np.arange(height, dtype=np.float32) + 0.5, np.arange(width, dtype=np.float32) + 0.5, indexing="ij"
    )
    return np.stack([xs, ys], axis=-1)


def flow_targets(flow: np.ndarray):
    """flow [H, W, 2] -> (rows, cols) int of the pixel each pixel centre lands on, inside bool [H, W]."""
    h, w = flow.shape[:2]
    centres = pixel_centres(h, w)
    x, y = centres[..., 0] + flow[..., 0], centres[..., 1] + flow[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    col = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    return row, col, inside


def resize_area(depth: np.ndarray, h: int, w: int) -> np.ndarray:
    """depth [T, H, W] -> [T, h, w]: each cell is the mean of the pixels it covers (area weighted).

    Upstream takes the pixel under each cell's centre, which is the same on a smooth depth map but
    aliases a start that varies from pixel to pixel (the motion start's per-pixel votes): on DAVIS the
    centre pixel cost nvp .03-.06 AJ on dog and motocross-jump (BENCHMARKS.md §5c).
    """
    import cv2

    depth = np.asarray(depth, np.float32)
    if depth.shape[1:] == (h, w):
        return np.ascontiguousarray(depth)
    return np.stack([cv2.resize(d, (w, h), interpolation=cv2.INTER_AREA) for d in depth]).astype(np.float32)
