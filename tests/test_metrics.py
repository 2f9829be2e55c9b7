"""TAP-Vid metrics against hand-computed counts and an independent loop implementation."""

import numpy as np
import pytest

from omnitrack.evaluation import compute_tapvid_metrics, temporal_coherence

THRESHOLDS = (1, 2, 4, 8, 16)


def _batch(*arrays):
    return [np.asarray(a)[None] for a in arrays]


def _random_case(rng, n=7, t=9):
    gt = rng.uniform(0, 256, (n, t, 2))
    gt_occ = rng.random((n, t)) < 0.3
    q_t = rng.integers(0, t, n)
    gt_occ[np.arange(n), q_t] = False
    query = np.stack([q_t + rng.uniform(-0.4, 0.4, n), gt[np.arange(n), q_t, 1], gt[np.arange(n), q_t, 0]], -1)
    # a mix of small random errors, exact-threshold offsets and large errors
    offsets = rng.normal(0, 4, (n, t, 2))
    exact = rng.random((n, t)) < 0.3
    offsets[exact] = np.stack([rng.choice([0, 1, 2, 4, 8, 16], exact.sum()), np.zeros(exact.sum())], -1)
    offsets[rng.random((n, t)) < 0.1] *= 10
    pred_occ = rng.random((n, t)) < 0.3
    return query, gt_occ, gt, pred_occ, gt + offsets


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    query, gt_occ, gt, _, _ = _random_case(rng)
    for mode in ("first", "strided"):
        m = compute_tapvid_metrics(*_batch(query, gt_occ, gt, gt_occ, gt), query_mode=mode)
        assert m["average_jaccard"][0] == 1.0
        assert m["average_pts_within_thresh"][0] == 1.0
        assert m["occlusion_accuracy"][0] == 1.0
        assert m["average_jaccard"].shape == (1,)


def test_all_predicted_occluded():
    rng = np.random.default_rng(1)
    query, gt_occ, gt, _, _ = _random_case(rng)
    pred_occ = np.ones_like(gt_occ)
    m = compute_tapvid_metrics(*_batch(query, gt_occ, gt, pred_occ, gt), query_mode="strided")
    assert m["average_jaccard"][0] == 0.0
    # strided: every frame but the query frame (where GT is visible by construction)
    expected_oa = gt_occ.sum() / (gt_occ.size - len(query))
    assert m["occlusion_accuracy"][0] == pytest.approx(expected_oa)
    assert 0 < expected_oa < 1
    # position accuracy ignores the occlusion prediction
    assert m["average_pts_within_thresh"][0] == 1.0


def _hand_case():
    """Two queries, 6 frames, x != y. Offsets of pred from GT are exact in binary floating point.

    Query A at t=1.6 (rounds to frame 2); GT occluded at frames 1 and 5.
      f0 vis, pred vis, offset (0, 1): exactly δ=1 away -> NOT within 1, within 2
      f1 occ, pred vis                -> FP at every δ
      f2 query frame: pred occluded and 50 px off (must be ignored)
      f3 vis, pred vis, offset (0.75, 0.5): d² = 0.8125 -> within 1
      f4 vis, pred occ, offset 0      -> within, but FN
      f5 occ, pred occ
    Query B at t=4.2 (frame 4); GT visible everywhere.
      f0 pred vis offset (2, 0): exactly δ=2 -> within 4, not 2
      f1 pred vis offset (1.5, 1): d² = 3.25 -> within 2
      f2 pred occ offset (20, 0): d² = 400 -> not within 16, FN
      f3 pred vis offset (0, 8): exactly δ=8 -> within 16 only
      f4 query frame: pred occluded and 50 px off (ignored)
      f5 pred vis offset 0
    """
    t = 6
    gt = np.zeros((2, t, 2))
    gt[0] = np.stack([10 + 2 * np.arange(t), 40 + np.arange(t)], -1)
    gt[1] = np.stack([100 - 3 * np.arange(t), 30 + 5 * np.arange(t)], -1)
    gt_occ = np.zeros((2, t), bool)
    gt_occ[0, [1, 5]] = True
    off = np.zeros((2, t, 2))
    off[0, 0] = (0, 1)
    off[0, 2] = (50, 0)
    off[0, 3] = (0.75, 0.5)
    off[1, 0] = (2, 0)
    off[1, 1] = (1.5, 1)
    off[1, 2] = (20, 0)
    off[1, 3] = (0, 8)
    off[1, 4] = (50, 0)
    pred_occ = np.zeros((2, t), bool)
    pred_occ[0, [2, 4, 5]] = True
    pred_occ[1, [2, 4]] = True
    query = np.array([[1.6, gt[0, 2, 1], gt[0, 2, 0]], [4.2, gt[1, 4, 1], gt[1, 4, 0]]])
    return query, gt_occ, gt, pred_occ, gt + off


