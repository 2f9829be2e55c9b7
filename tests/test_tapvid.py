"""TAP-Vid pickles: reading the three official layouts, validation, query sampling, splitting."""

import pickle

import cv2
import numpy as np
import pytest

from omnitrack.data.tapvid import load_tapvid, sample_queries, split_tapvid
from omnitrack.errors import InputError
from omnitrack.io import load_npz
from tests.shared import shared_file


def _example(t=6, n=4, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    occ = rng.random((n, t)) < 0.3
    occ[:, 0] = False
    return {
        "video": rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
        "points": rng.uniform(0, 1, (n, t, 2)).astype(np.float32),
        "occluded": occ,
    }


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_davis_dict_form(tmp_path):
    data = {"bear": _example(seed=1), "car": _example(seed=2, n=2)}
    out = load_tapvid(_dump(tmp_path / "davis.pkl", data))
    assert sorted(out) == ["bear", "car"]
    for k in data:
        np.testing.assert_array_equal(out[k]["video"], data[k]["video"])
        np.testing.assert_array_equal(out[k]["points"], data[k]["points"])
        np.testing.assert_array_equal(out[k]["occluded"], data[k]["occluded"])
        assert out[k]["points"].dtype == np.float32 and out[k]["occluded"].dtype == bool


def test_rgb_stacking_list_form(tmp_path):
    data = [_example(seed=i) for i in range(3)]
    out = load_tapvid(_dump(tmp_path / "rgb_stacking.pkl", data))
    assert list(out) == ["0000", "0001", "0002"]
    np.testing.assert_array_equal(out["0002"]["points"], data[2]["points"])


def _jpeg_example(seed, colour):
    ex = _example(seed=seed, t=3, h=32, w=48)
    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[...] = colour  # RGB
    ex["video"] = [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames]
    return ex


def test_kinetics_shards_with_jpeg_frames(tmp_path):
    shards = tmp_path / "kinetics"
    shards.mkdir()
    _dump(shards / "0000_of_0010.pkl", [_jpeg_example(0, (200, 30, 10)), _example(seed=5)])
    _dump(shards / "0001_of_0010.pkl", [_jpeg_example(1, (10, 30, 200))])
    _dump(shards / "notes.pkl", {"not": "a shard"})  # ignored: not *_of_0010.pkl
    out = load_tapvid(shards)
    assert sorted(out) == ["0000_0000", "0000_0001", "0001_0000"]
    red = out["0000_0000"]["video"]
    assert red.shape == (3, 32, 48, 3) and red.dtype == np.uint8
    assert np.abs(red.astype(int) - [200, 30, 10]).max() <= 3  # decoded as RGB, not BGR
    assert np.abs(out["0001_0000"]["video"].astype(int) - [10, 30, 200]).max() <= 3
    assert list(load_tapvid(shards / "0001_of_0010.pkl")) == ["0001_0000"]  # one shard file
    assert sorted(load_tapvid(str(shards / "000[01]_of_0010.pkl"))) == sorted(out)  # a glob


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: [1, 2, 3], "video 'v': is a list, expected a dict"),
        (lambda e: {"video": e["video"], "points": e["points"]}, r"video 'v': has no key \['occluded'\]"),
        (lambda e: {**e, "video": e["video"].astype(np.float32)}, r"'video' is float32 .* expected uint8"),
        (lambda e: {**e, "video": e["video"][..., 0]}, r"'video' is uint8 \(6, 24, 32\)"),
        (lambda e: {**e, "points": e["points"][..., 0]}, r"'points' is float32 \(4, 6\), expected float \[N, T, 2\]"),
        (lambda e: {**e, "occluded": e["occluded"][0]}, r"'occluded' is bool \(6,\), expected bool \[N, T\]"),
        (lambda e: {**e, "occluded": e["occluded"][:3]}, r"'occluded' \(3, 6\) does not match 'points' \(4, 6\)"),
        (lambda e: {**e, "video": e["video"][:5]}, "'points' has 6 frames but 'video' has 5"),
        (
            lambda e: {**e, "video": e["video"][:1], "points": e["points"][:, :1], "occluded": e["occluded"][:, :1]},
            "has 1 frame",
        ),
        (
            lambda e: {**e, "video": e["video"][:0], "points": e["points"][:, :0], "occluded": e["occluded"][:, :0]},
            "has 0 frame",
        ),
        (
            lambda e: {**e, "points": np.where(np.arange(6)[None, :, None] == 2, np.nan, e["points"])},
            r"'points' contains NaN \(first at track 0, frame 2\)",
        ),
        (lambda e: {**e, "points": e["points"] * 256}, r"visible 'points' span .* normalised to \[0, 1\]"),
    ],
)
def test_malformed_example(tmp_path, mutate, message):
    path = _dump(tmp_path / "bad.pkl", {"v": mutate(_example())})
    with pytest.raises(InputError, match=message) as err:
        load_tapvid(path)
    assert str(err.value).startswith(str(path))


