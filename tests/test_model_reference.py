"""The upstream-style deformation that ``bench deformer`` times ours against is a real, equivalent model."""

import pytest
import torch

from omnitrack.model.coupling import knots
from omnitrack.model.deformer import Deformer
from omnitrack.model.reference import InterpGrad, UpstreamDeformer


def pair(num_frames=24, seed=0):
    ours = Deformer(num_frames, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in [ours.planes, *ours.time.grids]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return ours, UpstreamDeformer.from_deformer(ours)


def close(a, b, tol=1e-9):
    """Equal up to float64 rounding, relative to the whole tensor's norm."""
    return (a - b).norm() <= tol * b.norm()


def points(b, q, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, q, 3, generator=g) * 1.2


def test_same_map_as_ours():
    ours, ref = pair()
    x = points(4, 300, 2)
    fi, fj = torch.tensor([0, 5, 17, 23]), torch.tensor([9, 0, 23, 2])
    with torch.no_grad():
        want = torch.stack(ours.inverse(ours(list(x.unbind(-1)), fi), fj), -1)
        got = ref.inverse(ref(x, fi), fj)
    assert (want - x).abs().max() > 0.05  # far from the identity
    assert torch.allclose(got, want, atol=2e-6)


def test_same_gradients_as_ours():
    # float64: the outer slopes' gradients go through knots 1e4 away and lose ~1e-3 in float32
    ours, _ = pair()
    ours.double()
    ref = UpstreamDeformer.from_deformer(ours)
    x = points(4, 300, 2).double()
    fi, fj = torch.tensor([0, 5, 17, 23]), torch.tensor([9, 0, 23, 2])
    torch.stack(ours.inverse(ours(list(x.unbind(-1)), fi), fj), -1).square().sum().backward()
    ref.inverse(ref(x, fi), fj).square().sum().backward()
    for k, layer in enumerate(ref.layers):
        lin = layer.mlp[0]
        assert close(lin.weight.grad, torch.cat([ours.w1_planes.grad[k], ours.w1_time.grad[k]]).t()), k
        assert close(layer.mlp[-2].weight.grad, ours.weights[-1].grad[k].t()), k
        assert close(layer.mlp[-2].bias.grad, ours.biases[-1].grad[k]), k
        for p, rows in zip(layer.planes, [slice(0, 144), slice(144, None)]):
            assert close(p.grad, ours.planes.grad[k, rows].t().reshape(p.shape)), k
    for grid, ours_grid in zip(ref.time.grids, ours.time.grids):
        assert close(grid.grad, ours_grid.grad.t().reshape(grid.shape))


def test_round_trip_is_exact():
    _, ref = pair(50, seed=3)
    x = points(3, 2000, 4)
    frames = torch.tensor([0, 26, 49])
    with torch.no_grad():
        canon = ref(x, frames)
        back = ref.inverse(canon, frames)
    assert (canon - x).abs().max() > 0.05
    assert (back - x).abs().max() < 1e-5


def test_adam_steps_decrease_the_loss():
    _, ref = pair(24, seed=5)
    x = points(2, 256, 6)
    fi, fj = torch.tensor([1, 20]), torch.tensor([8, 3])
    target = x + 0.2
    opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (ref.inverse(ref(x, fi), fj) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("inverse", [False, True])
def test_gradcheck_interp(inverse):
    g = torch.Generator().manual_seed(7)
    s = torch.sigmoid(torch.randn(40, 10, generator=g, dtype=torch.float64))
    xk, yk = knots(s)
    a, b = (yk, xk) if inverse else (xk, yk)
    q = torch.cat(
        [torch.linspace(-3, 3, 36, dtype=torch.float64), torch.tensor([-9.0, -5.0, 5.0, 9.0], dtype=torch.float64)]
    )
    assert (q.unsqueeze(1) - a).abs().min() > 1e-4  # away from the knots (piecewise differentiable)
    args = (q.requires_grad_(), a.clone().requires_grad_(), b.clone().requires_grad_())
    assert torch.autograd.gradcheck(InterpGrad.apply, args, eps=1e-6, atol=1e-6)
