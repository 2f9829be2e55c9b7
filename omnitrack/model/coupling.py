"""The monotone piecewise-linear coupling map of CaDeX++ (forward, exact inverse, analytic gradients).

The per-op form of the map that the deformer's fused layer (layer.py) evaluates inside its own
forward and backward; tests/test_model_layer.py checks the fused layer against it.

A map is given per point by 6 knots ``xk`` [N, 6] (strictly increasing) and their images ``yk``
[N, 6] (strictly increasing); between knots it interpolates linearly. The inverse is the same
interpolation with the roles of ``xk`` and ``yk`` swapped, so one autograd function serves both.

Knots come from 10 numbers in (0, 1) per point (the sigmoid outputs of the conditioner MLP), split in
order into dxL2, dxL1, dxR1, dxR2, dyL2, dyL1, dyR1, dyR2, kL, kR:

    x knots: xL2 - FAR, -dxL1 - dxL2, -dxL1, dxR1, dxR1 + dxR2, xR2 + FAR
    y knots: yL2 - 2 kL FAR, -dyL1 - dyL2, -dyL1, dyR1, dyR1 + dyR2, yR2 + 2 kR FAR

so the outer slopes are 2 kL and 2 kR, and every increment is positive (strictly increasing map).
"""

from __future__ import annotations

import torch

FAR = 1e4


def knots(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s [..., 10] in (0, 1) -> x knots [..., 6], y knots [..., 6] (both strictly increasing)."""
    dxl2, dxl1, dxr1, dxr2, dyl2, dyl1, dyr1, dyr2, kl, kr = s.unbind(-1)
    xl2 = -dxl1 - dxl2
    xr2 = dxr1 + dxr2
    yl2 = -dyl1 - dyl2
    yr2 = dyr1 + dyr2
    xk = torch.stack([xl2 - FAR, xl2, -dxl1, dxr1, xr2, xr2 + FAR], -1)
    yk = torch.stack([yl2 - 2 * FAR * kl, yl2, -dyl1, dyr1, yr2, yr2 + 2 * FAR * kr], -1)
    return xk, yk


class Interp(torch.autograd.Function):
    """out[n] = polyline (xk[n] -> yk[n]) evaluated at q[n]; q [N], xk/yk [N, 6] -> out [N].

    The forward finds the segment by counting the inner knots below q (no loops, no masks), computes
    the output and keeps the segment index, the position inside it and its slope; the backward
    turns these into the partial derivatives w.r.t. q, the two bounding x knots and the two
    bounding y knots (the other 8 knot derivatives are zero). q is clamped to the far knots (the
    derivative w.r.t. q is zero outside them).
    """

    @staticmethod
    def forward(ctx, q, xk, yk):
        qc = torch.minimum(torch.maximum(q, xk[:, 0]), xk[:, -1])
        seg = (qc.unsqueeze(1) >= xk[:, 1:-1]).sum(1, keepdim=True)
        ends = torch.cat([seg, seg + 1], 1)
        x01 = xk.gather(1, ends)
        y01 = yk.gather(1, ends)
        x0, x1 = x01.unbind(1)
        y0, y1 = y01.unbind(1)
        dx, dy = x1 - x0, y1 - y0
        slope = dy / dx
        # Anchor the left outer segment at its inner knot: its far knot is ~1e4 away, and
        # q - x0 would lose ~1e-3 of float32 precision there.
        first = seg.squeeze(1) == 0
        r = (qc - torch.where(first, x1, x0)) / dx
        out = torch.addcmul(torch.where(first, y1, y0), r, dy)
        a = r + first.to(q.dtype)
        inside = (q == qc).to(q.dtype)
        ctx.save_for_backward(ends, a, slope, inside)
        return out

    @staticmethod
    def backward(ctx, g):
        ends, a, slope, inside = ctx.saved_tensors
        gs = g * slope
        grad_q = gs * inside if ctx.needs_input_grad[0] else None
        grad_x = grad_y = None
        if ctx.needs_input_grad[1]:
            # d out/d x0 = slope (a - 1), d out/d x1 = -slope a
            vals = torch.stack([gs * (a - 1), -gs * a], 1)
            grad_x = g.new_zeros(g.shape[0], 6).scatter_(1, ends, vals)
        if ctx.needs_input_grad[2]:
            # d out/d y0 = 1 - a, d out/d y1 = a
            ga = g * a
            vals = torch.stack([g - ga, ga], 1)
            grad_y = g.new_zeros(g.shape[0], 6).scatter_(1, ends, vals)
        return grad_q, grad_x, grad_y


def interp(q: torch.Tensor, xk: torch.Tensor, yk: torch.Tensor) -> torch.Tensor:
    """Evaluate the polyline xk -> yk at q; q [...], xk/yk [..., 6] -> [...] (any leading shape)."""
    shape = q.shape
    return Interp.apply(q.reshape(-1), xk.reshape(-1, 6), yk.reshape(-1, 6)).view(shape)


def couple(q: torch.Tensor, s: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Apply the map defined by s [..., 10] to q [...] (or its inverse)."""
    xk, yk = knots(s)
    return interp(q, yk, xk) if inverse else interp(q, xk, yk)
