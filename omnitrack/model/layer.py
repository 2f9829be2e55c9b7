"""One CaDeX++ coupling layer as one autograd function, with a hand-written backward.

For points grouped [B, Q] (one frame per group) and one layer, :class:`CouplingLayer` maps the
transformed coordinate q [B, Q] given the kept ones a, b [B, Q]:

  u, v = tanh a, tanh b
  h1 = table[T-row of the frame] + sum over the 4 L bilinear corners of w * table[row]   [N, H1]
       (table: the layer's time term and planes folded with the MLP's first linear layer, Deformer.prepare)
  s = sigmoid(W_n^T leaky(... leaky(W_2^T leaky(h1) + b_2) ...) + b_n)       [10, N]
  knots = KNOTS s + KNOT_OFFSET                                              [12, N]
  q' = polyline(x knots -> y knots)(q)   (the inverse: y knots -> x knots)

which is coupling.couple(q, mlp(planes.sample(...) + time)) as one node instead of ~60. The knots
are linear in s (coupling.knots), so they and their gradient are one small matmul each. After the
first layer the activations are feature-major [H, N]: on this machine's MKL the thin products
[H_out, H_in] x [H_in, N] run 1.3-5x faster than [N, H_in] x [H_in, H_out] (BENCHMARKS.md §2).

The backward of the gather
  - w.r.t. the table is its transpose: the (point, tap) entries sorted by table row, each row's
    gradients summed by one ``embedding_bag`` over the points' gradients;
  - w.r.t. u and v is, per level, the weights' derivatives times the dot products of the 4 corners'
    rows with the incoming gradient (:func:`_tap_dots`).
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F

from omnitrack.model.coupling import FAR

NEG_SLOPE = 0.01  # nn.LeakyReLU's default, as upstream

# x knots (rows 0-5) and y knots (rows 6-11) as a linear map of the 10 MLP outputs (coupling.knots)
KNOTS = torch.tensor(
    [
        [-1, -1, 0, 0, 0, 0, 0, 0, 0, 0],
        [-1, -1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, -1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, -1, -1, 0, 0, -2 * FAR, 0],
        [0, 0, 0, 0, -1, -1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, -1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 1, 0, 2 * FAR],
    ]
)
KNOT_OFFSET = torch.tensor([-FAR, 0, 0, 0, 0, FAR, 0, 0, 0, 0, 0, 0])


def taps(u: torch.Tensor, v: torch.Tensor, sizes: list[int], offset: int, rows: torch.Tensor, w: torch.Tensor):
    """Bilinear taps of (u, v) in [-1, 1]^2 (u along columns, v along rows, align_corners=True) on the
    levels stacked from table row ``offset``, written into rows [N, 4 L] (int32, ascending per point:
    the corners 00, 01, 10, 11 of each level) and w [N, 4 L] (their weights), both usually column
    views of the layer's [N, 1 + 4 L] tap arrays (no per-column copies); u, v [N] -> per level the
    fractional positions (fu, fv), each [N]."""
    frac = []
    for lvl, r in enumerate(sizes):
        scale = (r - 1) * 0.5
        pu, pv = (u + 1) * scale, (v + 1) * scale
        iu, iv = pu.floor().clamp_(0, r - 2), pv.floor().clamp_(0, r - 2)
        fu, fv = pu - iu, pv - iv
        gu, gv = 1 - fu, 1 - fv
        c = 4 * lvl
        rows[:, c] = torch.add(iu, iv, alpha=r).add_(offset)  # exact in float below 2^24 rows
        torch.add(rows[:, c], 1, out=rows[:, c + 1])
        torch.add(rows[:, c], r, out=rows[:, c + 2])
        torch.add(rows[:, c], r + 1, out=rows[:, c + 3])
        for k, (a, b) in enumerate(((gv, gu), (gv, fu), (fv, gu), (fv, fu))):
            torch.mul(a, b, out=w[:, c + k])
        frac.append((fu, fv))
        offset += r * r
    return frac


def _point_of(entries: torch.Tensor, k: int) -> torch.Tensor:
    """entries // k for the int64 entries in [0, numel) of a point-major [N, k] array (the point of
    each (point, tap) entry): below 2^21 by a float32 product, exact there for every k (the product's
    rounding error is at most 1/4 of the 1/(2k) margin; tests/test_model_layer.py checks all
    entries) and 3x faster than integer division on CPU."""
    if entries.numel() > 2**21:
        return entries // k
    return entries.to(torch.float32).add_(0.5).mul_(1.0 / k).to(torch.int64)


def _tap_dots(table: torch.Tensor, rows: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """table [R, C], rows [N, k] int32 ascending per row, g [N, C] -> [N, k]: table[rows[n, j]] . g[n].

    On CPU a sampled dense product (no [N, k, C] gather; 2x faster than gathering rows of neighbour
    differences); elsewhere the plain gather.
    """
    n, k = rows.shape
    if rows.device.type != "cpu":
        return _tap_dots_gather(table, rows, g)
    crow = torch.arange(0, n * k + 1, k, dtype=rows.dtype, device=rows.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        pattern = torch.sparse_csr_tensor(
            crow, rows.view(-1), g.new_zeros(n * k), size=(n, table.shape[0]), check_invariants=False
        )
    return torch.sparse.sampled_addmm(pattern, g, table.t(), beta=0.0).values().view(n, k)


def _tap_dots_gather(table: torch.Tensor, rows: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """:func:`_tap_dots` by gathering the rows [N, k, C]."""
    return (table[rows.long()] * g.unsqueeze(1)).sum(2)


@functools.cache
def _knot_maps(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """KNOTS, KNOT_OFFSET [12, 1] on ``device`` (one copy per device and dtype)."""
    return KNOTS.to(device, dtype), KNOT_OFFSET.to(device, dtype).unsqueeze(1)


def _leaky_grad_(g: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Gradient through leaky_relu from its output ``act`` (positive exactly where its input is), in
    place in g (no new [N, H] tensor)."""
    return torch.ops.aten.leaky_relu_backward.grad_input(g, act, NEG_SLOPE, True, grad_input=g)


