"""An upstream-style CaDeX++ deformation, the yardstick of ``python -m omnitrack.bench deformer``.

Written from a description of upstream's ``NVPnonlin``, ``CouplingLayer``, ``MultiResBiplane`` and
``InterpGrad`` (networks/nvp_nonlin.py, networks/triplane.py of TimSong412/OmniTrackFast), with
upstream's structure and its costs, to time our :class:`omnitrack.model.deformer.Deformer` against it
side by side:

  - points are one tensor [B, Q, 3]; every layer keeps its untouched coordinates by a 0/1 mask and
    writes the transformed one back as ``x * mask + (1 - mask) * y``;
  - per layer, two feature planes [1, C, R, R] (R = 12 and 96) sampled per point with
    ``F.grid_sample`` (bilinear, align_corners=True, zero padding) at the tanh of the kept coordinates,
    concatenated [N, 2 C];
  - the shared time grids [1, D, 1, r] sampled per point *in every layer* with ``F.grid_sample`` and
    concatenated [N, 3 D];
  - an ``nn.Sequential`` MLP per layer, 2 C + 3 D -> 56 -> LeakyReLU -> 28 -> LeakyReLU -> 10 -> sigmoid;
  - the piecewise-linear map as a custom autograd function whose forward finds the segment with a
    one-hot over the 5 segments and saves the dense partial derivatives w.r.t. the query and all 12
    knots, and whose backward multiplies them by the incoming gradient.

It computes the same map as :class:`Deformer` given the same parameters (:meth:`UpstreamDeformer.from_deformer`):
the same knot layout, coupling axes, time normalisation t = i / (T - 1) (upstream uses (i + 1) / T,
which does not change the cost) and grid sizes. Two details differ from upstream where upstream's
choice would only lose precision: the query is clamped to the far knots (upstream: 0.99 x), and the
left outer segment is interpolated from its inner knot, as ours is (from the far knot, ~1e4 away,
float32 loses ~1e-3). Upstream scripts the interpolation with ``torch.jit.script``, which is
deprecated in this torch and whose CPU fuser is off by default; it runs eagerly here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from omnitrack.model.coupling import FAR
from omnitrack.model.deformer import Deformer


class InterpGrad(torch.autograd.Function):
    """Polyline (xk -> yk) at q, saving the dense partials; q [N], xk, yk [N, 6] -> [N]."""

    @staticmethod
    def forward(ctx, q, xk, yk):
        qc = torch.minimum(torch.maximum(q, xk[:, 0]), xk[:, -1])
        lo, hi = xk[:, :-1], xk[:, 1:]
        seg = ((qc.unsqueeze(1) >= lo) & (qc.unsqueeze(1) < hi)).to(q.dtype)  # [N, 5] one-hot
        seg[:, -1] += (qc == xk[:, -1]).to(q.dtype)  # the right end belongs to the last segment
        x0, x1 = (seg * lo).sum(1), (seg * hi).sum(1)
        y0, y1 = (seg * yk[:, :-1]).sum(1), (seg * yk[:, 1:]).sum(1)
        dx, dy = x1 - x0, y1 - y0
        slope = dy / dx
        first = seg[:, 0]
        anchor_x = first * x1 + (1 - first) * x0
        anchor_y = first * y1 + (1 - first) * y0
        out = anchor_y + (qc - anchor_x) * slope
        a = (qc - anchor_x) / dx + first  # position in the segment, (q - x0) / dx
        zero = q.new_zeros(q.shape[0], 1)
        left, right = torch.cat([seg, zero], 1), torch.cat([zero, seg], 1)  # one-hot of x0 and x1 [N, 6]
        d_q = slope * (q == qc).to(q.dtype)
        d_x = (left * (a - 1).unsqueeze(1) - right * a.unsqueeze(1)) * slope.unsqueeze(1)
        d_y = left * (1 - a).unsqueeze(1) + right * a.unsqueeze(1)
        ctx.save_for_backward(d_q, d_x, d_y)
        return out

    @staticmethod
    def backward(ctx, g):
        d_q, d_x, d_y = ctx.saved_tensors
        return g * d_q, g.unsqueeze(1) * d_x, g.unsqueeze(1) * d_y


def knots(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s [N, 10] in (0, 1) -> x knots, y knots [N, 6] (the layout of coupling.knots)."""
    dxl2, dxl1, dxr1, dxr2, dyl2, dyl1, dyr1, dyr2, kl, kr = s.split(1, -1)
    xl1, yl1 = -dxl1, -dyl1
    xl2, yl2 = xl1 - dxl2, yl1 - dyl2
    xr2, yr2 = dxr1 + dxr2, dyr1 + dyr2
    xk = torch.cat([xl2 - FAR, xl2, xl1, dxr1, xr2, xr2 + FAR], -1)
    yk = torch.cat([yl2 - 2 * kl * FAR, yl2, yl1, dyr1, yr2, yr2 + 2 * kr * FAR], -1)
    return xk, yk


