"""The optimised scene of one video: deformation + depth maps + camera + normalising bound.

A pixel (x, y) of frame i is lifted with frame i's depth, normalised by the bound, mapped to the
canonical space by the deformer at frame i, mapped back by the inverse at frame j, de-normalised and
projected: :meth:`Scene.correspond`.
"""

from __future__ import annotations

import torch
from torch import nn

from omnitrack.model.deformer import Deformer, Prepared
from omnitrack.model.depth import DepthMaps
from omnitrack.model.geometry import Camera, scene_bound


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
    def __init__(self, num_frames: int, height: int, width: int, depth_init: torch.Tensor, cfg: dict):
        """depth_init [T, h, w]: the initial depth maps at the optimised resolution."""
        super().__init__()
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.deformer = build_deformer(num_frames, cfg)
        self.depth = DepthMaps(depth_init, height, width)
        self.camera = Camera(width, height, cfg["fov_deg"])
        centre, half = scene_bound(self.camera, depth_init, cfg["bound_shrink"], cfg["bound_floor"])
        self.register_buffer("centre", centre)
        self.register_buffer("extent", half)

    def lift(self, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor) -> list[torch.Tensor]:
        """Pixels (x, y) at depth d [B, Q] -> normalised 3-D point as 3 tensors [B, Q]."""
        c, h = self.centre.tolist(), self.extent.tolist()
        return [(v - c[k]) / h[k] for k, v in enumerate(self.camera.unproject(x, y, d))]

    def unlift(self, pts: list[torch.Tensor]):
        """Normalised point -> (x, y) pixels and depth z, each [B, Q]."""
        c, h = self.centre.tolist(), self.extent.tolist()
        return self.camera.project(*[p * h[k] + c[k] for k, p in enumerate(pts)])

    def correspond(
        self, prep: Prepared, fi: torch.Tensor, fj: torch.Tensor, x: torch.Tensor, y: torch.Tensor, d: torch.Tensor
    ):
        """Map pixels (x, y) [B, Q] of frames fi [B] (depth d [B, Q]) to frames fj [B] -> x2, y2, z2 [B, Q]."""
        canon = self.deformer(self.lift(x, y, d), fi, prep)
        return self.unlift(self.deformer.inverse(canon, fj, prep))
