"""The frame shift (omnitrack/model/shift.py): the dominant motion removed before the lift."""

import numpy as np
import pytest
import torch

from omnitrack.model import Tracker, fit
from omnitrack.model.config import resolve
from omnitrack.model.inputs import load_masks
from omnitrack.model.scene import Scene
from omnitrack.model.shift import frame_shift, frame_similarity
from omnitrack.model.synthetic import make_video, write_inputs
from omnitrack.model.training import _build, _initial_depth
from omnitrack.tools.fit_quality import residuals
from tests.shared import tiny_nvp_config


def test_frame_shift_is_minus_the_chained_dominant_flow(tmp_path):
    """The background (most of the frame) moves (3, -1) px per frame, a square (3, 2): each frame is
    shifted back by the background's motion so far."""
    video = make_video(8, 48, 48, side=12, v_front=(3.0, 2.0), v_back=(3.0, -1.0))
    inputs = write_inputs(video, tmp_path, window=2)
    store, mask, _ = load_masks(inputs["masks_dir"], 8, 48, 48)
    shift = frame_shift(store, mask)
    assert shift.shape == (8, 2) and shift.dtype == np.float32
    np.testing.assert_allclose(shift, -np.arange(8)[:, None] * [3.0, -1.0], atol=1e-2)


def _identity_scene(shift, cfg):
    """A scene whose deformer is the identity (last MLP layer zero: every knot at its sigmoid(0) place)."""
    scene = Scene(5, 40, 60, torch.full((5, 12, 18), 2.0), cfg, shift)
    with torch.no_grad():
        scene.deformer.weights[-1].zero_()
        scene.deformer.biases[-1].zero_()
    return scene


def test_a_pan_is_the_identity_deformation_of_the_shifted_frames():
    """With the identity deformation, pixel p of frame i lands at p + shift_i - shift_j in frame j at the
    same depth: the lift and the projection apply each frame's own shift, whatever the depth."""
    cfg = tiny_nvp_config()
    shift = torch.tensor([[0.0, 0.0], [-7.0, 2.0], [-15.0, 3.5], [-22.0, 6.0], [-30.0, 7.0]])
    scene = _identity_scene(shift, cfg)
    prep = scene.deformer.prepare()
    x = torch.tensor([[10.5, 30.25, 55.0]]).expand(4, 3)
    y = torch.tensor([[5.5, 20.0, 39.0]]).expand(4, 3)
    d = torch.tensor([[0.7, 2.0, 3.1]]).expand(4, 3)
    fi, fj = torch.tensor([0, 1, 4, 2]), torch.tensor([4, 3, 0, 2])
    with torch.no_grad():
        x2, y2, z2 = scene.correspond(prep, fi, fj, x, y, d)
    move = shift[fi] - shift[fj]
    torch.testing.assert_close(x2, x + move[:, :1], atol=1e-3, rtol=0)
    torch.testing.assert_close(y2, y + move[:, 1:], atol=1e-3, rtol=0)
    torch.testing.assert_close(z2, d, atol=1e-5, rtol=0)
    # the bound covers the shifted frames: its centre moves with the median shift
    plain = _identity_scene(None, cfg)
    assert scene.centre[0] < plain.centre[0] - 1e-3 and scene.centre[1] > plain.centre[1] + 1e-3


def test_a_model_saved_before_the_shift_existed_loads_without_one():
    cfg = tiny_nvp_config()
    scene = _identity_scene(torch.tensor([[0.0, 0.0], [-7.0, 2.0], [-15.0, 3.5], [-22.0, 6.0], [-30.0, 7.0]]), cfg)
    state = Tracker(scene, cfg, {"frames": 5}).state()
    del state["scene"]["shift"]
    tracker = Tracker.from_state(state)
    assert torch.equal(tracker.scene.shift, torch.zeros(5, 2))
    tracks, occluded = tracker.track(np.array([[0, 20.0, 30.0]]))
    np.testing.assert_allclose(tracks[0, :, 0], 30.0, atol=1e-3)  # identity map, no shift: the point stays