def test_hand_computed_strided():
    m = compute_tapvid_metrics(*_batch(*_hand_case()), query_mode="strided")
    # evaluated: A frames {0,1,3,4,5}, B frames {0,1,2,3,5}; GT-visible evaluated points: 3 + 5 = 8
    # OA: A f0,f3,f5 right, f1,f4 wrong; B all right except f2 -> 7/10
    assert m["occlusion_accuracy"][0] == pytest.approx(7 / 10)
    # (within & visible, TP, FP) per threshold, counted by hand from the docstring
    counts = {1: (3, 2, 5), 2: (5, 4, 3), 4: (6, 5, 2), 8: (6, 5, 2), 16: (7, 6, 1)}
    for thr, (within, tp, fp) in counts.items():
        assert m[f"pts_within_{thr}"][0] == pytest.approx(within / 8), thr
        assert m[f"jaccard_{thr}"][0] == pytest.approx(tp / (8 + fp)), thr
    assert m["average_jaccard"][0] == pytest.approx(np.mean([2 / 13, 4 / 11, 5 / 10, 5 / 10, 6 / 9]))
    assert m["average_pts_within_thresh"][0] == pytest.approx(27 / 40)


def test_hand_computed_first():
    m = compute_tapvid_metrics(*_batch(*_hand_case()), query_mode="first")
    # evaluated: A frames {3,4,5}, B frame {5}; GT-visible: A f3,f4 + B f5 = 3
    # all three within every δ; TP = A f3 + B f5 = 2, FP = 0; OA: A f4 wrong -> 3/4
    assert m["occlusion_accuracy"][0] == pytest.approx(3 / 4)
    for thr in THRESHOLDS:
        assert m[f"pts_within_{thr}"][0] == pytest.approx(1.0)
        assert m[f"jaccard_{thr}"][0] == pytest.approx(2 / 3)
    assert m["average_jaccard"][0] == pytest.approx(2 / 3)


def _loop_metrics(query, gt_occ, gt, pred_occ, pred, mode):
    """Straightforward per-point loop implementation of the TAP-Vid definitions (one video)."""
    n, t = gt_occ.shape
    n_eval = n_right_occ = n_vis = 0
    within = dict.fromkeys(THRESHOLDS, 0)
    tp = dict.fromkeys(THRESHOLDS, 0)
    fp = dict.fromkeys(THRESHOLDS, 0)
    fn = dict.fromkeys(THRESHOLDS, 0)
    for i in range(n):
        q = int(np.floor(query[i, 0] + 0.5))
        for f in range(t):
            if (mode == "first" and f <= q) or (mode == "strided" and f == q):
                continue
            n_eval += 1
            n_right_occ += bool(gt_occ[i, f]) == bool(pred_occ[i, f])
            dx, dy = pred[i, f] - gt[i, f]
            d2 = dx * dx + dy * dy
            n_vis += not gt_occ[i, f]
            for thr in THRESHOLDS:
                close = d2 < thr * thr
                if not gt_occ[i, f] and close:
                    within[thr] += 1
                if not gt_occ[i, f] and not pred_occ[i, f] and close:
                    tp[thr] += 1
                if not pred_occ[i, f] and (gt_occ[i, f] or not close):
                    fp[thr] += 1
                if not gt_occ[i, f] and (pred_occ[i, f] or not close):
                    fn[thr] += 1
    out = {"occlusion_accuracy": n_right_occ / n_eval}
    for thr in THRESHOLDS:
        out[f"pts_within_{thr}"] = within[thr] / n_vis
        out[f"jaccard_{thr}"] = tp[thr] / (tp[thr] + fp[thr] + fn[thr])
    out["average_jaccard"] = np.mean([out[f"jaccard_{thr}"] for thr in THRESHOLDS])
    out["average_pts_within_thresh"] = np.mean([out[f"pts_within_{thr}"] for thr in THRESHOLDS])
    return out


