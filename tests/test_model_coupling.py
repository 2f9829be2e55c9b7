"""The CaDeX++ coupling map and deformer: exact inverse, monotonicity, analytic gradients."""

import numpy as np
import pytest
import torch

from omnitrack.model.coupling import Interp, couple, interp, knots
from omnitrack.model.deformer import Deformer
from omnitrack.model.timecode import TimeCode, grid_sizes


def random_deformer(num_frames=24, seed=0, scale=0.3, **kw):
    d = Deformer(num_frames, seed=seed, **kw)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in [d.planes, *d.time.grids]:
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return d


def test_knots_strictly_increasing_and_outer_slopes():
    s = torch.rand(1000, 10) * 0.98 + 0.01
    xk, yk = knots(s)
    assert (xk.diff(dim=-1) > 0).all() and (yk.diff(dim=-1) > 0).all()
    left = (yk[:, 1] - yk[:, 0]) / (xk[:, 1] - xk[:, 0])
    assert torch.allclose(left, 2 * s[:, 8], rtol=1e-3)


def test_each_coupling_map_is_strictly_monotone():
    g = torch.Generator().manual_seed(3)
    s = torch.sigmoid(torch.randn(64, 10, generator=g, dtype=torch.float64))
    q = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    for n in range(s.shape[0]):
        si = s[n].expand(q.shape[0], 10)
        fwd = couple(q, si)
        inv = couple(q, si, inverse=True)
        assert (fwd.diff() > 0).all() and (inv.diff() > 0).all(), n


def test_coupling_inverse_is_exact():
    g = torch.Generator().manual_seed(4)
    s = torch.sigmoid(torch.randn(100000, 10, generator=g))
    q = torch.randn(100000, generator=g) * 3
    back = couple(couple(q, s), s, inverse=True)
    assert (back - q).abs().max() < 1e-5