def test_range_tolerance_clips_and_never_visible_tracks_are_dropped(tmp_path):
    ex = _example()
    ex["points"][0, 0] = (1.004, -0.003)  # within tolerance: clipped
    ex["occluded"][2] = True  # never visible: dropped
    with pytest.warns(UserWarning, match=r"video 'v': dropped 1 of 4 tracks"):
        out = load_tapvid(_dump(tmp_path / "d.pkl", {"v": ex}))["v"]
    assert out["points"].shape == (3, 6, 2)
    np.testing.assert_array_equal(out["points"][0, 0], [1.0, 0.0])
    np.testing.assert_array_equal(out["points"][2], ex["points"][3])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.pkl: does not exist"):
        load_tapvid(tmp_path / "nothing.pkl")
    (tmp_path / "corrupt.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputError, match=r"corrupt\.pkl: is not a readable pickle"):
        load_tapvid(tmp_path / "corrupt.pkl")
    with pytest.raises(InputError, match=r"holds a str, expected a dict \(DAVIS\) or a list"):
        load_tapvid(_dump(tmp_path / "s.pkl", "hello"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: is a directory without TAP-Vid Kinetics shards"):
        load_tapvid(tmp_path / "empty")


def _hand_tracks():
    t = 11
    points = np.stack([np.arange(t) * 10.0 + i for i in range(4)])[..., None] * [1.0, 0.5] + [0, 3]
    occ = np.zeros((4, t), bool)
    occ[1, [0, 10]] = True  # visible at 5 only among the strided frames; first visible at 1
    occ[2] = True  # never visible
    occ[3] = True
    occ[3, [7, 10]] = False  # first visible at 7; strided at 10
    return points.astype(np.float32), occ


def test_sample_queries_strided_order_and_content():
    points, occ = _hand_tracks()
    q, tracks, gocc = sample_queries(points, occ, "strided", stride=5)
    # tapnet order: frames 0, 5, 10 outer; visible tracks inner
    expected = [(0, 0), (5, 0), (5, 1), (10, 0), (10, 3)]
    assert q.shape == (5, 3) and tracks.shape == (5, 11, 2) and gocc.shape == (5, 11)
    for row, (f, k) in enumerate(expected):
        np.testing.assert_array_equal(q[row], [f, points[k, f, 1], points[k, f, 0]])
        np.testing.assert_array_equal(tracks[row], points[k])
        np.testing.assert_array_equal(gocc[row], occ[k])
        assert not gocc[row, f]


def test_sample_queries_first():
    points, occ = _hand_tracks()
    q, tracks, gocc = sample_queries(points, occ, "first")
    expected = [(0, 0), (1, 1), (7, 3)]
    assert q.shape == (3, 3)
    for row, (f, k) in enumerate(expected):
        np.testing.assert_array_equal(q[row], [f, points[k, f, 1], points[k, f, 0]])
        np.testing.assert_array_equal(tracks[row], points[k])
    with pytest.raises(ValueError, match="query_mode"):
        sample_queries(points, occ, "all")
    q, tracks, gocc = sample_queries(points[2:3], occ[2:3], "first")
    assert q.shape == (0, 3) and tracks.shape == (0, 11, 2) and gocc.shape == (0, 11)


def test_davis32_query_counts(shared_data):
    path = shared_file(shared_data, "tapvid/davis32_dev.pkl")
    data = load_tapvid(path)
    assert sorted(data) == ["car-roundabout", "cows", "dog", "motocross-jump"]
    counts = {
        m: sum(len(sample_queries(v["points"] * 256, v["occluded"], m)[0]) for v in data.values())
        for m in ("strided", "first")
    }
    assert counts == {"strided": 271, "first": 63}


def test_split_tapvid(tmp_path):
    data = {"bear": _example(seed=1), "car": _example(seed=2, n=2), "dog": _example(seed=3)}
    src = _dump(tmp_path / "davis.pkl", data)
    names = split_tapvid(src, tmp_path / "source", subset=["dog", "bear"])
    assert names == {"bear": "bear", "dog": "dog"}
    assert sorted(p.name for p in (tmp_path / "source").iterdir()) == ["bear.npz", "dog.npz"]
    z = load_npz(tmp_path / "source" / "dog.npz", {"video": (4, "u"), "points": (3, "f"), "occluded": (2, "b")})
    np.testing.assert_array_equal(z["video"], data["dog"]["video"])
    np.testing.assert_array_equal(z["points"], data["dog"]["points"])
    np.testing.assert_array_equal(z["occluded"], data["dog"]["occluded"])
    assert list(split_tapvid(src, tmp_path / "all")) == ["bear", "car", "dog"]
    with pytest.raises(InputError, match=r"davis\.pkl: has no video \['cat'\] \(available: bear, car, dog\)"):
        split_tapvid(src, tmp_path / "x", subset=["cat", "dog"])
