"""Pinhole camera, the robust scene bound, and the frame-space <-> normalised-space maps.

Pixels follow docs/formats.md: (x, y) in working-resolution pixels, origin at the top-left corner of
the top-left pixel. The principal point is the image centre (W/2, H/2) in that convention and the
focal length is f = W / (2 tan(fov / 2)) (upstream: fov = 40 degrees).
"""

from __future__ import annotations

import math

import torch


class Camera:
    def __init__(self, width: int, height: int, fov_deg: float = 40.0):
        self.width, self.height = int(width), int(height)
        self.focal = self.width / (2 * math.tan(math.radians(fov_deg) / 2))
        self.cx, self.cy = self.width / 2, self.height / 2

    def unproject(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor):
        """Pixel (x, y) at depth d -> camera-space (X, Y, Z), all of the same shape."""
        return (x - self.cx) * (d / self.focal), (y - self.cy) * (d / self.focal), d

    def project(self, X: torch.Tensor, Y: torch.Tensor, Z: torch.Tensor):
        """Camera-space point -> (x, y) pixels and its depth Z."""
        return self.focal * X / Z + self.cx, self.focal * Y / Z + self.cy, Z

    def inside(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """True where (x, y) lies in the image [0, W] x [0, H] (same pixel system as the tracks)."""
        return (x >= 0) & (x <= self.width) & (y >= 0) & (y <= self.height)


def about_centre(m: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cx: float, cy: float):
    """m [..., 2, 2] applied to the points (x, y) [...] about (cx, cy): m (p - c) + c -> (x', y')."""
    x, y = x - cx, y - cy
    return m[..., 0, 0] * x + m[..., 0, 1] * y + cx, m[..., 1, 0] * x + m[..., 1, 1] * y + cy


def scene_bound(
    camera: Camera,
    depth: torch.Tensor,
    shrink: float = 0.8,
    floor: float = 0.25,
    shift: torch.Tensor | None = None,
    linear: torch.Tensor | None = None,
):
    """Robust bound of the unprojected depth maps.

    depth [T, h, w] (maps at any resolution; cell centres are unprojected at their full-resolution
    pixel position, moved by the frame's ``linear`` [T, 2, 2] about the image centre and ``shift``
    [T, 2] (x, y) pixels when given: shift.py) -> centre
    [3], half extent [3]. Per axis: centre = median, half = shrink * min(median - min, max - median)
    (upstream's rule). A flat axis (e.g. z for a constant initial depth) would give 0: every half
    extent is at least ``floor`` times the largest one.
    """
    t, h, w = depth.shape
    ys = (torch.arange(h, dtype=depth.dtype) + 0.5) * (camera.height / h)
    xs = (torch.arange(w, dtype=depth.dtype) + 0.5) * (camera.width / w)
    y, x = (c.expand(t, h, w) for c in torch.meshgrid(ys, xs, indexing="ij"))
    if linear is not None:
        x, y = about_centre(linear.to(depth.dtype).view(t, 1, 1, 2, 2), x, y, camera.cx, camera.cy)
    if shift is not None:
        x = x + shift[:, 0].to(depth.dtype).view(t, 1, 1)
        y = y + shift[:, 1].to(depth.dtype).view(t, 1, 1)
    pts = torch.stack(camera.unproject(x, y, depth), -1).reshape(-1, 3)
    med = pts.median(0).values
    half = shrink * torch.minimum(med - pts.min(0).values, pts.max(0).values - med)
    half = torch.maximum(half, floor * half.max()).clamp_min(1e-6)
    return med, half
