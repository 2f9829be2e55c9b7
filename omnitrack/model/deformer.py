"""CaDeX++: the invertible frame <-> canonical map, a stack of monotone piecewise-linear couplings.

Layer k transforms one coordinate ``axes[k]`` of a normalised 3-D point (x, y, z) and keeps the
other two (a, b). Its 10 knot parameters come from an MLP (upstream 112 -> 56 -> 28 -> 10,
LeakyReLU, sigmoid) over [plane features of (tanh a, tanh b) at each resolution ; shared time code
of the frame]. ``axes`` concatenates random permutations of (0, 1, 2), so with 6 layers each axis is
transformed twice, never by two consecutive layers (:func:`coupling_axes`).

All layers' parameters are stacked along a leading layer dimension; the planes of all resolutions
of a layer are stored as one table [sum R^2, C]. The MLP's first layer is linear in its inputs, so
per optimisation step :meth:`Deformer.prepare` computes for every layer at once one table
[T + sum R^2, H1] of
  - the first layer's time term (plus bias) for every frame, instead of sampling the time grids for
    every point of every layer as upstream does;
  - the planes folded with the first layer's plane weights (one bmm per resolution), so sampling
    returns that layer's plane term directly (no per-point 64 -> 56 matmul).
Points are grouped as [B, Q] with one frame per group (a frame pair of the batch, or a target frame
at inference). A layer is one autograd node (layer.py): one weighted gather of the frame's time row
and 4 corners per resolution, the 56 -> 28 -> 10 rest of the MLP, the knots and the interpolation,
with a hand-written backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from omnitrack.model.layer import CouplingLayer
from omnitrack.model.timecode import TimeCode


@dataclass
class Prepared:
    """Per-step precomputation shared by all deformer calls of the step."""

    # L x [T + sum R^2, H1]: the first MLP layer's time term plus bias of each frame, then the layer's
    # planes (all levels) folded with the first layer's plane weights
    tables: list[torch.Tensor]
    tail: list[tuple[torch.Tensor, ...]]  # L x (w_2, b_2, ..., w_n, b_n): the rest of each layer's MLP


def coupling_axes(n_layers: int, generator: torch.Generator) -> list[int]:
    """The axis each layer transforms: random permutations of (0, 1, 2) concatenated (upstream's rule),
    each rotated by one where it would start with the axis the previous one ended with.

    Two consecutive layers on one axis see the same two kept coordinates, so together they are one
    monotone map of that axis: the stack would have a layer fewer. Upstream draws its permutations
    once with seed 1234, which gives no such repeat ([0, 2, 1, 0, 2, 1], unchanged here); a third of
    the other seeds would.
    """
    axes: list[int] = []
    for _ in range(math.ceil(n_layers / 3)):
        p = torch.randperm(3, generator=generator).tolist()
        if axes and p[0] == axes[-1]:
            p = p[1:] + p[:1]
        axes += p
    return axes[:n_layers]


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
        code = self.time(torch.arange(self.time.num_frames, device=self.b1.device))
        levels = self.planes.split([r * r for r in self.plane_res], 1)  # (split: no zero-filled slice gradients)
        w1 = self.w1_planes.split(c, 1)
        tables = torch.cat(
            [
                torch.einsum("td,ldh->lth", code, self.w1_time) + self.b1.unsqueeze(1),
                *[torch.bmm(p, w) for p, w in zip(levels, w1)],
            ],
            1,
        )
        tail = [p.unbind(0) for wb in zip(self.weights, self.biases) for p in wb]
        # unbind (not indexing) so the backward gathers all layers' gradients in one allocation
        return Prepared(tables.unbind(0), list(zip(*tail)))

    def _run(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None, inverse: bool):
        prep = prep if prep is not None else self.prepare()
        pts = list(pts)
        axes = self.axes.tolist()
        order = range(self.n_layers - 1, -1, -1) if inverse else range(self.n_layers)
        for k in order:
            c = axes[k]
            a, b = [i for i in range(3) if i != c]
            pts[c] = CouplingLayer.apply(
                pts[c], pts[a], pts[b], prep.tables[k], frames, self.plane_res, inverse, *prep.tail[k]
            )
        return pts

    def forward(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None = None):
        """Frame -> canonical. pts: 3 tensors [B, Q] (normalised x, y, z); frames [B] long."""
        return self._run(pts, frames, prep, inverse=False)

    def inverse(self, pts: list[torch.Tensor], frames: torch.Tensor, prep: Prepared | None = None):
        """Canonical -> frame (exact inverse of :meth:`forward`)."""
        return self._run(pts, frames, prep, inverse=True)
