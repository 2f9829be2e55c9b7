"""The depth stage's methods (layers, motion, none), the order measure, the truth utility and the file."""

import json
import logging

import numpy as np
import pytest

from omnitrack.depth.layers import layered_depth, order_levels
from omnitrack.depth.order import layer_map_depth, order_accuracy
from omnitrack.depth.stage import compute_depth
from omnitrack.errors import CacheError, InputError
from omnitrack.model.inputs import load_masks
from omnitrack.model.synthetic import make_video, write_inputs


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A textured square moving over a translating textured background, exact flows and masks."""
    video = make_video(12, 64, 64, side=20, v_front=(3.0, 1.0), v_back=(-0.5, 0.25))
    inputs = write_inputs(video, tmp_path_factory.mktemp("square"), window=4)
    store, mask, _ = load_masks(inputs["masks_dir"], 12, 64, 64)
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    front = np.stack([video.in_front(t, np.stack([xs, ys], -1)) for t in range(12)]).astype(np.uint8)
    return video, inputs, (store, mask), front


def test_layers_put_the_moving_square_in_front_in_every_frame(square):
    video, _, (store, mask), front = square
    depth, info = layered_depth(store, mask, seed=0, details=True)
    assert depth.shape == (12, 64, 64) and depth.dtype == np.float32
    assert np.isin(
        np.unique(depth).round(4), np.float32([0.7, 1.0])
    ).all()  # two layers: background 1.0, square at `near`
    assert list(info["levels"]) == [0, 1]  # one square layer through the whole video (linked by flow)
    assert info["votes"][0, 1] > 0  # occlusion evidence, not only the prior: the background disappears
    for t in range(12):
        inner = front[t].astype(bool) & (np.abs(np.gradient(front[t].astype(float))).sum(0) == 0)
        assert np.median(depth[t][inner]) == pytest.approx(0.7) and (depth[t][front[t] == 0] == 1.0).mean() > 0.95
    score = order_accuracy(depth, front)
    assert score["correct"] > 0.9 and score["ties"] < 0.1, score


def test_order_levels_follow_the_votes_and_fall_back_to_the_prior():
    votes, weights = np.zeros((4, 4)), np.zeros((4, 4))
    # layer 1 is in front of the static scene, layer 3 in front of layer 1 (strong evidence), layer 2
    # has no boundary with anything
    for behind, front in ((0, 1), (1, 3)):
        weights[behind, front] = weights[front, behind] = 10
        votes[behind, front], votes[front, behind] = 5.0, -5.0
    assert list(order_levels(votes, weights, margin=0.1)) == [0, 1, 1, 2]  # 2 in front by the prior
    # voted behind the static scene, layer 1 shares its level; the static scene stays the farthest
    votes[0, 1], votes[1, 0] = -5.0, 5.0
    assert list(order_levels(votes, weights, margin=0.1)) == [0, 0, 1, 1]
    # a contradiction (cycle 1 < 2 < 3 < 1) keeps the two strongest votes
    votes, weights = np.zeros((4, 4)), np.ones((4, 4))
    for behind, front, v in ((1, 2, 0.9), (2, 3, 0.8), (3, 1, 0.3)):
        votes[behind, front], votes[front, behind] = v, -v
    assert list(order_levels(votes, weights, margin=0.1)) == [0, 1, 2, 3]


def test_order_measure_and_the_truth_depth():
    front = np.zeros((2, 8, 8), np.uint8)
    front[:, 2:6, 2:6] = 1
    front[:, 3:5, 3:5] = 2
    truth = layer_map_depth(front)
    assert truth.dtype == np.float32 and set(np.unique(truth)) == {np.float32(1.0), np.float32(0.85), np.float32(0.7)}
    right = order_accuracy(truth, front, reach=1)
    assert right["correct"] == 1.0 and right["ties"] == 0.0 and right["pairs"] > 0
    assert order_accuracy(np.ones_like(truth), front, reach=1)["ties"] == 1.0
    assert order_accuracy(2 - truth, front, reach=1)["correct"] == 0.0  # reversed order
    assert layer_map_depth(np.array([[[5]]]))[0, 0, 0] == pytest.approx(0.25)  # beyond the table: 0.15 a layer


def test_none_is_constant_and_motion_is_the_former_fit_start(square):
    from omnitrack.model.motion_init import motion_depth

    video, inputs, masks, _ = square
    frames = np.zeros((12, 64, 64, 3), np.uint8)
    flat = compute_depth(frames, {"method": "none"})
    assert flat.shape == (12, 64, 64) and (flat == 1.0).all()
    motion = compute_depth(frames, {"method": "motion", "motion": {"sep": 0.3}}, masks=masks)
    cfg = {
        "depth_init": 1.0,
        "motion_init_sep": 0.3,
        "motion_init_thresh": 1.0,
        "motion_init_samples": 2000,
        "seed": 1234,
    }
    np.testing.assert_array_equal(motion, motion_depth(*masks, 64, 64, cfg))  # same segmentation, per pixel
    assert motion.min() == pytest.approx(0.7) and motion.max() == 1.0
    with pytest.raises(ValueError, match="depth method 'layers' needs the masks stage's flows"):
        compute_depth(frames, {"method": "layers"})
    with pytest.raises(InputError, match=r"config: depth.method 'zoe' is unknown \(use one of layers, "):
        compute_depth(frames, {"method": "zoe"})


def test_the_depth_file_and_the_fit_reading_it(square, tmp_path):
    from omnitrack.data.frames import save_frames
    from omnitrack.depth.file import load_depth_file
    from omnitrack.pipeline import estimate_depth, optimise

    video, inputs, _, _ = square
    frames_path = tmp_path / "frames.npz"
    save_frames(
        frames_path,
        video.render(),
        {"video": "square", "source": "test", "source_size": [64, 64], "fps": None, "has_gt": False, "params": {}},
    )
    out = tmp_path / "depth" / "square.npz"
    estimate_depth(frames_path, inputs["masks_dir"], out, {"method": "layers", "layers": {"near": 0.6}}, version=7)
    depth, meta = load_depth_file(out)
    assert depth.shape == (12, 64, 64) and depth.min() == pytest.approx(0.6) and depth.max() == 1.0
    assert meta["method"] == "layers" and meta["settings"]["layers"]["near"] == 0.6 and meta["version"] == 7
    json.dumps(meta)
    # depth of other frames: the fit's input is rejected naming the depth file
    other = tmp_path / "other.npz"
    np.savez(other, depth=depth[:5], meta=np.array(json.dumps(meta)))
    with pytest.raises(
        CacheError,
        match=rf"{other}: depth maps \(5, 64, 64\) \(T, H, W\) do not match .*frames.npz \(12, 64, 64\): it was computed from other frames",
    ):
        optimise(frames_path, inputs["masks_dir"], None, tmp_path / "m.pt", None, {"steps": 1}, depth_path=other)


def test_a_fit_from_another_depth_start_is_not_reused(square, tmp_path, caplog):
    from omnitrack.model import fit

    video, inputs, _, _ = square
    frames = video.render()
    cfg = {"steps": 2, "progress": False, "tensorboard": False, "threads": 1}
    ck = tmp_path / "m.pt"
    caplog.set_level(logging.INFO, logger="omnitrack")
    for value in (1.0, 1.0, 0.8):
        fit(
            frames,
            cfg,
            masks_dir=inputs["masks_dir"],
            depth=np.full((12, 64, 64), value, np.float32),
            checkpoint_path=ck,
        )
    assert caplog.messages == [
        f"{ck}: already fitted with this configuration; not refitting",
        f"{ck}: fitted with another configuration or initial depth; refitting",
    ]


def test_refit_depth_starts_name_what_is_missing(tmp_path):
    from omnitrack.io import write_json
    from omnitrack.tools.refit import depth_start

    write_json(tmp_path / "manifest.json", {"dataset": "d", "kind": "tapvid", "videos": ["v"], "sources": {}})
    with pytest.raises(
        InputError,
        match=rf"{tmp_path}/depth/v.npz: does not exist \(a run from before the depth stage\?\) \(pass --depth layers",
    ):
        depth_start(tmp_path, "v", "workspace", {})
    with pytest.raises(InputError, match=r"manifest.json: --depth layers-truth needs a synthetic dataset"):
        depth_start(tmp_path, "v", "layers-truth", {})
    assert depth_start(tmp_path, "v", "fit", {}) is None
    np.save(tmp_path / "v.npy", np.ones((2, 4, 4), np.float32))
    assert depth_start(tmp_path, "v", "workspace", {}, depth_dir=tmp_path).shape == (2, 4, 4)


def test_following_the_static_scene_keeps_it_when_an_object_fills_the_frame(tmp_path):
    """A disc moving left and approaching the camera grows from 13 % to 89 % of the frame over a background moving
    right (like a camera following a jumping motorbike): each frame's largest consensus is the disc in the last
    frames, the static scene followed from frame 0 stays the background."""
    from omnitrack.flow.store import FlowStore, FlowWriter, window_pairs
    from omnitrack.interp import pixel_centres
    from omnitrack.model.motion_init import independence

    t, size = 8, 64
    xy = pixel_centres(size, size)

    def radius(i):
        return size * (0.2 + 0.05 * i)

    def centre(i):
        return np.float32([size / 2 - i, size / 2 + 0.5 * i])

    def disc(i):
        return np.linalg.norm(xy - centre(i), axis=-1) < radius(i)

    pairs = window_pairs(t, 2)
    with FlowWriter(tmp_path / "m", pairs, t, size, size, meta={}) as writer:
        for k, (i, j) in enumerate(pairs):
            grow = centre(j) - centre(i) + (xy - centre(i)) * (radius(j) / radius(i) - 1)  # it approaches
            writer.put(k, np.where(disc(i)[..., None], grow, np.float32([3.0, 0.0]) * (j - i)).astype(np.float32))
    mask = np.ones((len(pairs), size, size), np.uint8)
    cfg = {"motion_init_samples": 2000, "motion_init_thresh": 1.0}
    store = FlowStore(tmp_path / "m")
    plain = independence(store, mask, cfg, np.random.default_rng(0))
    follow = independence(store, mask, cfg, np.random.default_rng(0), follow=True)
    for i in range(t):
        inner, outer = disc(i), ~disc(i)
        assert (follow[i][inner] > 0.5).mean() > 0.95 and (follow[i][outer] <= 0.5).mean() > 0.95, i
    assert (plain[-1][disc(t - 1)] <= 0.5).mean() > 0.95  # without following, the disc is the static scene
