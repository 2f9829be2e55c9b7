import numpy as np
import pytest

from omnitrack.errors import CacheError
from omnitrack.features.descriptors import compute_features
from omnitrack.features.matching import coherence_filter, load_matches, long_term_matches, match_defaults, save_matches
from tests.textures import texture

CELL = 8
SIFT = match_defaults("sift")


def shifted_video(shifts, height=128, width=160, seed=0):
    """Frames of one smooth texture; frame t is frame 0 moved by shifts[t] = (dx, dy) pixels (content moves +shift)."""
    shifts = np.asarray(shifts)
    pad = int(np.abs(shifts).max())
    big = texture(height + 2 * pad, width + 2 * pad, seed=seed)
    return np.stack([big[pad - dy : pad - dy + height, pad - dx : pad - dx + width] for dx, dy in shifts])


def test_rigid_shift_gives_many_correct_matches():
    shift = np.array([3 * CELL, 2 * CELL])  # whole cells, x != y
    frames = shifted_video([(0, 0), tuple(shift)], height=128, width=160)
    desc, cell = compute_features(frames, "sift", cell=CELL, progress=False)
    pair, pts, score = long_term_matches(desc, cell, (160, 128), min_gap=1, progress=False, **SIFT)
    overlap_cells = (16 - 2) * (20 - 3)
    assert len(pair) > 0.5 * overlap_cells
    assert np.all(pair == [0, 1])
    err = pts[:, 2:] - (pts[:, :2] + shift)
    assert np.abs(err).max() < CELL / 2
    assert np.all(score > 0.75) and np.all(score <= 1 + 1e-5)
    # points sit on cell centres (corner convention: (c + 0.5) * cell)
    assert np.allclose((pts / CELL - 0.5) % 1, 0)


def test_frames_are_ints_and_respect_min_gap():
    steps = [(2 * t, t) for t in range(13)]  # sub-cell motion, 2 px right and 1 px down per frame
    frames = shifted_video(steps, height=96, width=128)
    desc, cell = compute_features(frames, "sift", cell=CELL, progress=False)
    pair, pts, score = long_term_matches(desc, cell, (128, 96), min_gap=10, progress=False, **SIFT)
    assert pair.dtype == np.int32 and pts.dtype == np.float32 and score.dtype == np.float32
    assert len(pair) > 0 and np.all(pair[:, 1] - pair[:, 0] >= 10)
    assert {tuple(p) for p in pair} <= {(0, 10), (0, 11), (0, 12), (1, 11), (1, 12), (2, 12)}
    motion = np.asarray(steps, np.float32)
    err = pts[:, 2:] - pts[:, :2] - (motion[pair[:, 1]] - motion[pair[:, 0]])
    assert np.abs(err).max() <= CELL  # true motion is not a whole number of cells: within one cell


def test_distinctiveness_filter_removes_repetitive_matches():
    """A pattern repeating every 2 cells: 4 descriptor classes, each on a quarter of the grid."""
    rng = np.random.default_rng(0)
    classes = rng.normal(size=(4, 32))
    r, c = np.mgrid[0:16, 0:20]
    pattern = classes[(r % 2) * 2 + c % 2]  # [16, 20, 32]
    desc = np.stack([pattern + 0.1 * rng.normal(size=pattern.shape) for _ in range(2)])  # noise breaks ties
    loose = dict(min_gap=1, local_band=(-1.0, 1.0), coherence=(np.inf, np.inf), progress=False)
    without, _, score = long_term_matches(desc, (8.0, 8.0), (160, 128), area_frac=1.0, **loose)
    assert len(without) >= 20 and np.all(score > 0.75)  # ambiguous mutual nearest neighbours exist...
    with_filter, _, _ = long_term_matches(desc, (8.0, 8.0), (160, 128), **loose)
    assert len(with_filter) == 0  # ...and the distinctiveness filter removes every one of them
    # distinctive patches (a 2 x 2 block: the coherence filter needs 4 matches) survive the same filter
    desc[:, 8:10, 10:12] = rng.normal(size=(2, 2, 32))
    kept, pts, _ = long_term_matches(desc, (8.0, 8.0), (160, 128), **loose)
    assert len(kept) == 4 and np.array_equal(pts[:, :2], pts[:, 2:])
    assert {tuple(p) for p in pts[:, :2]} == {(84, 68), (92, 68), (84, 76), (92, 76)}


def test_coherence_filter_drops_an_isolated_outlier():
    ys, xs = np.mgrid[0:4, 0:4]
    cluster = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)  # 16 matches on a unit grid
    pa = np.concatenate([cluster, [[20.0, 20.0], [1.5, 1.5]]])
    # match 16 is isolated in both images; match 17 sits in the cluster in a but far away in b
    pb = np.concatenate([cluster + 5, [[25.0, 25.0], [40.0, 2.0]]])
    kept = coherence_filter(pa, pb, mindist=1.5)
    assert set(kept.tolist()) == set(range(16))
    assert len(coherence_filter(pa[:3], pb[:3], mindist=1.5)) == 0  # fewer than 4 survivors: none


def test_too_large_grid_is_rejected():
    desc = np.ones((2, 4, 5, 8), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        long_term_matches(desc, (8.0, 8.0), (32, 32), min_gap=1, progress=False)


def test_matches_file_roundtrip_and_validation(tmp_path):
    path = tmp_path / "m.npz"
    save_matches(path, np.zeros((0, 2), np.int64), np.zeros((0, 4)), np.zeros(0))
    f, p, s = load_matches(path)
    assert f.shape == (0, 2) and f.dtype == np.int32 and p.shape == (0, 4) and s.shape == (0,)
    frames = np.array([[0, 10], [1, 12]])
    points = np.arange(8, dtype=np.float32).reshape(2, 4)
    save_matches(path, frames, points, [0.9, 0.8])
    f, p, s = load_matches(path)
    assert np.array_equal(f, frames) and np.array_equal(p, points) and np.allclose(s, [0.9, 0.8])
    with pytest.raises(ValueError, match="must be integers"):
        save_matches(path, frames.astype(np.float32), points, [0.9, 0.8])

    from omnitrack.io import save_npz

    bad = tmp_path / "bad.npz"
    save_npz(bad, frames=np.int32([[5, 3]]), points=np.zeros((1, 4), np.float32), score=np.ones(1, np.float32))
    with pytest.raises(CacheError, match=f"{bad}.*a < b"):
        load_matches(bad)
    save_npz(bad, frames=np.float32([[0, 10]]), points=np.zeros((1, 4), np.float32), score=np.ones(1, np.float32))
    with pytest.raises(CacheError, match=f"{bad}.*'frames' has dtype float32"):
        load_matches(bad)
    save_npz(bad, frames=np.int32([[0, 10]]), points=np.zeros((2, 4), np.float32), score=np.ones(1, np.float32))
    with pytest.raises(CacheError, match=f"{bad}.*inconsistent shapes"):
        load_matches(bad)