def test_interp_matches_reference_polyline():
    g = torch.Generator().manual_seed(5)
    s = torch.sigmoid(torch.randn(200, 10, generator=g, dtype=torch.float64))
    xk, yk = knots(s)
    q = torch.randn(200, generator=g, dtype=torch.float64) * 2
    want = np.array([np.interp(q[n].item(), xk[n].numpy(), yk[n].numpy()) for n in range(200)])
    np.testing.assert_allclose(interp(q, xk, yk).numpy(), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_query_and_knots(inverse):
    g = torch.Generator().manual_seed(6)
    s = torch.sigmoid(torch.randn(40, 10, generator=g, dtype=torch.float64))
    xk, yk = knots(s)
    # queries in every segment, away from knots (the map is only piecewise differentiable)
    q = torch.cat(
        [torch.linspace(-3, 3, 36, dtype=torch.float64), torch.tensor([-9.0, -5.0, 5.0, 9.0], dtype=torch.float64)]
    )
    a, b = (yk, xk) if inverse else (xk, yk)
    q = (couple(q, s) if inverse else q).detach()
    dist = (q.unsqueeze(1) - a).abs().min(1).values
    assert dist.min() > 1e-4
    args = (q.clone().requires_grad_(), a.clone().requires_grad_(), b.clone().requires_grad_())
    assert torch.autograd.gradcheck(Interp.apply, args, eps=1e-6, atol=1e-6)


def test_gradcheck_through_knot_parameters():
    g = torch.Generator().manual_seed(7)
    s = torch.sigmoid(torch.randn(12, 10, generator=g, dtype=torch.float64)).requires_grad_()
    q = torch.linspace(-2.5, 2.5, 12, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, s: couple(q, s), (q, s), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda q, s: couple(q, s, inverse=True), (q, s), eps=1e-6, atol=1e-6)


def test_deformer_inverse_is_exact_float32():
    d = random_deformer()
    g = torch.Generator().manual_seed(8)
    pts = [torch.randn(5, 4000, generator=g) * 1.5 for _ in range(3)]
    frames = torch.tensor([0, 3, 11, 17, 23])
    with torch.no_grad():
        canon = d(pts, frames)
        back = d.inverse(canon, frames)
    moved = max((c - p).abs().max().item() for c, p in zip(canon, pts))
    assert moved > 0.05  # the random map is far from the identity
    assert max((b - p).abs().max().item() for b, p in zip(back, pts)) < 1e-5


def test_each_axis_transformed_twice():
    d = Deformer(24, seed=1)
    assert sorted(d.axes.tolist()) == [0, 0, 1, 1, 2, 2]


def test_no_two_consecutive_layers_transform_one_axis():
    """Such a pair would be one monotone map of that axis (same kept coordinates): a lost layer. Seed 1's
    permutations were [1, 2, 0] then [0, 1, 2]; upstream's seed 1234 keeps its [0, 2, 1, 0, 2, 1]."""
    assert Deformer(24, seed=1234).axes.tolist() == [0, 2, 1, 0, 2, 1]
    assert Deformer(24, seed=1).axes.tolist() == [1, 2, 0, 1, 2, 0]
    for seed in range(40):
        axes = Deformer(24, n_layers=9, seed=seed).axes.tolist()
        assert all(a != b for a, b in zip(axes, axes[1:])), (seed, axes)
        assert sorted(axes) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_correspondence_i_to_i_is_identity_and_frames_differ():
    d = random_deformer()
    g = torch.Generator().manual_seed(9)
    pts = [torch.rand(1, 500, generator=g) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        prep = d.prepare()
        canon = d(pts, torch.tensor([4]), prep)
        same = d.inverse(canon, torch.tensor([4]), prep)
        other = d.inverse(canon, torch.tensor([20]), prep)
    assert max((a - b).abs().max().item() for a, b in zip(same, pts)) < 1e-5
    assert max((a - b).abs().max().item() for a, b in zip(other, pts)) > 1e-3


@pytest.mark.parametrize("num_frames", [2, 5, 12, 19])
def test_short_videos_get_a_time_varying_code(num_frames):
    code = TimeCode(num_frames)
    assert min(code.sizes) >= 2
    with torch.no_grad():
        for grid in code.grids:
            grid.copy_(torch.randn(grid.shape))
    c = code(torch.arange(num_frames))
    assert c.shape == (num_frames, 48) and torch.isfinite(c).all()
    assert (c[0] - c[-1]).abs().max() > 1e-3
    d = random_deformer(num_frames)
    pts = [torch.randn(num_frames, 10) for _ in range(3)]
    with torch.no_grad():
        back = d.inverse(d(pts, torch.arange(num_frames)), torch.arange(num_frames))
    assert max((a - b).abs().max().item() for a, b in zip(back, pts)) < 1e-5


def test_time_grid_sizes_match_upstream_for_long_videos():
    assert grid_sizes(100, (1, 5, 13), 20) == [5, 25, 65]
    assert grid_sizes(12, (1, 5, 13), 20) == [2, 5, 13]


def test_deformer_gradients_reach_every_parameter():
    d = random_deformer(12, scale=0.01)
    pts = [torch.randn(3, 200) for _ in range(3)]
    frames = torch.tensor([0, 5, 11])
    out = d.inverse(d(pts, frames), torch.tensor([1, 7, 2]))
    sum(o.square().sum() for o in out).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_plane_sample_matches_grid_sample_summed_over_levels():
    from omnitrack.model.planes import sample

    g = torch.Generator().manual_seed(10)
    lo, hi = torch.randn(5, 4, 4, generator=g), torch.randn(5, 12, 12, generator=g)
    table = torch.cat([lo.permute(1, 2, 0).reshape(16, 5), hi.permute(1, 2, 0).reshape(144, 5)])
    a, b = torch.randn(300, generator=g) * 2, torch.randn(300, generator=g) * 2
    grid = torch.stack([torch.tanh(a), torch.tanh(b)], -1).view(1, 1, 300, 2)
    want = sum(torch.nn.functional.grid_sample(p[None], grid, align_corners=True)[0, :, 0].t() for p in (lo, hi))
    assert torch.allclose(sample(table, a, b, [4, 12]), want, atol=1e-5)


def test_gradcheck_plane_sample():
    from omnitrack.model.planes import PlaneSample

    g = torch.Generator().manual_seed(11)
    table = torch.randn(16 + 64, 3, generator=g, dtype=torch.float64, requires_grad=True)
    a = (torch.randn(25, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    b = (torch.randn(25, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t, a, b: PlaneSample.apply(t, a, b, [4, 8]), (table, a, b), eps=1e-7, atol=1e-6
    )
