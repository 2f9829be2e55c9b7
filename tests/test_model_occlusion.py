"""Depth-order signal: on a two-layer scene, points covered by the foreground end up marked occluded;
and the inference-time occlusion rules of the tracker.

The depth starts constant (no depth weights exist here), so only the hinge on the double-cycle
"occluded but reliable" correspondences (mask value 2) can put the square in front of the
background; without it the depth test never fires.
"""

import numpy as np
import pytest
import torch

from omnitrack.model import Tracker, default_config, fit
from omnitrack.model.scene import Scene
from omnitrack.model.synthetic import make_video, write_inputs
from tests.shared import tiny_nvp_config

T, S = 12, 64


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    video = make_video(T, S, S, v_front=(2.0, 0.5), v_back=(0.0, 0.0))
    return video, write_inputs(video, tmp_path_factory.mktemp("occ"))


def occlusion_rates(video, inputs, w_order):
    cfg = default_config("cpu")
    cfg.update(
        steps=300,
        num_pairs=8,
        num_points=256,
        w_depth_order=w_order,
        progress=False,
        plane_res=[8, 32],
        feature_dim=16,
        hidden=[32, 16],
        threads=1,
    )
    tracker = fit(inputs["frames"], cfg, masks_dir=inputs["masks_dir"])
    # the hinge separates covered points by order_margin and a constant start gives no other
    # separation, so occlusion is read at that margin (the default 0.1 suits layered depth starts)
    tracker.config["occlusion_margin"] = cfg["order_margin"]
    rng = np.random.default_rng(0)
    q = np.stack([rng.integers(0, T, 400), rng.uniform(0, S, 400), rng.uniform(0, S, 400)], 1)
    _, occ = tracker.track(q)
    gt, gt_occ = video.track(q)
    front = video.in_front(q[:, 0].astype(int), q[:, [2, 1]])
    inside = ((gt >= 0) & (gt <= S)).all(-1)
    covered = gt_occ & inside & ~front[:, None]
    assert covered.sum() > 100
    return occ[covered].mean(), occ[~gt_occ].mean()


def test_depth_order_term_makes_covered_points_occluded(scene):
    covered_with, visible_with = occlusion_rates(*scene, w_order=100.0)
    covered_without, _ = occlusion_rates(*scene, w_order=0.0)
    assert covered_with > 0.7, covered_with
    assert visible_with < 0.1, visible_with
    assert covered_without < 0.1, covered_without


@pytest.mark.parametrize("surface_margin", [0.0, 0.5])
def test_a_point_in_front_of_the_surface_seen_is_occluded_only_with_the_surface_test(surface_margin):
    """Identity deformation, so a query keeps its pixel and depth (1.0) in every frame. Frame 1's depth
    there is 0.5 (a surface in front: occluded by the depth test), frame 2's is 1.0 (the point is the
    surface: visible), frame 3's is 2.0 (the surface seen lies behind the point, which therefore is
    not there: occluded only with the surface test, whose margin 0.5 leaves frame 4's 1.3 visible)."""
    depth = torch.tensor([1.0, 0.5, 1.0, 2.0, 1.3]).view(5, 1, 1).expand(5, 12, 18).contiguous()
    cfg = tiny_nvp_config(occlusion_margin=0.1, surface_margin=surface_margin)
    scene = Scene(5, 40, 60, depth, cfg)
    with torch.no_grad():
        scene.deformer.weights[-1].zero_()
        scene.deformer.biases[-1].zero_()
    tracks, occluded = Tracker(scene, cfg, {"frames": 5}).track(np.array([[0, 20.5, 30.5], [2, 10.5, 45.5]]))
    np.testing.assert_allclose(tracks[..., 0], [[30.5] * 5, [45.5] * 5], atol=1e-3)
    expected = [False, True, False, surface_margin > 0, False]
    assert occluded.tolist() == [expected, expected]
