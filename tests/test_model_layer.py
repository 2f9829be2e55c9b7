"""The fused coupling layer (model/layer.py) computes the per-op composition's map and gradients."""

import pytest
import torch
import torch.nn.functional as F

from omnitrack.model.coupling import couple
from omnitrack.model.layer import CouplingLayer, _point_of, _tap_dots, _tap_dots_gather
from omnitrack.model.planes import sample

SIZES = [4, 12]
FRAMES = 7


def inputs(seed, dtype=torch.float64, b=3, q=50, hidden=(9, 6)):
    g = torch.Generator().manual_seed(seed)
    rows = FRAMES + sum(r * r for r in SIZES)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    dims = [hidden[0], *hidden[1:], 10]
    tail = [t for a, c in zip(dims[:-1], dims[1:]) for t in (rnd(a, c, scale=0.5), rnd(c, scale=0.5))]
    pts = [rnd(b, q, scale=1.2) for _ in range(3)]
    frames = torch.randint(0, FRAMES, (b,), generator=g)
    return pts, rnd(rows, hidden[0]), frames, tail


def composed(q, a, b, table, frames, inverse, tail):
    """The same layer from the per-op autograd functions (planes.sample, coupling.couple)."""
    h = sample(table[FRAMES:], a, b, SIZES) + table[:FRAMES].index_select(0, frames).unsqueeze(1)
    for w, bias in zip(tail[0::2], tail[1::2]):
        h = F.leaky_relu(h) @ w + bias
    return couple(q, torch.sigmoid(h), inverse=inverse)


@pytest.mark.parametrize("inverse", [False, True])
def test_same_map_and_gradients_as_the_composition(inverse):
    (q, a, b), table, frames, tail = inputs(1)
    leaves = [q, a, b, table, *tail]
    got = CouplingLayer.apply(q, a, b, table, frames, SIZES, inverse, *tail)
    want = composed(q, a, b, table, frames, inverse, tail)
    assert (want - q).abs().max() > 0.05  # not the identity
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    target = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(2))
    g_got = torch.autograd.grad((got * target).sum(), leaves)
    g_want = torch.autograd.grad((want * target).sum(), leaves)
    for x, y in zip(g_got, g_want):
        assert y.abs().max() > 0
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_gradcheck():
    (q, a, b), table, frames, tail = inputs(3, b=2, q=6, hidden=(5, 4))
    for inverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda q, a, b, t, *tail, inverse=inverse: CouplingLayer.apply(q, a, b, t, frames, SIZES, inverse, *tail),
            (q, a, b, table, *tail),
            eps=1e-7,
            atol=1e-6,
        )


def test_deterministic_on_cpu():
    (q, a, b), table, frames, tail = inputs(4, dtype=torch.float32, b=4, q=2000, hidden=(56, 28))
    runs = []
    for _ in range(2):
        out = CouplingLayer.apply(q, a, b, table, frames, SIZES, False, *tail)
        runs.append([out, *torch.autograd.grad(out.square().sum(), [q, a, b, table, *tail])])
    for x, y in zip(*runs):
        assert torch.equal(x, y)


def test_tap_dots_sampled_product_matches_the_gather():
    # the CPU path (sampled_addmm) against the path used on other devices
    g = torch.Generator().manual_seed(5)
    table = torch.randn(300, 16, generator=g, dtype=torch.float64)
    rows = torch.randint(0, 300, (40, 9), generator=g).sort(1).values.int()
    grad = torch.randn(40, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_tap_dots(table, rows, grad), _tap_dots_gather(table, rows, grad))


@pytest.mark.parametrize("k", [1, 5, 9, 13])
def test_point_of_is_integer_division(k):
    # every entry of the float32 range (up to 2^21) and the integer fallback above it
    entries = torch.arange(2**21)
    assert torch.equal(_point_of(entries, k), entries // k)
    big = torch.arange(2**21 - 5, 2**21 + 5).repeat(2**21 // 10 + 1)
    assert big.numel() > 2**21
    assert torch.equal(_point_of(big, k), big // k)