class CouplingLayer(torch.autograd.Function):
    """q, a, b [B, Q]; table [T + sum R^2, H1] (rows [0, T): the time term of each frame, then the
    plane levels); frames [B] long; sizes: plane resolutions; inverse: bool; tail: w_2 [H1, H2], b_2
    [H2], ..., w_n [H_{n-1}, 10], b_n [10] -> q' [B, Q]."""

    @staticmethod
    def forward(ctx, q, a, b, table, frames, sizes, inverse, *tail):
        shape = q.shape
        q, u, v = q.reshape(-1), torch.tanh(a.reshape(-1)), torch.tanh(b.reshape(-1))
        n_frames = table.shape[0] - sum(r * r for r in sizes)
        # tap 0: the time row of each point's frame, of weight 1; then 4 corners per level
        rows = torch.empty(q.shape[0], 1 + 4 * len(sizes), dtype=torch.int32, device=q.device)
        w = torch.empty(rows.shape, dtype=q.dtype, device=q.device)
        rows[:, 0] = frames.to(torch.int32).repeat_interleave(shape[1])
        w[:, 0] = 1
        frac = taps(u, v, sizes, n_frames, rows[:, 1:], w[:, 1:])
        h1 = F.leaky_relu_(F.embedding_bag(rows, table, per_sample_weights=w, mode="sum"), NEG_SLOPE)
        acts = [h1.t()]  # inputs of the tail layers [H, N]; the first a view of [N, H1]
        for i in range(0, len(tail), 2):
            z = torch.addmm(tail[i + 1].unsqueeze(1), tail[i].t(), acts[-1])
            if i + 2 < len(tail):
                acts.append(F.leaky_relu(z, NEG_SLOPE))
        s = torch.sigmoid(z)
        knot_map, knot_offset = _knot_maps(s.device, s.dtype)
        knots = torch.addmm(knot_offset, knot_map, s)  # [12, N]
        # the polyline: the query's segment among its 6 knots, then linear interpolation
        qo, vo = (6, 0) if inverse else (0, 6)
        kq = knots[qo : qo + 6]
        qc = torch.minimum(torch.maximum(q, kq[0]), kq[5])
        seg = (qc >= kq[1:5]).sum(0)
        ends = torch.stack([seg + qo, seg + (qo + 1), seg + vo, seg + (vo + 1)])
        x0, x1, y0, y1 = knots.gather(0, ends)
        dx, dy = x1 - x0, y1 - y0
        slope = dy / dx
        # the left outer segment is anchored at its inner knot (its far knot is ~1e4 away)
        first = seg == 0
        r = (qc - torch.where(first, x1, x0)) / dx
        out = torch.addcmul(torch.where(first, y1, y0), r, dy)
        pos = r + first.to(q.dtype)
        inside = (q == qc).to(q.dtype)
        ctx.save_for_backward(
            u, v, rows, w, table, s, ends, pos, slope, inside, *[f for uv in frac for f in uv], *acts, *tail[0::2]
        )
        ctx.shape, ctx.sizes = shape, sizes
        return out.view(shape)

    @staticmethod
    def backward(ctx, g):
        u, v, rows, w, table, s, ends, pos, slope, inside, *rest = ctx.saved_tensors
        n_levels = len(ctx.sizes)
        frac, rest = rest[: 2 * n_levels], rest[2 * n_levels :]
        n_tail = len(rest) // 2
        acts, weights = rest[:n_tail], rest[n_tail:]
        g = g.reshape(-1)
        gs = g * slope
        gp = g * pos
        vals = torch.stack([gs * (pos - 1), -gs * pos, g - gp, gp])  # d out / d (x0, x1, y0, y1)
        dknots = torch.zeros(12, g.shape[0], dtype=g.dtype, device=g.device).scatter_(0, ends, vals)
        dz = (_knot_maps(g.device, g.dtype)[0].t() @ dknots) * s * (1 - s)  # [10, N]
        tail_grads = [None] * (2 * n_tail)
        for i in range(n_tail - 1, -1, -1):
            x = acts[i]  # [H_in, N]
            tail_grads[2 * i] = (dz @ x.t()).t()
            tail_grads[2 * i + 1] = dz.sum(1)
            if i > 0:
                dz = _leaky_grad_(weights[i] @ dz, x)
        dh1 = _leaky_grad_(dz.t() @ weights[0].t(), acts[0].t())  # [N, H1], row-major
        grad_table = None
        if ctx.needs_input_grad[3]:
            # transpose of the gather: bag the (point, tap) entries of each table row together
            flat = rows.view(-1)
            # int16 keys when they fit: 1.3-2x faster to sort on CPU
            order = torch.sort(flat.to(torch.int16) if table.shape[0] <= 2**15 else flat, stable=True).indices
            counts = torch.bincount(flat, minlength=table.shape[0])
            starts = torch.cumsum(counts, 0) - counts
            grad_table = F.embedding_bag(
                _point_of(order, rows.shape[1]),
                dh1,
                starts,
                mode="sum",
                per_sample_weights=w.view(-1).index_select(0, order),
            )
        # d h1 / du . dh1 and d h1 / dv . dh1 from the corners' dot products with dh1
        dots = _tap_dots(table, rows, dh1)[:, 1:]  # (column 0 is the time row)
        du = dv = 0
        for lvl, r in enumerate(ctx.sizes):
            fu, fv = frac[2 * lvl], frac[2 * lvl + 1]
            d00, d01, d10, d11 = dots[:, 4 * lvl : 4 * lvl + 4].unbind(1)
            scale = (r - 1) * 0.5
            du = du + scale * ((1 - fv) * (d01 - d00) + fv * (d11 - d10))
            dv = dv + scale * ((1 - fu) * (d10 - d00) + fu * (d11 - d01))
        grad_a = (du * (1 - u * u)).view(ctx.shape)
        grad_b = (dv * (1 - v * v)).view(ctx.shape)
        grad_q = (gs * inside).view(ctx.shape)
        return grad_q, grad_a, grad_b, grad_table, None, None, None, *tail_grads
