"""Consistency masks: occlusion by a moving square, count maps, chaining, features, loading."""

import json

import numpy as np
import pytest

from omnitrack.errors import CacheError, InputError
from omnitrack.flow.consistency import OCCLUDED, RELIABLE, compute_masks, direct_masks, load_masks
from omnitrack.flow.store import FlowStore, FlowWriter, window_pairs
from tests.textures import moving_texture

H = W = 64
SQUARE = 16  # side of the square; its top-left corner is at (8 + 6 t, 24) in frame t
SQ_STEP = np.array([6.0, 0.0], np.float32)
BG_STEP = np.array([0.0, 0.0], np.float32)


def square_at(t: int) -> np.ndarray:
    """bool [H, W]: pixels whose centre lies in the square in frame t."""
    y, x = np.mgrid[0:H, 0:W] + 0.5
    x0 = 8 + SQ_STEP[0] * t
    return (x >= x0) & (x < x0 + SQUARE) & (y >= 24) & (y < 24 + SQUARE)


def square_scene(num_frames: int = 3):
    """Frames and exact flows of a textured square moving 6 px/frame right over a static background."""
    bg, fg = moving_texture(W, seed=5), moving_texture(W, seed=6)
    frames = np.stack([np.where(square_at(t)[..., None], np.roll(fg, 6 * t, axis=1), bg) for t in range(num_frames)])
    flows = {}
    for i, j in window_pairs(num_frames, 2):
        flows[(i, j)] = np.where(square_at(i)[..., None], SQ_STEP * (j - i), BG_STEP * (j - i)).astype(np.float32)
    return frames, flows


def write_store(path, flows: dict, num_frames: int, h: int, w: int, meta=None) -> FlowStore:
    pairs = sorted(flows)
    with FlowWriter(path, pairs, num_frames, h, w, meta=meta or {"method": "exact", "window": 2}) as wr:
        for k, p in enumerate(pairs):
            wr.put(k, flows[p])
    return FlowStore(path)


def test_direct_masks_flag_occlusion_by_square():
    _, flows = square_scene()
    cycle, occluded = direct_masks(flows[(0, 1)], flows[(1, 0)], 1, cycle_th=3.0)
    hidden = square_at(1) & ~square_at(0)  # background of frame 0 that the square covers in frame 1
    rest = ~hidden
    assert hidden.sum() == 6 * SQUARE
    assert cycle[hidden].mean() < 0.1 and occluded[hidden].mean() > 0.9
    assert cycle[rest].mean() > 0.95 and occluded[rest].mean() < 0.05
    # Backward: the background uncovered in frame 0 (disoccluded) cannot be reliable either.
    cycle_b, _ = direct_masks(flows[(1, 0)], flows[(0, 1)], 1, cycle_th=3.0)
    uncovered = square_at(0) & ~square_at(1)
    assert cycle_b[uncovered].mean() < 0.1 and cycle_b[~uncovered].mean() > 0.95


def test_masks_directory_counts_and_reload(tmp_path):
    frames, flows = square_scene()
    store = write_store(tmp_path / "flow", flows, 3, H, W)
    out = tmp_path / "masks" / "vid"
    compute_masks(frames, store, out, chain=False, progress=False)
    masks_store, mask, counts = load_masks(out)
    assert masks_store.pairs == store.pairs and mask.shape == (6, H, W) and counts.shape == (3, H, W)
    assert masks_store.meta["method"] == "exact" and masks_store.meta["masks"]["cycle_th"] == 3.0
    k01 = store.index[(0, 1)]
    hidden = square_at(1) & ~square_at(0)
    assert (mask[k01][hidden] == OCCLUDED).mean() > 0.9
    assert (mask[k01][~hidden] == RELIABLE).mean() > 0.95
    for t in range(3):
        ks = [k for k, (i, _) in enumerate(store.pairs) if i == t]
        np.testing.assert_array_equal(counts[t], (mask[ks] != 0).sum(axis=0))
    np.testing.assert_array_equal(masks_store.get(0, 2), flows[(0, 2)])  # no chaining: flow copied


