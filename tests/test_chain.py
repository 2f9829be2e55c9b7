"""The flow-chaining baseline on exact flows: positions, occlusion, re-anchoring."""

import numpy as np

from omnitrack.flow.chaining import chain_matches, track_queries
from omnitrack.flow.store import FlowStore, FlowWriter, window_pairs

T, H, W = 8, 32, 48
VELOCITY = np.array([1.5, -0.75], np.float32)  # px per frame, x != y


def _translation_store(tmp_path, window=3):
    pairs = window_pairs(T, window)
    with FlowWriter(tmp_path / "flow", pairs, T, H, W) as w:
        for k, (i, j) in enumerate(pairs):
            w.put(k, np.broadcast_to(VELOCITY * (j - i), (H, W, 2)))
    return FlowStore(tmp_path / "flow"), pairs


def test_chain_follows_translation_both_directions(tmp_path):
    store, pairs = _translation_store(tmp_path)
    mask = np.ones((len(pairs), H, W), np.uint8)
    queries = np.array([[3, 16.0, 20.0], [0, 10.0, 5.0], [7, 20.0, 40.0]], np.float32)
    tracks, occluded = track_queries(store, mask, queries)
    for q, (t0, y, x) in enumerate(queries):
        expected = np.array([x, y]) + VELOCITY * (np.arange(T) - t0)[:, None]
        inside = (expected[:, 0] >= 0) & (expected[:, 0] < W) & (expected[:, 1] >= 0) & (expected[:, 1] < H)
        np.testing.assert_allclose(tracks[q][inside], expected[inside], atol=1 / 32)
        assert not occluded[q][inside].any()
        assert occluded[q][~inside].all()


def test_unreliable_pairs_mark_occlusion_and_the_track_resumes(tmp_path):
    store, pairs = _translation_store(tmp_path)
    mask = np.ones((len(pairs), H, W), np.uint8)
    # from frame 2, the point (near x=23, y=15) is hidden in frames 3 and 4: every pair into them fails
    for k, (_, j) in enumerate(pairs):
        if j in (3, 4):
            mask[k] = 0
    queries = np.array([[2, 15.0, 23.0]], np.float32)
    tracks, occluded = track_queries(store, mask, queries)
    assert occluded[0].tolist() == [False, False, False, True, True, False, False, False]
    # frame 5 is reached directly from the anchor at frame 2 (pair (2, 5) is in the window)
    np.testing.assert_allclose(tracks[0, 5], [23.0, 15.0] + 3 * VELOCITY, atol=1 / 32)


def test_long_term_match_reanchors_beyond_the_window(tmp_path):
    store, pairs = _translation_store(tmp_path, window=1)
    mask = np.ones((len(pairs), H, W), np.uint8)
    for k, (i, j) in enumerate(pairs):
        if {i, j} == {3, 4}:
            mask[k] = 0  # chain broken between frames 3 and 4, and window 1 cannot jump it
    start = np.array([10.0, 20.0], np.float32)
    p3 = start + 3 * VELOCITY
    p5 = start + 5 * VELOCITY
    frames = np.array([[3, 5]], np.int32)
    points = np.array([[p3[0] + 1.0, p3[1], p5[0] + 1.0, p5[1]]], np.float32)
    queries = np.array([[0, start[1], start[0]]], np.float32)
    without, occ_without = track_queries(store, mask, queries)
    assert occ_without[0, 4:].all()
    tracks, occluded = track_queries(store, mask, queries, (frames, points), match_radius=4.0)
    assert occluded[0].tolist() == [False, False, False, False, True, False, False, False]
    np.testing.assert_allclose(tracks[0, 5], p5, atol=1 / 32)
    np.testing.assert_allclose(tracks[0, 7], start + 7 * VELOCITY, atol=2 / 32)


def test_chain_matches_cover_long_gaps_with_exact_displacements(tmp_path):
    store, pairs = _translation_store(tmp_path)  # flows only up to 3 frames apart
    mask = np.ones((len(pairs), H, W), np.uint8)
    mask[:, :, 24:] = 0  # the right half is never reliable: no match may start there
    frames, points = chain_matches(store, mask, stride=8, min_gap=2)
    a, b = frames.T
    assert (a < b).all() and (b - a >= 2).all() and (b - a).max() == T - 1
    np.testing.assert_allclose(points[:, 2:] - points[:, :2], (b - a)[:, None] * VELOCITY, atol=2 / 32)

    # one end of every match is a query: a grid cell centre (4 + 8 k, 4 + 8 l) in the reliable half
    def query_end(p):
        return ((p - 4) % 8 == 0).all(1) & (p[:, 0] < 24)

    assert (query_end(points[:, :2]) | query_end(points[:, 2:])).all()
    assert (query_end(points[:, 2:]) & ~query_end(points[:, :2])).any()  # backward tracks are included
