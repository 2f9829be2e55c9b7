"""The shared multi-resolution 1-D time code of the deformation.

Three learnable grids of ``channels`` features over normalised time t = i / (T - 1) in [0, 1]
(linear interpolation between cell centres placed at both ends, i.e. align_corners=True). The grid
resolutions are ``m * max(1, T // frames_per_cell)`` for each multiplier m (upstream: m = 1, 5, 13,
20 frames per cell), and at least 2 cells, so a video shorter than 20 frames still gets a
time-varying code (upstream's grids have zero width there).
"""

from __future__ import annotations

import torch
from torch import nn


def grid_sizes(num_frames: int, multipliers, frames_per_cell: int) -> list[int]:
    base = max(1, num_frames // frames_per_cell)
    return [max(2, int(m) * base) for m in multipliers]


class TimeCode(nn.Module):
    """code(frames [F] long) -> [F, len(multipliers) * channels]."""

    def __init__(
        self,
        num_frames: int,
        channels: int = 16,
        multipliers=(1, 5, 13),
        frames_per_cell: int = 20,
        init_std: float = 1e-3,
    ):
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"a video needs at least 2 frames, got {num_frames}")
        self.num_frames = num_frames
        self.sizes = grid_sizes(num_frames, multipliers, frames_per_cell)
        self.grids = nn.ParameterList(nn.Parameter(torch.randn(r, channels) * init_std) for r in self.sizes)
        self.dim = channels * len(self.sizes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = frames.to(self.grids[0].dtype) / (self.num_frames - 1)
        out = []
        for r, grid in zip(self.sizes, self.grids):
            p = t * (r - 1)
            i0 = p.detach().floor().clamp_(0, r - 2)
            f = (p - i0).unsqueeze(1)
            i0 = i0.long()
            out.append(torch.lerp(grid.index_select(0, i0), grid.index_select(0, i0 + 1), f))
        return torch.cat(out, 1)