def test_appearance_check_rejects_dissimilar_descriptors(tmp_path):
    """Gap >= 3: a pixel whose descriptors disagree is not reliable even if the cycle closes."""
    frames, flows = square_scene(4)
    flows = {p: np.zeros((H, W, 2), np.float32) for p in window_pairs(4, 3)}
    store = write_store(tmp_path / "flow", flows, 4, H, W)
    desc = np.zeros((4, 8, 8, 2), np.float32)
    desc[..., 0] = 1.0
    desc[3, :, 4:] = [-1.0, 0.0]  # right half of frame 3 looks different (cells of 8 px)
    out = tmp_path / "masks"
    compute_masks(frames, store, out, features={"descriptors": desc, "cell": [8.0, 8.0]}, chain=False, progress=False)
    _, mask, _ = load_masks(out)
    m03 = mask[store.index[(0, 3)]]
    assert (m03[:, :28] == RELIABLE).all() and (m03[:, 36:] == 0).all()  # 32 +- half a cell of blending
    assert (mask[store.index[(0, 2)]] == RELIABLE).all()  # gap 2: no appearance check
    assert (mask[store.index[(3, 0)]][:, 36:] == 0).all() and (mask[store.index[(1, 3)]] == RELIABLE).all()


def test_chaining_extends_reliable_area_of_long_pairs(tmp_path):
    """Pure translation: exact consecutive flows, corrupted direct long-range flows."""
    step = np.array([1.25, 0.5], np.float32)
    t_frames, window = 6, 5
    frames = np.stack([moving_texture(W, tuple(step * t), seed=7) for t in range(t_frames)])
    flows = {}
    for i, j in window_pairs(t_frames, window):
        wrong = 10.0 if abs(i - j) >= 2 else 0.0  # long pairs: off by 10 px in both directions
        flows[(i, j)] = np.broadcast_to(step * (j - i) + [wrong, 0.0], (H, W, 2)).astype(np.float32)
    store = write_store(tmp_path / "flow", flows, t_frames, H, W, meta={"method": "exact", "window": window})
    compute_masks(frames, store, tmp_path / "direct", chain=False, progress=False)
    compute_masks(frames, store, tmp_path / "chained", chain=True, progress=False)
    _, direct, _ = load_masks(tmp_path / "direct")
    chained_store, chained, counts = load_masks(tmp_path / "chained")
    k = store.index[(0, 5)]
    reliable = chained[k] == RELIABLE
    expected = (np.arange(W) + 0.5 + 5 * step[0] < W)[None, :] & (np.arange(H) + 0.5 + 5 * step[1] < H)[:, None]
    assert (direct[k] == 0).all()
    assert reliable[expected].mean() > 0.95 and not reliable[~expected].any()  # stays inside the image
    err = np.linalg.norm(chained_store.get(0, 5) - 5 * step, axis=-1)
    assert err[reliable].max() < 0.05
    back = chained[store.index[(5, 1)]] == RELIABLE
    assert back.mean() > 0.85  # backward sweep too
    k1 = store.index[(2, 3)]
    np.testing.assert_array_equal(chained[k1], direct[k1])  # consecutive pairs unchanged
    np.testing.assert_array_equal(counts.sum(), (chained != 0).sum())


def test_chaining_rgb_check_stops_at_appearance_change(tmp_path):
    """The composed flow is exact but frame 3 is a different image: chained pairs to it fail."""
    t_frames = 4
    frames = np.stack([moving_texture(W, seed=8)] * 3 + [np.zeros((H, W, 3), np.uint8)])
    flows = {
        p: np.zeros((H, W, 2), np.float32) + (100.0 if abs(p[0] - p[1]) >= 2 else 0.0)
        for p in window_pairs(t_frames, 3)
    }
    store = write_store(tmp_path / "flow", flows, t_frames, H, W, meta={"window": 3})
    compute_masks(frames, store, tmp_path / "m", chain=True, progress=False)
    _, mask, _ = load_masks(tmp_path / "m")
    assert (mask[store.index[(0, 2)]] == RELIABLE).all()
    assert (mask[store.index[(0, 3)]] == RELIABLE).mean() < 0.2


