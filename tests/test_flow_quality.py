"""Flow precision and coverage per gap against exact correspondences (evaluation.flow_quality)."""

import numpy as np

from omnitrack.evaluation.flow_quality import Tally, dense_pair, markdown, sparse_pair, table
from omnitrack.interp import pixel_centres


def test_dense_pair_counts_coverage_and_precision_per_class():
    h, w = 8, 10
    truth = pixel_centres(h, w) + np.array([3.0, -1.0], np.float32)
    layer = np.zeros((h, w), int)
    layer[:, 5:] = 1  # right half: an object
    flow = np.broadcast_to(np.array([3.0, -1.0], np.float32), (h, w, 2)).copy()
    flow[:, 5:7] += [2.0, 0.0]  # two object columns 2 px off
    flow[:, 7:] += [5.0, 0.0]  # and the rest 5 px off
    mask = np.ones((h, w), np.uint8)
    mask[:4, :5] = 0  # half the background unreliable
    mask[:, 9] = 2  # occluded-but-reliable counts as reliable
    out = dense_pair(flow, mask, truth, layer)
    bg, obj = out["background"], out["objects"]
    assert (bg.points, bg.reliable, bg.within) == (40, 20, [20, 20])
    assert (obj.points, obj.reliable, obj.within) == (40, 40, [0, 16])
    assert obj.coverage == 1.0 and bg.coverage == 0.5 and obj.precision(1) == 0.4


def test_sparse_pair_samples_the_flow_at_the_points():
    flow = np.zeros((6, 6, 2), np.float32)
    flow[..., 0] = np.arange(6)[None, :]  # dx = column index: bilinear between centres
    mask = np.ones((6, 6), np.uint8)
    mask[0, 0] = 0
    p_i = np.array([[2.0, 3.0], [4.5, 1.5], [0.5, 0.5]], np.float32)
    p_j = p_i + np.array([[1.5, 0.0], [4.0, 0.0], [0.0, 0.0]], np.float32)
    t = sparse_pair(flow, mask, p_i, p_j)
    assert (t.points, t.reliable, t.within) == (3, 2, [2, 2])


def test_table_sums_gaps_and_prints_percentages():
    a, b = Tally(10, 5, [4, 5]), Tally(10, 0, [0, 0])
    rows = table({1: {"points": a}, 2: {"points": b}})
    assert [r["gap"] for r in rows] == [1, 2, "all"]
    assert (
        rows[0]["points_p1"] == 0.8
        and rows[2]["points_coverage"] == 0.25
        and rows[1]["points_p3"] != rows[1]["points_p3"]
    )
    text = markdown(rows, ["points"])
    assert "| 1 | 50.0 % | 80.0 % | 100.0 % |" in text and "| 2 | 0.0 % | – | – |" in text


def test_auc_counts_pairs_ranked_right_and_half_the_ties():
    from omnitrack.evaluation.flow_quality import auc

    positive = np.array([True, True, False, False])
    assert auc(np.array([0.9, 0.8, 0.1, 0.2]), positive) == 1.0
    assert auc(np.array([0.1, 0.2, 0.9, 0.8]), positive) == 0.0
    assert auc(np.array([0.5, 0.9, 0.5, 0.1]), positive) == 0.875  # 3.5 of the 4 pairs
    assert np.isnan(auc(np.array([1.0, 2.0]), np.array([True, True])))
