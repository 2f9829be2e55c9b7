"""The optimised scene of one video: deformation + depth maps + camera + normalising bound.

A pixel (x, y) of frame i is moved by frame i's dominant motion (none unless ``frame_shift``: a shift,
or with ``frame_similarity`` a similarity about the image centre: shift.py), lifted with frame i's
depth, normalised by the bound, mapped to the canonical space by the deformer at frame i, mapped back
by the inverse at frame j, de-normalised, projected and moved back by the inverse of frame j's
motion: :meth:`Scene.correspond`.
"""

from __future__ import annotations

import torch
from torch import nn

from omnitrack.model.deformer import Deformer, Prepared
from omnitrack.model.depth import DepthMaps
from omnitrack.model.geometry import Camera, about_centre, scene_bound


def build_deformer(num_frames: int, cfg: dict) -> Deformer:
    return Deformer(
        num_frames,
        n_layers=cfg["n_layers"],
        feature_dim=cfg["feature_dim"],
        plane_res=cfg["plane_res"],
        time_dim=cfg["time_dim"],
        time_mult=cfg["time_mult"],
        time_frames_per_cell=cfg["time_frames_per_cell"],
        hidden=cfg["hidden"],
        seed=cfg["seed"],
    )


class Scene(nn.Module):
    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        depth_init: torch.Tensor,
        cfg: dict,
        shift: torch.Tensor | None = None,
        linear: torch.Tensor | None = None,
    ):
        """depth_init [T, h, w]: the initial depth maps at the optimised resolution; shift [T, 2]: each
        frame's (x, y) shift in pixels (shift.py; None: zero, upstream's lift); linear [T, 2, 2]: each
        frame's rotation and scale about the image centre, applied before the shift (None: none)."""
        super().__init__()
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.deformer = build_deformer(num_frames, cfg)
        self.depth = DepthMaps(depth_init, height, width)
        self.camera = Camera(width, height, cfg["fov_deg"])
        shift = torch.zeros(num_frames, 2) if shift is None else torch.as_tensor(shift, dtype=torch.float32)
        self.register_buffer("shift", shift.clone())
        self.register_buffer("linear", None if linear is None else torch.as_tensor(linear, dtype=torch.float32).clone())
        self.register_buffer("linear_inv", None if linear is None else torch.linalg.inv(self.linear))
        centre, half = scene_bound(self.camera, depth_init, cfg["bound_shrink"], cfg["bound_floor"], shift, self.linear)
        self.register_buffer("centre", centre)
        self.register_buffer("extent", half)

    def lift(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor, frames: torch.Tensor) -> list[torch.Tensor]:
        """Pixels (x, y) of frames [B] at depth d [B, Q] -> normalised 3-D point as 3 tensors [B, Q]."""
        c, h = self.centre.tolist(), self.extent.tolist()
        if self.linear is not None:
            x, y = about_centre(self.linear[frames].unsqueeze(1), x, y, self.camera.cx, self.camera.cy)
        s = self.shift[frames].unsqueeze(1)  # [B, 1, 2]
        return [(v - c[k]) / h[k] for k, v in enumerate(self.camera.unproject(x + s[..., 0], y + s[..., 1], d))]

    def unlift(self, pts: list[torch.Tensor], frames: torch.Tensor):
        """Normalised point [B, Q] -> (x, y) pixels of frames [B] and depth z, each [B, Q]."""
        c, h = self.centre.tolist(), self.extent.tolist()
        x, y, z = self.camera.project(*[p * h[k] + c[k] for k, p in enumerate(pts)])
        s = self.shift[frames].unsqueeze(1)
        x, y = x - s[..., 0], y - s[..., 1]
        if self.linear is not None:
            x, y = about_centre(self.linear_inv[frames].unsqueeze(1), x, y, self.camera.cx, self.camera.cy)
        return x, y, z

    def correspond(
        self, prep: Prepared, fi: torch.Tensor, fj: torch.Tensor, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor
    ):
        """Map pixels (x, y) [B, Q] of frames fi [B] (depth d [B, Q]) to frames fj [B] -> x2, y2, z2 [B, Q]."""
        canon = self.deformer(self.lift(x, y, d, fi), fi, prep)
        return self.unlift(self.deformer.inverse(canon, fj, prep), fj)