def test_load_masks_rejects_mismatch(tmp_path):
    frames, flows = square_scene()
    store = write_store(tmp_path / "flow", flows, 3, H, W)
    out = tmp_path / "m"
    compute_masks(frames, store, out, chain=False, progress=False)
    np.save(out / "counts.npy", np.zeros((2, H, W), np.uint16))
    with pytest.raises(CacheError, match=r"counts\.npy: holds uint16 \(2, 64, 64\), its metadata says"):
        load_masks(out)
    with pytest.raises(CacheError, match=r"flow/meta\.json: is a plain flow store, not a masks directory"):
        load_masks(tmp_path / "flow")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["masks"]["chain"] is False and meta["window"] == 2


def test_descriptor_cosine_matches_a_direct_bilinear_computation():
    """_Features.cosine (source frame's descriptors gathered at pixel centres, the other frame's
    sampled at arbitrary points) equals bilinear interpolation in the descriptor grid + cosine."""
    from omnitrack.flow.consistency import _Features
    from omnitrack.interp import bilinear

    rng = np.random.default_rng(0)
    desc = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)  # 2 frames of 4 x 5 cells, 8 px each: 40 x 32 px
    ys, xs = np.meshgrid(np.arange(32) + 0.5, np.arange(40) + 0.5, indexing="ij")
    flat = rng.integers(0, 32 * 40, 40_000)  # more points than one chunk of the interpolating path
    xy_i = np.stack([flat % 40 + 0.5, flat // 40 + 0.5], 1)
    xy_j = rng.uniform([-3, -3], [43, 35], size=(40_000, 2))  # some off the image: border replicated
    a, b = bilinear(desc[0], xy_i / 8), bilinear(desc[1], xy_j / 8)
    expected = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    a, b = bilinear(desc[1], xy_i / 8), bilinear(desc[0], xy_j / 8)
    expected_ji = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    for gram_bytes in (1 << 20, 0):  # through the cells' Gram matrix, and by interpolating the descriptors
        feats = _Features({"descriptors": desc, "cell": [8, 8]}, 2, np.stack([xs, ys], -1), gram_bytes)
        np.testing.assert_allclose(feats.cosine(0, flat, 1, xy_j), expected, atol=1e-5)
        np.testing.assert_allclose(feats.cosine(1, flat, 0, xy_j), expected_ji, atol=1e-5)


def test_long_gap_flow_that_the_chain_contradicts_is_not_reliable(tmp_path):
    """A direct long-gap flow that passes the cycle test but is wrong on a moving object (it follows
    the background, in both directions) must not be trusted: the chain of exact consecutive flows
    contradicts it. Upstream's rule (confirm_th=None) marks it reliable."""
    t_frames, window = 5, 4
    frames, exact = square_scene(t_frames)
    flows = {}
    for i, j in window_pairs(t_frames, window):
        if abs(i - j) == 1:
            flows[(i, j)] = np.where(square_at(i)[..., None], SQ_STEP * (j - i), BG_STEP).astype(np.float32)
        else:  # the background's motion everywhere: cycle-consistent, wrong on the square
            flows[(i, j)] = np.zeros((H, W, 2), np.float32)
    store = write_store(tmp_path / "flow", flows, t_frames, H, W, meta={"method": "exact", "window": window})
    compute_masks(frames, store, tmp_path / "upstream", chain=True, confirm_th=None, progress=False)
    compute_masks(frames, store, tmp_path / "confirmed", chain=True, confirm_th=2.0, progress=False)
    square = square_at(0)
    for name, wrong_kept in (("upstream", True), ("confirmed", False)):
        out_store, mask, _ = load_masks(tmp_path / name)
        for j in (2, 3, 4):
            truth = np.where(square[..., None], SQ_STEP * j, BG_STEP)
            reliable = mask[store.index[(0, j)]] != 0
            wrong = np.linalg.norm(out_store.get(0, j) - truth, axis=-1) > 1.0
            assert (reliable & wrong & square).any() == wrong_kept, (name, j)
            assert reliable[~square & ~square_at(j)].mean() > 0.95  # the static background stays
    assert load_masks(tmp_path / "confirmed")[0].meta["masks"]["confirm_th"] == 2.0


def test_chain_agreeing_with_the_direct_flow_keeps_the_direct_flow(tmp_path):
    """Where the chain reaches a pixel and agrees within confirm_th, the (drift-free) direct flow is
    what the masks stage writes."""
    step = np.array([1.0, 0.5], np.float32)
    t_frames, window = 4, 3
    frames = np.stack([moving_texture(W, tuple(step * t), seed=7) for t in range(t_frames)])
    drift = np.array([0.5, 0.0], np.float32)  # each consecutive flow is 0.5 px off
    flows = {
        (i, j): np.broadcast_to(step * (j - i) + (drift * np.sign(j - i) if abs(i - j) == 1 else 0), (H, W, 2)).astype(
            np.float32
        )
        for i, j in window_pairs(t_frames, window)
    }
    store = write_store(tmp_path / "flow", flows, t_frames, H, W, meta={"method": "exact", "window": window})
    compute_masks(frames, store, tmp_path / "m", chain=True, confirm_th=2.0, progress=False)
    out, mask, _ = load_masks(tmp_path / "m")
    k = store.index[(0, 3)]
    reliable = mask[k] == RELIABLE
    assert reliable.mean() > 0.7
    np.testing.assert_allclose(out.get(0, 3)[reliable], np.broadcast_to(3 * step, (reliable.sum(), 2)), atol=0.05)


def test_gaps_without_direct_flow_are_chained(tmp_path):
    """A store with direct flows of gaps 1 and 3 only (flow.gaps): the masks directory still has every
    pair of the window; gaps 2 and 4 are the chain of the exact consecutive flows (reliable off the square's
    occlusions), gap 3 is checked against its direct flow as usual. Without chaining it is an error."""
    t_frames, window = 5, 4
    frames, _ = square_scene(t_frames)
    pairs = window_pairs(t_frames, window, gaps={1, 3})  # no direct flow of gaps 2 and 4
    flows = {(i, j): np.where(square_at(i)[..., None], SQ_STEP * (j - i), BG_STEP).astype(np.float32) for i, j in pairs}
    store = write_store(tmp_path / "flow", flows, t_frames, H, W, meta={"method": "exact", "window": window})
    assert (0, 2) not in store.index
    compute_masks(frames, store, tmp_path / "m", chain=True, progress=False)
    out, mask, counts = load_masks(tmp_path / "m")
    assert out.pairs == window_pairs(t_frames, window) and out.meta["direct_gaps"] == [1, 3]
    for i, j in [(0, 2), (2, 0), (1, 3), (0, 3), (0, 4)]:
        truth = np.where(square_at(i)[..., None], SQ_STEP * (j - i), BG_STEP)
        reliable = mask[out.index[(i, j)]] == RELIABLE
        assert reliable.mean() > 0.8, (i, j)
        np.testing.assert_allclose(out.get(i, j)[reliable], truth[reliable], atol=0.05)
    assert not (mask[out.index[(0, 2)]] & OCCLUDED).any()  # the occlusion test needs a direct flow
    np.testing.assert_array_equal(counts[0], (mask[[out.index[(0, j)] for j in (1, 2, 3, 4)]] != 0).sum(0))
    with pytest.raises(InputError, match=r"flow: holds direct flows of gaps \[1, 3\] only, and without chaining"):
        compute_masks(frames, store, tmp_path / "plain", chain=False, progress=False)
    assert not (tmp_path / "plain").exists()
