"""The synthetic benchmark: determinism, exact ground truth, and the motion it must contain."""

import numpy as np
import pytest

from omnitrack.data.synthetic import make_dataset, render_scene, render_video, video_seed, write_dataset
from omnitrack.data.tapvid import load_tapvid
from omnitrack.interp import bilinear

N_VIDEOS = 4


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(video_seed(0, i)) for i in range(N_VIDEOS)]


def _segments(flags: np.ndarray) -> int:
    """Number of maximal runs of True in a 1-D bool array."""
    f = np.concatenate([[False], flags, [False]]).astype(int)
    return int(np.sum(np.diff(f) == 1))


def test_deterministic_by_seed():
    a = render_video(7)
    b = render_video(7)
    c = render_video(8)
    for key in ("video", "points", "occluded"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["video"], c["video"])
    assert a["video"].shape == (24, 160, 160, 3) and a["video"].dtype == np.uint8
    assert a["points"].shape == (48, 24, 2) and a["points"].dtype == np.float32
    assert a["occluded"].shape == (48, 24) and a["occluded"].dtype == bool
    assert a["points"].min() >= 0 and a["points"].max() <= 1
    small = render_video(3, num_frames=5, size=(64, 48), num_objects=1, num_tracks=10)
    assert small["video"].shape == (5, 48, 64, 3) and small["points"].shape == (10, 5, 2)


def test_tracks_split_between_background_and_objects(scenes):
    for s in scenes:
        layers = s["track_layer"]
        assert len(layers) == 48
        assert np.sum(layers == 0) == 24 and set(layers[layers > 0]) == {1, 2, 3}
        assert (~s["occluded"]).any(axis=1).all()  # every track visible somewhere


def test_ground_truth_matches_rendered_layers(scenes):
    """The layer seen at the pixel holding a visible GT point is the track's layer (except where a
    layer boundary passes between the point and that pixel's centre: a small share)."""
    agree = total = 0
    for s in scenes:
        n, t = np.nonzero(~s["occluded"])
        xy = s["tracks"][n, t]
        seen = s["front"][t, np.floor(xy[:, 1]).astype(int), np.floor(xy[:, 0]).astype(int)]
        agree += np.sum(seen == s["track_layer"][n])
        total += len(n)
    assert agree / total > 0.97


def test_tracked_colour_is_constant_while_visible(scenes):
    """Colour sampled (bilinear) from the frame at a visible GT point, for points whose 4 bilinear
    neighbours all show the track's own layer (so no layer boundary is mixed in).

    The frame holds the texture sampled at pixel centres; re-sampling it bilinearly at the point
    differs from the texture value at the point only by interpolation error and rounding. For the
    finest texture component (σ = 1.5 px, amplitude ~25 levels) the bilinear error bound
    h²/8·|f''| is ~3 levels at h = 1 px (objects are magnified ≤ 1.4×), plus 0.5 for rounding, on
    either of the two samples compared: 10 levels per channel bounds it; the mean must be far
    smaller. Shifting the points by 2 px must break the constancy (the texture is not flat)."""
    errors, shifted_errors = [], []
    for s in scenes:
        video, tracks, front = s["video"], s["tracks"], s["front"]
        h, w = video.shape[1:3]
        for n in range(len(tracks)):
            cols, cols_shifted = [], []
            for t in np.flatnonzero(~s["occluded"][n]):
                c0, r0 = np.floor(tracks[n, t] - 0.5).astype(int)
                if c0 < 0 or r0 < 0 or c0 > w - 2 or r0 > h - 2:
                    continue
                if not np.all(front[t, r0 : r0 + 2, c0 : c0 + 2] == s["track_layer"][n]):
                    continue
                cols.append(bilinear(video[t], tracks[n, t][None])[0])
                cols_shifted.append(bilinear(video[t], tracks[n, t][None] + [2.0, 0.0])[0])
            if len(cols) >= 2:
                cols, cols_shifted = np.array(cols), np.array(cols_shifted)
                errors.append(np.abs(cols - cols[0]).ravel())
                shifted_errors.append(np.abs(cols_shifted - cols[0]).ravel())
    errors, shifted_errors = np.concatenate(errors), np.concatenate(shifted_errors)
    assert len(errors) > 1000
    assert errors.max() <= 10.0
    assert errors.mean() < 1.5
    assert shifted_errors.mean() > 5 * errors.mean()


