"""Plane-plus-parallax depth of the static scene (omnitrack.depth.parallax) and the renderer's relief."""

import numpy as np
import pytest

from omnitrack.data.synthetic import DenseTruth, render_scene, video_seed
from omnitrack.depth.order import layer_map_depth, relief_accuracy
from omnitrack.depth.parallax import DEFAULTS, pair_parallax


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def pinhole_flow(t, rot=(0.01, -0.02, 0.005), h=96, w=128, f=120.0):
    """Exact flow [h, w, 2] of a static scene (a backdrop at depth 10, two bumps up to ~2.9 nearer)
    seen by a pinhole camera that rotates by ``rot`` (axis-angle) and translates by ``t``; and the
    scene's inverse depth [h, w]."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    inv = np.full((h, w), 0.1)
    inv += 0.25 * np.exp(-(((xs - 40) / 14) ** 2 + ((ys - 40) / 12) ** 2) / 2)
    inv += 0.15 * np.exp(-(((xs - 95) / 10) ** 2 + ((ys - 65) / 16) ** 2) / 2)
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    points = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(k).T / inv[..., None]
    axis = np.asarray(rot, np.float64)
    theta = np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / theta
    r = np.eye(3) + np.sin(theta) * cross + (1 - np.cos(theta)) * cross @ cross
    proj = (points @ r.T + np.asarray(t, np.float64)) @ k.T
    return proj[..., :2] / proj[..., 2:] - np.stack([xs, ys], -1), inv


@pytest.mark.parametrize("t", [(0.5, 0.0, 0.0), (0.3, -0.1, 0.4), (0.2, 0.3, -0.6), (0.0, 0.0, 1.0)])
def test_pinhole_inverse_depth_is_recovered_in_order(t):
    # sideways (epipole at infinity), oblique, backward and straight forward (epipole in the image)
    flow, inv = pinhole_flow(t)
    gamma = pair_parallax(flow, np.ones(inv.shape, bool), DEFAULTS, np.random.default_rng(0))
    ok = np.isfinite(gamma)
    assert ok.mean() > 0.99
    assert _rank_corr(gamma[ok], inv[ok]) > 0.85
    # the backdrop (inverse depth 0.1) sits at ~0, the nearest bump at ~1
    backdrop = inv < 0.101
    assert np.abs(np.median(gamma[backdrop & ok])) < 0.05
    assert gamma[np.unravel_index(np.argmax(inv), inv.shape)] > 0.8


def test_rotation_only_shows_no_parallax():
    flow, inv = pinhole_flow((0.0, 0.0, 0.0), rot=(0.02, -0.03, 0.01))
    assert pair_parallax(flow, np.ones(inv.shape, bool), DEFAULTS, np.random.default_rng(0)) is None


def _truth_flow(truth: DenseTruth, i: int, j: int):
    pos, occluded, layer = truth.dense(i, j)
    ys, xs = np.meshgrid(np.arange(truth.height) + 0.5, np.arange(truth.width) + 0.5, indexing="ij")
    return pos - np.stack([xs, ys], -1), (layer == 0) & ~occluded


def test_renderer_relief_moves_nearer_points_more_and_is_photoconsistent():
    truth = DenseTruth(video_seed(0, 1), parallax=2.0)
    k = truth.inverse_depth(0)
    assert 1.0 <= np.nanmin(k) < 1.05 and 2.5 < np.nanmax(k) <= 3.0
    flow, use = _truth_flow(truth, 0, 8)
    # the displacement beyond the far plane's is k - 1 times the camera's (zoomed) pan, one direction
    far = use & (k < 1.001)
    ys, xs = np.mgrid[0 : truth.height, 0 : truth.width] + 0.5
    design = np.stack([np.ones_like(xs), xs, ys], -1)
    plane, *_ = np.linalg.lstsq(design[far], flow[far], rcond=None)  # the far plane's (affine) flow
    extra = flow - design @ plane
    sel = use & (k > 1.5)
    direction = extra[sel] / np.linalg.norm(extra[sel], axis=1, keepdims=True)
    assert np.abs(direction @ direction.mean(0) / np.linalg.norm(direction.mean(0))).min() > 0.95
    assert np.corrcoef(np.linalg.norm(extra[use], axis=1), k[use])[0, 1] > 0.95
    # the frames agree with the correspondences: frame 0's colour is found where its pixels land in 8
    ys, xs = np.nonzero(use)
    pos = np.stack([xs, ys], 1) + 0.5 + flow[ys, xs]
    inside = (pos[:, 0] > 1) & (pos[:, 0] < truth.width - 2) & (pos[:, 1] > 1) & (pos[:, 1] < truth.height - 2)
    a = truth.video[0][ys[inside], xs[inside]].astype(np.float64)
    b = truth.video[8][np.floor(pos[inside, 1]).astype(int), np.floor(pos[inside, 0]).astype(int)]
    assert np.median(np.abs(a - b)) < 6  # nearest-pixel lookup of a smooth texture
    # without parallax the scene is one plane at k = 1, and the default renderer is unchanged
    flat = DenseTruth(video_seed(0, 1))
    assert np.nanmax(flat.inverse_depth(0)) == 1.0
    assert np.array_equal(flat.video, render_scene(video_seed(0, 1))["video"])


def test_renderer_rejects_out_of_range_parallax():
    with pytest.raises(ValueError, match="0 <= parallax <= 4"):
        render_scene(1, parallax=5.0)


def test_renderer_relief_is_recovered_from_its_exact_flows():
    truth = DenseTruth(video_seed(0, 2), parallax=2.0)
    flow, use = _truth_flow(truth, 0, 8)
    gamma = pair_parallax(flow, use, DEFAULTS, np.random.default_rng(0))
    k = truth.inverse_depth(0)
    ok = use & np.isfinite(gamma)
    assert _rank_corr(gamma[ok], k[ok]) > 0.8


def test_relief_accuracy_and_truth_depth_with_relief():
    k = np.array([[[1.0, 1.5, 2.0, np.nan]]])  # [T=1, H=1, W=4]; the last pixel is an object
    front = np.array([[[0, 0, 0, 1]]])
    depth = layer_map_depth(front, inverse_depth=k)
    np.testing.assert_allclose(depth[0, 0], [1.0, 0.925, 0.85, 0.85], atol=1e-6)
    right = relief_accuracy(depth, k, reach=1, min_diff=0.1)
    assert right == {"pairs": 2, "correct": 1.0, "ties": 0.0}
    flat = relief_accuracy(np.ones_like(depth), k, reach=1, min_diff=0.1)
    assert flat["correct"] == 0.0 and flat["ties"] == 1.0
    reversed_ = relief_accuracy(2 - depth, k, reach=1, min_diff=0.1)
    assert reversed_["correct"] == 0.0 and reversed_["ties"] == 0.0


def test_layered_depth_carries_the_static_relief(tmp_path):
    """The layers method on exact flows and masks of a relief video: with ``parallax`` the static pixels'
    depth order follows their true inverse depth; with 0 the static scene is one plane (all ties)."""
    from omnitrack.depth.layers import layered_depth
    from omnitrack.flow.store import FlowWriter
    from omnitrack.model.inputs import load_masks

    t, (w, h) = 16, (96, 96)
    truth = DenseTruth(video_seed(0, 1), t, (w, h), parallax=2.0)
    pairs = [(i, i + s * g) for i in range(t) for g in (1, 2, 4, 8) for s in (-1, 1) if 0 <= i + s * g < t]
    masks = np.zeros((len(pairs), h, w), np.uint8)
    with FlowWriter(tmp_path / "masks", pairs, t, h, w, meta={"masks": {"exact": True}}) as writer:
        for k, (i, j) in enumerate(pairs):
            flow, _ = _truth_flow(truth, i, j)
            pos, occluded, _ = truth.dense(i, j)
            masks[k] = ((pos >= 0) & (pos < [w, h])).all(-1) & ~occluded
            writer.put(k, flow.astype(np.float32))
    np.save(tmp_path / "masks" / "mask.npy", masks)
    np.save(tmp_path / "masks" / "counts.npy", np.zeros((t, h, w), np.uint16))
    store, mask, _ = load_masks(tmp_path / "masks", t, h, w)
    inverse_depth = truth.inverse_depths()
    relief = relief_accuracy(layered_depth(store, mask, {"parallax": 0.15}, seed=0), inverse_depth)
    assert relief["correct"] > 0.75 and relief["ties"] < 0.15, relief
    # without the relief the static scene is one plane; (with ``follow`` 0.8 % of the static pixels,
    # the near ramp where its parallax exceeds the homography tolerance, join a moving layer)
    flat = relief_accuracy(layered_depth(store, mask, {"parallax": 0.0, "follow": False}, seed=0), inverse_depth)
    assert flat["ties"] == 1.0


def test_refit_true_layers_carry_the_true_relief(tmp_path):
    """``refit --depth layers-truth`` on a dataset with relief: the static scene from 1.0 (far plane)
    towards 0.85 by its true inverse depth; objects at their layer's depth."""
    from omnitrack.data.frames import save_frames
    from omnitrack.io import write_json
    from omnitrack.tools.refit import depth_start

    spec = {"kind": "synthetic", "num_videos": 1, "num_frames": 6, "size": [48, 40], "seed": 0, "parallax": 2.0}
    truth = DenseTruth(video_seed(0, 0), 6, (48, 40), parallax=2.0)
    write_json(tmp_path / "manifest.json", {"dataset": "px", "kind": "synthetic", "videos": ["synth_000"]})
    save_frames(tmp_path / "frames" / "synth_000.npz", truth.video, {})
    depth = depth_start(tmp_path, "synth_000", "layers-truth", {"datasets": {"px": spec}})
    np.testing.assert_array_equal(depth, layer_map_depth(truth.front, inverse_depth=truth.inverse_depths()))
    static = truth.front == 0
    assert depth[static].min() == pytest.approx(0.85) and depth[static].max() > 0.99
    assert relief_accuracy(depth, truth.inverse_depths(), reach=2)["correct"] == 1.0
