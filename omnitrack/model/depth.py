"""Per-frame depth maps: optimised parameters at a fraction of the working resolution.

A map [T, h, w] with h = max(1, floor(res * H)), w = max(1, floor(res * W)) covers the image: the
cell of pixel point (x, y) is (floor(y * h / H), floor(x * w / W)), clamped to the map (nearest
sampling, as upstream). Depth enters the model only through these look-ups, so gradients reach the
looked-up cells.
"""

from __future__ import annotations

import torch
from torch import nn


def map_size(height: int, width: int, res: float) -> tuple[int, int]:
    return max(1, int(res * height)), max(1, int(res * width))


class DepthMaps(nn.Module):
    """maps: the optimised depth [T, h, w]; initial: the frozen initialisation (for regularisers)."""

    def __init__(self, initial: torch.Tensor, height: int, width: int):
        super().__init__()
        self.maps = nn.Parameter(initial.clone())
        self.register_buffer("initial", initial.clone())
        self.height, self.width = int(height), int(width)

    def cells(self, frames: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        """frames [B], x/y [B, Q] pixels -> (frame [B, 1], row [B, Q], col [B, Q]) long."""
        _, h, w = self.maps.shape
        row = (y.detach() * (h / self.height)).floor().clamp_(0, h - 1).long()
        col = (x.detach() * (w / self.width)).floor().clamp_(0, w - 1).long()
        return frames.view(-1, 1), row, col

    def lookup(self, cells, initial: bool = False) -> torch.Tensor:
        """Depth at ``cells`` (from :meth:`cells`) -> [B, Q]."""
        f, row, col = cells
        maps = self.initial if initial else self.maps
        _, h, w = maps.shape
        return maps.view(-1).take((f * h + row) * w + col)

    def gradient(self, cells, initial: bool = False) -> torch.Tensor:
        """Finite differences (d(x-1, y) - d, d(x, y-1) - d) at ``cells`` -> [B, Q, 2]."""
        f, row, col = cells
        maps = self.initial if initial else self.maps
        _, h, w = maps.shape
        flat = maps.view(-1)
        base = f * h
        d = flat.take((base + row) * w + col)
        left = flat.take((base + row) * w + (col - 1).clamp_(min=0))
        up = flat.take((base + (row - 1).clamp_(min=0)) * w + col)
        return torch.stack([left - d, up - d], -1)
