"""CaDeX++: the invertible frame <-> canonical map, a stack of monotone piecewise-linear couplings.

Layer k transforms one coordinate ``axes[k]`` of a normalised 3-D point (x, y, z) and keeps the
other two (a, b). Its 10 knot parameters come from an MLP (upstream 112 -> 56 -> 28 -> 10,
LeakyReLU, sigmoid) over [plane features of (tanh a, tanh b) at each resolution ; shared time code
of the frame]. ``axes`` concatenates random permutations of (0, 1, 2), so with 6 layers each axis is
transformed twice.

All layers' parameters are stacked along a leading layer dimension; the planes of all resolutions
of a layer form one table [sum R^2, C] (planes.py). The MLP's first layer is linear in its inputs,
so per optimisation step :meth:`Deformer.prepare` computes for every layer at once
  - the plane tables folded with the first layer's plane weights: [L, sum R^2, H1] (one bmm per
    resolution), so sampling returns that layer's plane term directly (no per-point 64 -> 56 matmul);
  - the first layer's time term (plus bias) for every frame: [L, T, H1], instead of sampling the
    time grids for every point of every layer as upstream does.
Points are grouped as [B, Q] with one frame per group (a frame pair of the batch, or a target frame
at inference); the time term is broadcast over Q, so a layer costs one weighted gather of 4 corners
per resolution plus the 56 -> 28 -> 10 rest of the MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from omnitrack.model import planes
from omnitrack.model.coupling import couple
from omnitrack.model.timecode import TimeCode


@dataclass
class Prepared:
    """Per-step precomputation shared by all deformer calls of the step."""

    tables: list[torch.Tensor]  # L x [sum R^2, H1] plane tables folded with the first MLP layer
    time_pre: list[torch.Tensor]  # L x [T, H1] (first-layer time term + bias)


def coupling_axes(n_layers: int, generator: torch.Generator) -> list[int]:
    perms = [torch.randperm(3, generator=generator).tolist() for _ in range(math.ceil(n_layers / 3))]
    return [a for p in perms for a in p][:n_layers]


def _uniform(shape, fan_in: int, generator: torch.Generator) -> torch.Tensor:
    """nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class Deformer(nn.Module):
    def __init__(
        self,
        num_frames: int,
        n_layers: int = 6,
        feature_dim: int = 32,
        plane_res=(12, 96),
        time_dim: int = 16,
        time_mult=(1, 5, 13),
        time_frames_per_cell: int = 20,
        hidden=(56, 28),
        seed: int = 0,
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n_layers = n_layers
        self.plane_res = [int(r) for r in plane_res]
        self.register_buffer("axes", torch.tensor(coupling_axes(n_layers, g)))
        rows = sum(r * r for r in self.plane_res)
        self.planes = nn.Parameter(torch.randn(n_layers, rows, feature_dim, generator=g) * 1e-4)
        self.time = TimeCode(num_frames, time_dim, time_mult, time_frames_per_cell)
        with torch.no_grad():
            for grid in self.time.grids:
                grid.copy_(torch.randn(grid.shape, generator=g) * 1e-3)
        plane_dim = feature_dim * len(self.plane_res)
        in_dim = plane_dim + self.time.dim
        dims = [in_dim, *[int(h) for h in hidden], 10]
        w1 = _uniform((n_layers, in_dim, dims[1]), in_dim, g)
        self.w1_planes = nn.Parameter(w1[:, :plane_dim].contiguous())
        self.w1_time = nn.Parameter(w1[:, plane_dim:].contiguous())
        self.b1 = nn.Parameter(_uniform((n_layers, dims[1]), in_dim, g))
        self.weights = nn.ParameterList(
            nn.Parameter(_uniform((n_layers, a, b), a, g)) for a, b in zip(dims[1:-1], dims[2:])
        )
        self.biases = nn.ParameterList(
            nn.Parameter(_uniform((n_layers, b), a, g)) for a, b in zip(dims[1:-1], dims[2:])
        )

    def prepare(self) -> Prepared:
        c = self.planes.shape[-1]
        folded, row = [], 0
        for k, r in enumerate(self.plane_res):
            folded.append(torch.bmm(self.planes[:, row : row + r * r], self.w1_planes[:, k * c : (k + 1) * c]))
            row += r * r
        tables = torch.cat(folded, 1)
        code = self.time(torch.arange(self.time.num_frames, device=self.b1.device))
        time_pre = torch.einsum("td,ldh->lth", code, self.w1_time) + self.b1.unsqueeze(1)
        # unbind (not indexing) so the backward gathers all layers' gradients in one allocation
        return Prepared(tables.unbind(0), time_pre.unbind(0))

    def _params(self, k: int, u: torch.Tensor, v: torch.Tensor, frames: torch.Tensor, prep: Prepared) -> torch.Tensor:
        """Knot parameters of layer k: u, v [B, Q] kept coordinates, frames [B] -> s [B, Q, 10]."""
        h = planes.sample(prep.tables[k], u, v, self.plane_res) + prep.time_pre[k].index_select(0, frames).unsqueeze(1)
        for wt, bias in zip(self.weights, self.biases):
            h = torch.matmul(F.leaky_relu(h), wt[k]) + bias[k]
        return torch.sigmoid(h)

    def _run(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None, inverse: bool):
        prep = prep if prep is not None else self.prepare()
        pts = list(pts)
        axes = self.axes.tolist()
        order = range(self.n_layers - 1, -1, -1) if inverse else range(self.n_layers)
        for k in order:
            c = axes[k]
            a, b = [i for i in range(3) if i != c]
            s = self._params(k, pts[a], pts[b], frames, prep)
            pts[c] = couple(pts[c], s, inverse=inverse)
        return pts

    def forward(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None = None):
        """Frame -> canonical. pts: 3 tensors [B, Q] (normalised x, y, z); frames [B] long."""
        return self._run(pts, frames, prep, inverse=False)

    def inverse(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None = None):
        """Canonical -> frame (exact inverse of :meth:`forward`)."""
        return self._run(pts, frames, prep, inverse=True)