class TimeGrids(nn.Module):
    """Upstream's shared 1-D time grids [1, D, 1, r]; code(t [N] in [0, 1]) -> [N, D * len(sizes)]."""

    def __init__(self, sizes: list[int], channels: int):
        super().__init__()
        self.grids = nn.ParameterList(nn.Parameter(torch.zeros(1, channels, 1, r)) for r in sizes)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        coord = torch.stack([t * 2 - 1, torch.zeros_like(t)], -1).view(1, 1, -1, 2)
        return torch.cat([F.grid_sample(g, coord, align_corners=True)[0, :, 0].t() for g in self.grids], -1)


class CouplingLayer(nn.Module):
    """One upstream coupling: transforms coordinate ``axis`` of x [N, 3], conditioned on the other two."""

    def __init__(self, axis: int, feature_dim: int, plane_res: list[int], time_dim: int, hidden: list[int]):
        super().__init__()
        self.axis = axis
        self.kept = [i for i in range(3) if i != axis]
        mask = torch.ones(3)
        mask[axis] = 0
        self.register_buffer("mask", mask)
        self.planes = nn.ParameterList(nn.Parameter(torch.zeros(1, feature_dim, r, r)) for r in plane_res)
        dims = [feature_dim * len(plane_res) + time_dim, *hidden, 10]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU()]
        layers[-1] = nn.Sigmoid()
        self.mlp = nn.Sequential(*layers)

    def params(self, x: torch.Tensor, tcode: torch.Tensor) -> torch.Tensor:
        """x [N, 3], tcode [N, 3 D] -> knot parameters [N, 10]."""
        coord = torch.tanh(x[:, self.kept]).view(1, 1, -1, 2)
        feats = [F.grid_sample(p, coord, align_corners=True)[0, :, 0].t() for p in self.planes]
        return self.mlp(torch.cat([*feats, tcode], -1))

    def forward(self, x: torch.Tensor, tcode: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        xk, yk = knots(self.params(x, tcode))
        q = x[:, self.axis]
        y = InterpGrad.apply(q, yk, xk) if inverse else InterpGrad.apply(q, xk, yk)
        return x * self.mask + (1 - self.mask) * y.unsqueeze(1)


class UpstreamDeformer(nn.Module):
    """forward(x [B, Q, 3] normalised points, frames [B]) -> canonical [B, Q, 3]; :meth:`inverse` undoes it."""

    def __init__(
        self,
        num_frames: int,
        axes: list[int],
        feature_dim: int = 32,
        plane_res=(12, 96),
        time_dim: int = 16,
        time_sizes=(2, 10, 26),
        hidden=(56, 28),
    ):
        super().__init__()
        self.num_frames = num_frames
        self.time = TimeGrids(list(time_sizes), time_dim)
        self.layers = nn.ModuleList(
            CouplingLayer(a, feature_dim, list(plane_res), time_dim * len(time_sizes), list(hidden)) for a in axes
        )

    @classmethod
    def from_deformer(cls, ours: Deformer) -> UpstreamDeformer:
        """The same map as ``ours``, its parameters copied into upstream's layout."""
        c = ours.planes.shape[-1]
        hidden = [ours.b1.shape[1], *[w.shape[2] for w in ours.weights[:-1]]]
        ref = cls(
            ours.time.num_frames,
            ours.axes.tolist(),
            c,
            ours.plane_res,
            ours.time.grids[0].shape[1],
            ours.time.sizes,
            hidden,
        ).to(ours.b1.device, ours.b1.dtype)
        with torch.no_grad():
            for grid, g in zip(ref.time.grids, ours.time.grids):
                grid.copy_(g.t().reshape(grid.shape))
            for k, layer in enumerate(ref.layers):
                row = 0
                for p, r in zip(layer.planes, ours.plane_res):
                    p.copy_(ours.planes[k, row : row + r * r].t().reshape(p.shape))
                    row += r * r
                linears = [m for m in layer.mlp if isinstance(m, nn.Linear)]
                linears[0].weight.copy_(torch.cat([ours.w1_planes[k], ours.w1_time[k]]).t())
                linears[0].bias.copy_(ours.b1[k])
                for lin, w, b in zip(linears[1:], ours.weights, ours.biases):
                    lin.weight.copy_(w[k].t())
                    lin.bias.copy_(b[k])
        return ref

    def _run(self, x: torch.Tensor, frames: torch.Tensor, inverse: bool) -> torch.Tensor:
        b, q, _ = x.shape
        t = (frames.to(x.dtype) / (self.num_frames - 1)).view(b, 1).expand(b, q).reshape(-1)
        x = x.reshape(-1, 3)
        for layer in reversed(self.layers) if inverse else self.layers:
            x = layer(x, self.time(t), inverse)  # upstream samples the time code per point in every layer
        return x.view(b, q, 3)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self._run(x, frames, inverse=False)

    def inverse(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self._run(x, frames, inverse=True)