@pytest.mark.parametrize("shifted", [False, True])
def test_a_camera_panning_across_its_frame_is_tracked_only_with_the_shift(tmp_path, shifted):
    """The whole frame moves 9 px per frame, 99 px over 12 frames of 48 px (motocross-jump pans 272 px
    over 32 frames of 256). Upstream's lift asks the couplings for that translation and leaves a
    tenth of the points more than 1 px off after the fit; with the frame shift the map only has to
    stay what it starts as, the same for every frame, and every point lands."""
    video = make_video(12, 48, 48, v_front=(9.0, 1.0), v_back=(9.0, 1.0))
    inputs = write_inputs(video, tmp_path, window=4)
    tracker = fit(
        inputs["frames"],
        tiny_nvp_config(steps=150, num_points=128, frame_shift=shifted),
        masks_dir=inputs["masks_dir"],
    )
    ys, xs = np.meshgrid(np.arange(4, 48, 8.0), np.arange(4, 48, 8.0), indexing="ij")
    q = np.concatenate([np.stack([np.full(ys.size, t), ys.ravel(), xs.ravel()], 1) for t in (0, 5, 11)])
    tracks, _ = tracker.track(q)
    gt, gt_occ = video.track(q)
    err = np.linalg.norm(tracks - gt, axis=-1)[~gt_occ]
    # the fit-quality tool's residual against the (exact) training flows says the same
    store, mask, _ = load_masks(inputs["masks_dir"], 12, 48, 48)
    res = residuals(tracker, store, mask, 4)
    at_points = residuals(tracker, store, mask, 4, lambda i, j: np.array([[4.5, 20.5], [8.0, 10.0]]))
    if shifted:
        assert err.max() < 0.1, err.max()
        assert res.size > 1000 and res.max() < 0.1 and at_points.size == 2 * 8 and at_points.max() < 0.1
    else:
        assert np.percentile(err, 90) > 1.0, np.percentile(err, 90)
        assert np.percentile(res, 90) > 1.0, np.percentile(res, 90)


class _Store:
    """The part of a flow store frame_similarity reads: consecutive flows of known similarities."""

    def __init__(self, flows):
        self.num_frames, (self.height, self.width) = len(flows) + 1, flows[0].shape[:2]
        self.index = {(i, i + 1): i for i in range(len(flows))}
        self.flows = flows

    def get(self, i, j):
        return self.flows[self.index[(i, j)]]


def _similarity_flow(h, w, angle_deg, scale, shift):
    """Flow [h, w, 2] of q = s R(angle) (p - c) + c + shift for the pixel centres p."""
    a = np.radians(angle_deg)
    m = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    p = np.stack([xs - w / 2, ys - h / 2], -1)
    return (p @ m.T + np.asarray(shift) - p).astype(np.float32), m


def test_a_rolling_zooming_camera_is_undone_by_the_frame_similarity():
    """Each frame rolls 6 degrees, zooms 4 % and shifts (3, -2) px past the last; a square of a fifth of
    the frame moves on its own (its flow is the outlier the robust fit must ignore). Frame t's pixels
    mapped by (linear, shift) land where the same scene point is in frame 0, and the identity
    deformation then carries frame-0 points to their place in every frame; frame_shift (a shift
    only) leaves the rotation in."""
    h = w = 40
    steps = [(6.0, 1.04, (3.0, -2.0))] * 5
    flows, ms = [], []
    for angle, scale, shift in steps:
        flow, m = _similarity_flow(h, w, angle, scale, shift)
        flow[10:28, 10:28] = (7.0, 5.0)  # the square's own motion
        flows.append(flow)
        ms.append((m, np.asarray(shift)))
    store = _Store(flows)
    mask = np.ones((len(flows), h, w), np.uint8)
    shift, linear = frame_similarity(store, mask)
    assert shift.shape == (6, 2) and linear.shape == (6, 2, 2) and shift.dtype == linear.dtype == np.float32
    # a frame-0 point followed through the true maps, then mapped back by frame t's similarity
    centre = np.array([w / 2, h / 2])
    p0 = np.array([[3.5, 4.5], [36.5, 2.5], [20.0, 37.5]]) - centre
    p = p0.copy()
    for t, (m, s) in enumerate(ms, start=1):
        p = p @ m.T + s
        back = p @ linear[t].T.astype(np.float64) + shift[t]
        np.testing.assert_allclose(back, p0, atol=2e-3)
    assert not np.allclose(frame_shift(store, mask)[5] + p, p0, atol=1.0)  # the shift alone misses the roll
    # the scene lifts and projects with it: the identity deformation maps frame 0 to frame 5 exactly
    cfg = tiny_nvp_config()
    scene = Scene(6, h, w, torch.full((6, 8, 8), 2.0), cfg, torch.from_numpy(shift), torch.from_numpy(linear))
    with torch.no_grad():
        scene.deformer.weights[-1].zero_()
        scene.deformer.biases[-1].zero_()
        x = torch.tensor([[3.5, 36.5, 20.0]], dtype=torch.float32)
        y = torch.tensor([[4.5, 2.5, 37.5]], dtype=torch.float32)
        x2, y2, z2 = scene.correspond(scene.deformer.prepare(), torch.tensor([0]), torch.tensor([5]), x, y, x * 0 + 1.5)
    np.testing.assert_allclose(torch.stack([x2, y2], -1)[0].numpy(), p + centre, atol=1e-2)
    torch.testing.assert_close(z2, x * 0 + 1.5, atol=1e-5, rtol=0)
    # and a saved model keeps it
    loaded = Tracker.from_state(Tracker(scene, cfg, {"frames": 6}).state())
    assert torch.equal(loaded.scene.linear, scene.linear) and torch.equal(loaded.scene.shift, scene.shift)