def test_motion_occlusion_and_reappearance(scenes):
    disp, occluded_some, reappear = [], [], []
    for s in scenes:
        vis = ~s["occluded"]
        for n in range(len(vis)):
            p = s["tracks"][n][vis[n]]
            disp.append(np.linalg.norm(p - p[0], axis=-1).max())
            occluded_some.append(s["occluded"][n].any())
            reappear.append(_segments(vis[n]) >= 2)
    assert np.median(disp) > 5.0  # measured 9-18 px per video at 160x160 (videos 0-3 of seed 0)
    assert np.mean(occluded_some) >= 0.2  # measured 0.23-0.48 per video
    assert np.mean(reappear) >= 0.1  # measured 0.15-0.27 per video


def test_objects_leave_and_reenter_the_frame(scenes):
    for s in scenes:
        in_frame = s["in_frame"]
        reenter = np.array([_segments(f) >= 2 for f in in_frame])
        # object 0 (layer 1) always swings out of the frame and back in
        assert reenter[s["track_layer"] == 1].any()
        left = ~in_frame.all(axis=1)
        assert np.all(s["occluded"][~in_frame])  # out of frame implies occluded
        assert left.mean() > 0.1


def test_dataset_pickle_round_trip(tmp_path):
    path = tmp_path / "synth.pkl"
    names = write_dataset(path, 2, seed=5, num_frames=6, size=(48, 40), num_tracks=12)
    assert names == ["synth_000", "synth_001"]
    loaded = load_tapvid(path)
    expected = make_dataset(2, seed=5, num_frames=6, size=(48, 40), num_tracks=12)
    assert sorted(loaded) == names
    for name in names:
        for key in ("video", "points", "occluded"):
            np.testing.assert_array_equal(loaded[name][key], expected[name][key])
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary left behind


def test_dense_truth_agrees_with_the_sparse_tracks(scenes):
    """The dense correspondences (every pixel, from the layer maps) reproduce the benchmark's tracks:
    same positions and occlusion in every frame, from every frame where a track is visible."""
    from omnitrack.data.synthetic import DenseTruth

    scene = scenes[1]
    truth = DenseTruth(video_seed(0, 1))
    np.testing.assert_array_equal(truth.video, scene["video"])
    tracks, occluded = scene["tracks"], scene["occluded"]
    checked = 0
    for i in range(0, tracks.shape[1], 5):
        vis = ~occluded[:, i]
        for j in range(tracks.shape[1]):
            target, occ, _ = truth.correspond(tracks[vis, i], i, j, layer=scene["track_layer"][vis])
            np.testing.assert_allclose(target, tracks[vis, j], atol=1e-9)
            np.testing.assert_array_equal(occ, occluded[vis, j])
            checked += int(vis.sum())
    assert checked > 1000
    # dense form: a pixel centre's layer is the front layer there, and it maps onto itself in its own frame
    target, occ, layer = truth.dense(3, 3)
    np.testing.assert_array_equal(layer, scene["front"][3])
    assert not occ.any()
    ys, xs = np.mgrid[0:160, 0:160] + 0.5
    np.testing.assert_allclose(target, np.stack([xs, ys], -1), atol=1e-9)
    # an object pixel moves with its object: it differs from the background's motion
    target, occ, layer = truth.dense(3, 12)
    obj = layer > 0
    bg_motion = np.median((target - np.stack([xs, ys], -1))[~obj], axis=0)
    assert np.median(np.linalg.norm((target - np.stack([xs, ys], -1))[obj] - bg_motion, axis=-1)) > 3