@pytest.mark.parametrize("mode", ["first", "strided"])
def test_matches_loop_implementation(mode):
    rng = np.random.default_rng(42)
    cases = [_random_case(rng, n=9, t=10) for _ in range(4)]
    batch = [np.stack([c[k] for c in cases]) for k in range(5)]
    m = compute_tapvid_metrics(*batch, query_mode=mode)
    for b, case in enumerate(cases):
        ref = _loop_metrics(*case, mode)
        for key, value in ref.items():
            assert m[key][b] == pytest.approx(value, abs=1e-12), (b, key)


def test_bad_arguments():
    query, gt_occ, gt, pred_occ, pred = _batch(*_hand_case())
    with pytest.raises(ValueError, match="query_mode"):
        compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred, query_mode="every")
    with pytest.raises(ValueError, match="pred_tracks"):
        compute_tapvid_metrics(query, gt_occ, gt, pred_occ, pred[:, :, :-1], query_mode="first")
    with pytest.raises(ValueError, match="query_points"):
        compute_tapvid_metrics(query[..., :2], gt_occ, gt, pred_occ, pred, query_mode="first")
    with pytest.raises(ValueError, match="pred_occluded"):
        compute_tapvid_metrics(query, gt_occ, gt, pred_occ[0], pred, query_mode="first")
    bad_query = query.copy()
    bad_query[0, 0, 0] = 6
    with pytest.raises(ValueError, match="query_points has query frames outside"):
        compute_tapvid_metrics(bad_query, gt_occ, gt, pred_occ, pred, query_mode="first")


def test_temporal_coherence_hand_computed():
    gt = np.zeros((1, 1, 5, 2))
    gt[0, 0, :, 1] = 7.0
    pred = gt.copy()
    pred[0, 0, :, 0] = [0, 0, 1, 0, 0]
    occ = np.zeros((1, 1, 5), bool)
    # accelerations of pred at frames 1, 2, 3: 1, -2, 1 (GT: 0) -> mean norm 4/3
    assert temporal_coherence(gt, occ, pred)[0] == pytest.approx(4 / 3)
    occ[0, 0, 4] = True  # drops the triplet (2, 3, 4)
    assert temporal_coherence(gt, occ, pred)[0] == pytest.approx(3 / 2)


def test_temporal_coherence_ignores_constant_velocity_offset():
    rng = np.random.default_rng(3)
    gt = rng.uniform(0, 256, (2, 4, 8, 2))
    occ = rng.random((2, 4, 8)) < 0.2
    t = np.arange(8)[None, None, :, None]
    pred = gt + np.array([3.0, -2.0]) + 0.5 * t
    np.testing.assert_allclose(temporal_coherence(gt, occ, pred), 0.0, atol=1e-9)
    noisy = temporal_coherence(gt, occ, gt + rng.normal(0, 1, gt.shape))
    assert noisy.shape == (2,) and np.all(noisy > 0.5)
    with pytest.raises(ValueError, match="gt_occluded"):
        temporal_coherence(gt, occ[:, :3], pred)