def test_a_long_zoom_is_held_within_the_scale_bound():
    """A camera zooming in 10 % per frame for 12 frames (3.1x): the chained scale stops at 2 (the frames
    keep their rotation and their centres' places), and the first frames are exact."""
    h = w = 32
    flow, _ = _similarity_flow(h, w, 0.0, 1.1, (1.0, 0.0))
    store = _Store([flow] * 12)
    shift, linear = frame_similarity(store, np.ones((12, h, w), np.uint8))
    scale = np.sqrt(np.linalg.det(linear.astype(np.float64)))
    np.testing.assert_allclose(scale[:7], 1.1 ** -np.arange(7), rtol=1e-4)  # 1.1^-7 = 0.51 > 1/2
    np.testing.assert_allclose(scale[8:], 0.5, rtol=1e-6)
    np.testing.assert_allclose(linear[:, 0, 1], 0.0, atol=1e-6)


@pytest.mark.parametrize("keys", [{"frame_similarity": True}, {"frame_similarity": True, "frame_shift": True}])
def test_the_fit_lifts_with_the_similarity_whenever_it_is_asked_for(tmp_path, keys):
    """frame_similarity replaces the shift whatever frame_shift says: the scene gets both maps."""
    video = make_video(6, 32, 32, v_front=(2.0, 1.0), v_back=(1.0, 0.0))
    inputs = write_inputs(video, tmp_path, window=2)
    cfg = resolve(tiny_nvp_config(**keys))
    init = _initial_depth(inputs["frames"], cfg, inputs["masks_dir"], None)
    scene = _build(inputs["frames"], cfg, inputs["masks_dir"], None, init).scene
    store, mask, _ = load_masks(inputs["masks_dir"], 6, 32, 32)
    shift, linear = frame_similarity(store, mask)
    assert torch.equal(scene.linear, torch.from_numpy(linear)) and torch.equal(scene.shift, torch.from_numpy(shift))
    np.testing.assert_allclose(shift[:, 0], -np.arange(6.0), atol=0.05)  # the background's 1 px per frame


def test_a_pair_with_an_implausible_zoom_keeps_only_its_shift():
    """A consecutive pair whose fitted scale step is 1.5 (beyond 1.25) is not trusted as a similarity:
    that frame gets the pair's median flow as a shift, exactly what frame_shift gives, and no zoom."""
    h = w = 32
    flow, _ = _similarity_flow(h, w, 0.0, 1.5, (2.0, 1.0))
    store = _Store([flow])
    mask = np.ones((1, h, w), np.uint8)
    shift, linear = frame_similarity(store, mask)
    np.testing.assert_allclose(linear[1], np.eye(2), atol=1e-6)
    np.testing.assert_allclose(shift, frame_shift(store, mask), atol=1e-5)
