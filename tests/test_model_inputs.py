"""Inputs, geometry and sampling of the nvp fit: validation errors, camera, bound, streamed batches."""

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from omnitrack.errors import CacheError, InputError
from omnitrack.flow.store import FlowStore, FlowWriter, window_pairs
from omnitrack.io import save_npz
from omnitrack.model import default_config, fit
from omnitrack.model.config import resolve, same_training
from omnitrack.model.geometry import Camera, scene_bound
from omnitrack.model.inputs import load_masks
from omnitrack.model.sampling import FlowSampler, MatchSampler
from omnitrack.model.synthetic import make_video, write_inputs
from tests.shared import tiny_nvp_config


def cfg(**kw):
    return tiny_nvp_config(**{"num_points": 64, "steps": 3, **kw})


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    video = make_video(24, 40, 40)
    return video, write_inputs(video, out)


def test_presets_are_complete_and_scaled():
    paper, cpu = default_config("paper"), default_config("cpu")
    assert set(paper) == set(cpu)
    assert (paper["num_pairs"], paper["num_points"], paper["steps"]) == (96, 1024, 22000)
    assert paper["match_weight_steps"] == [1000, 2000] and paper["lr_decay_steps"] == 5000
    f = cpu["steps"] / 22000
    assert cpu["lr_decay_steps"] == round(5000 * f) and cpu["match_weight_steps"] == [round(1000 * f), round(2000 * f)]
    longer = resolve({"steps": 4000})  # the cpu preset's schedules follow an overridden length
    assert longer["lr_decay_steps"] == round(5000 * 4000 / 22000) and longer["match_weight_steps"] == [182, 364]
    assert resolve({"steps": 4000, "lr_decay_steps": 700})["lr_decay_steps"] == 700
    with pytest.raises(InputError, match=r"config nvp: unknown keys \['lr'\]"):
        resolve({"lr": 1})
    with pytest.raises(InputError, match="unknown preset"):
        default_config("gpu")


def test_camera_roundtrip_and_principal_point():
    cam = Camera(160, 120, 40.0)
    assert cam.focal == pytest.approx(160 / (2 * np.tan(np.radians(20))))
    x, y, d = torch.tensor([0.0, 80.0, 159.5]), torch.tensor([0.0, 60.0, 119.0]), torch.tensor([1.0, 2.0, 3.0])
    X, Y, Z = cam.unproject(x, y, d)
    assert X[1] == 0 and Y[1] == 0
    u, v, z = cam.project(X, Y, Z)
    assert torch.allclose(u, x) and torch.allclose(v, y) and torch.equal(z, d)
    inside = cam.inside(torch.tensor([-0.1, 0.0, 160.0, 160.1]), torch.tensor([5.0, 5.0, 120.0, 5.0]))
    assert inside.tolist() == [False, True, True, False]


def test_scene_bound_rule():
    cam = Camera(8, 8)
    depth = torch.ones(3, 4, 4)
    depth[0, 0, 0] = 5.0  # one far outlier must not stretch the bound
    depth[1] = 2.0
    centre, half = scene_bound(cam, depth, shrink=0.8, floor=0.25)
    z = depth.reshape(-1)
    med = z.median()
    assert centre[2] == med
    assert half[2] == pytest.approx(max(0.8 * min(med - z.min(), z.max() - med), 0.25 * half.max().item()))
    flat = scene_bound(cam, torch.ones(2, 4, 4))[1]
    assert flat[2] == pytest.approx(0.25 * flat.max().item())  # constant depth: floored, not zero


def test_masks_of_another_size_are_rejected(small):
    _, inputs = small
    with pytest.raises(
        CacheError, match=r"masks: holds flows of a 24-frame 40x40 video, the frames are 24 frames of 48x40"
    ):
        load_masks(inputs["masks_dir"], 24, 40, 48)
    with pytest.raises(InputError, match="no masks directory was given"):
        fit(inputs["frames"], cfg())


def _store(path, pairs, t=6):
    with FlowWriter(path, pairs, t, 8, 8, meta={"masks": {}}) as w:
        for k in range(len(pairs)):
            w.put(k, np.zeros((8, 8, 2)))
    np.save(path / "mask.npy", np.ones((len(pairs), 8, 8), np.uint8))
    np.save(path / "counts.npy", np.ones((t, 8, 8), np.uint16))
    return load_masks(path, t, 8, 8)


def test_store_missing_pairs_of_the_window(tmp_path):
    holed = [p for p in window_pairs(6, 2) if p != (1, 3)]
    with pytest.raises(CacheError, match=r"m: lacks 1 pairs of window 2, e.g. \[\(1, 3\)\]"):
        FlowSampler(*_store(tmp_path / "m", holed), cfg(partner_window=12))


def test_a_smaller_flow_window_limits_the_partners(tmp_path):
    sampler = FlowSampler(*_store(tmp_path / "m", window_pairs(6, 2)), cfg(partner_window=12))
    i, j = np.nonzero(sampler.pair_index >= 0)
    assert np.abs(i - j).max() == 2 and len(i) == len(window_pairs(6, 2))


def test_nan_depth_is_rejected(small):
    _, inputs = small
    depth = np.ones((24, 40, 40), np.float32)
    depth[7, 3, 3] = np.nan
    with pytest.raises(
        InputError, match=r"depth \(array argument\): depth maps contain NaN or inf \(in frames \[7\]\)"
    ):
        fit(inputs["frames"], cfg(), masks_dir=inputs["masks_dir"], depth=depth)


def test_depth_maps_initialise_the_optimised_maps(small, tmp_path):
    _, inputs = small
    depth = np.broadcast_to(np.linspace(1, 3, 40, dtype=np.float32)[None, None, :], (24, 40, 40)).copy()
    save_npz(tmp_path / "depth.npz", depth=depth)
    tracker = fit(inputs["frames"], cfg(steps=1), masks_dir=inputs["masks_dir"], depth=tmp_path / "depth.npz")
    init = tracker.scene.depth.initial
    assert init.shape == (24, 12, 12)
    assert init[0, 0, 0] < 1.1 and init[0, 0, -1] > 2.9


def test_a_start_that_varies_per_pixel_is_averaged_over_each_cell(small):
    """A pixel-level pattern (e.g. the motion start's per-pixel votes) becomes each cell's mean, not the
    value of the pixel under the cell's centre, which would alias it to 1 or 2."""
    _, inputs = small
    checker = (np.indices((40, 40)).sum(0) % 2 + 1).astype(np.float32)
    tracker = fit(
        inputs["frames"],
        cfg(steps=1),
        masks_dir=inputs["masks_dir"],
        depth=np.broadcast_to(checker, (24, 40, 40)).copy(),
    )
    init = tracker.scene.depth.initial.numpy()
    assert init.shape == (24, 12, 12)
    assert np.all((init > 1.3) & (init < 1.7)) and abs(init.mean() - 1.5) < 0.01


def test_empty_matches_fall_back_to_no_match_loss(small, tmp_path, caplog):
    _, inputs = small
    path = tmp_path / "matches.npz"
    save_npz(
        path, frames=np.zeros((0, 2), np.int32), points=np.zeros((0, 4), np.float32), score=np.zeros(0, np.float32)
    )
    fit(inputs["frames"], cfg(), masks_dir=inputs["masks_dir"], matches_path=path)
    assert [r.levelname for r in caplog.records if "holds no matches" in r.getMessage()] == ["WARNING"]
    assert "matches.npz holds no matches; fitting without the long-term match loss" in caplog.text
    save_npz(
        path, frames=np.array([[0, 30]], np.int32), points=np.zeros((1, 4), np.float32), score=np.ones(1, np.float32)
    )
    with pytest.raises(CacheError, match=r"matches\.npz: match frame ids reach 30, the video has 24 frames"):
        fit(inputs["frames"], cfg(), masks_dir=inputs["masks_dir"], matches_path=path)


def test_pixels_drawn_from_reliable_mask_with_count_weights(tmp_path):
    """Pixel probability ~ 1/sqrt(count + 1) over mask bits 1 or 2; never where the mask is 0."""
    t, h, w = 4, 4, 4
    pairs = window_pairs(t, 3)
    with FlowWriter(tmp_path / "m", pairs, t, h, w, meta={"masks": {}}) as wr:
        for k in range(len(pairs)):
            wr.put(k, np.full((h, w, 2), 1.5))
    mask = np.zeros((len(pairs), h, w), np.uint8)
    mask[:, 0, 0], mask[:, 0, 1], mask[:, 3, 3] = 1, 2, 1
    counts = np.zeros((t, h, w), np.uint16)
    counts[:, 0, 0], counts[:, 0, 1], counts[:, 3, 3] = 0, 3, 8
    np.save(tmp_path / "m" / "mask.npy", mask)
    np.save(tmp_path / "m" / "counts.npy", counts)
    sampler = FlowSampler(
        *load_masks(tmp_path / "m", t, h, w), cfg(num_pairs=8, num_points=4000, min_valid_fraction=0.0)
    )
    batch = sampler.sample(0, np.random.default_rng(0))
    pix = (batch.p1[..., 1] - 0.5) * w + (batch.p1[..., 0] - 0.5)
    freq = np.bincount(pix.astype(int).ravel(), minlength=h * w) / pix.size
    want = np.zeros(h * w)
    want[[0, 1, 15]] = 1 / np.sqrt([1, 4, 9])
    np.testing.assert_allclose(freq, want / want.sum(), atol=0.01)
    np.testing.assert_allclose(batch.p2 - batch.p1, 1.5)
    assert (batch.occluded == (pix == 1)).all()
    assert (batch.fi != batch.fj).all() and (np.abs(batch.fi - batch.fj) <= 3).all()


def test_sampling_reads_only_the_drawn_pixels(tmp_path):
    """Host memory of a batch does not scale with the store (flows stay memory-mapped)."""
    video = make_video(24, 96, 96)
    inputs = write_inputs(video, tmp_path)
    store = FlowStore(inputs["masks_dir"])
    whole = store.raw().nbytes
    sampler = FlowSampler(*load_masks(inputs["masks_dir"], 24, 96, 96), cfg(num_pairs=4, num_points=256))
    tracemalloc.start()
    sampler.sample(0, np.random.default_rng(1))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert whole > 10_000_000 and peak < whole / 50, (peak, whole)


def test_curriculum_window_grows_from_the_middle(small):
    _, inputs = small
    sampler = FlowSampler(
        *load_masks(inputs["masks_dir"], 24, 40, 40), cfg(curriculum_start=8, curriculum_inc=8, curriculum_every=10)
    )
    assert sampler.window(0) == (8, 16) and sampler.window(10) == (4, 20) and sampler.window(25) == (0, 24)
    batch = sampler.sample(0, np.random.default_rng(2))
    assert ((batch.fi >= 8) & (batch.fi < 16)).all()


def test_match_sampler_fixed_count_per_pair():
    frames = np.array([[0, 10]] * 50 + [[2, 15]] * 5 + [[3, 20]] * 2)
    points = np.concatenate(
        [np.tile([1, 2, 3, 4], (50, 1)), np.tile([5, 6, 7, 8], (5, 1)), np.tile([9, 9, 9, 9], (2, 1))]
    ).astype(np.float32)
    sampler = MatchSampler(frames, points, 24, cfg(match_pairs=64, match_points=16, match_min=4))
    assert len(sampler) == 2  # the pair with 2 matches is dropped, the small pair does not shrink the batch
    b = sampler.sample(np.random.default_rng(3))
    assert b.p1.shape == (64, 16, 2)
    fwd = b.fi < b.fj
    assert fwd.any() and (~fwd).any()  # both directions
    for n in range(64):
        pair = {int(b.fi[n]), int(b.fj[n])}
        assert pair in ({0, 10}, {2, 15})
        src = [1, 2] if b.fi[n] == 0 else [3, 4] if b.fi[n] == 10 else [5, 6] if b.fi[n] == 2 else [7, 8]
        assert (b.p1[n] == src).all()


def test_config_is_json_serialisable():
    json.dumps(default_config("paper"))
    json.dumps(default_config("cpu"))


def test_error_sampling_draws_high_error_cells_more_often(tmp_path):
    """Pixel weight x (cell error + floor); unseen cells count as the frame's largest seen error."""
    t, h, w = 4, 8, 8
    pairs = window_pairs(t, 3)
    with FlowWriter(tmp_path / "m", pairs, t, h, w, meta={"masks": {}}) as wr:
        for k in range(len(pairs)):
            wr.put(k, np.zeros((h, w, 2)))
    np.save(tmp_path / "m" / "mask.npy", np.ones((len(pairs), h, w), np.uint8))
    np.save(tmp_path / "m" / "counts.npy", np.zeros((t, h, w), np.uint16))
    c = cfg(
        num_pairs=16,
        num_points=4000,
        min_valid_fraction=0.0,
        error_sampling=True,
        error_cell=4,
        error_floor=1.0,
        error_ema=0.5,
    )
    sampler = FlowSampler(*load_masks(tmp_path / "m", t, h, w), c)
    assert sampler.error.shape == (t, 4) and (sampler.error < 0).all()
    fi = np.arange(t)
    p1 = np.tile([[[1.5, 1.5], [5.5, 1.5], [1.5, 5.5], [6.5, 6.5]]], (t, 1, 1)).astype(np.float32)
    sampler.update(fi, p1, np.tile([[9.0, 1.0, 1.0, 1.0]], (t, 1)))
    np.testing.assert_allclose(sampler.error, np.tile([[9.0, 1.0, 1.0, 1.0]], (t, 1)))
    sampler.update(fi[:1], p1[:1], np.array([[1.0, 3.0, 1.0, 1.0]]))
    np.testing.assert_allclose(sampler.error[0], [5.0, 2.0, 1.0, 1.0])  # moving average, rate 0.5
    batch = sampler.sample(0, np.random.default_rng(0))
    cell = (batch.p1[..., 1] // 4) * 2 + batch.p1[..., 0] // 4
    for n in range(c["num_pairs"]):
        freq = np.bincount(cell[n].astype(int), minlength=4) / c["num_points"]
        want = sampler.error[batch.fi[n]] + 1.0
        np.testing.assert_allclose(freq, want / want.sum(), atol=0.03)


def test_motion_start_puts_the_independently_moving_square_nearer(tmp_path):
    from omnitrack.model.depth import map_size
    from omnitrack.model.motion_init import motion_depth

    video = make_video(12, 64, 64, side=20, v_front=(3.0, 1.0), v_back=(-0.5, 0.25))
    inputs = write_inputs(video, tmp_path)
    store, mask, _ = load_masks(inputs["masks_dir"], 12, 64, 64)
    dh, dw = map_size(64, 64, 0.3)
    depth = motion_depth(store, mask, dh, dw, cfg(motion_init_sep=0.3))
    assert depth.shape == (12, dh, dw) and depth.min() >= 0.7 - 1e-6 and depth.max() <= 1.0
    ys, xs = (np.arange(dh) + 0.5) * 64 / dh, (np.arange(dw) + 0.5) * 64 / dw
    for t in (0, 6, 11):
        lo, hi = video.square(t)
        inner = (xs[None] > lo[0] + 4) & (xs[None] < hi[0] - 4) & (ys[:, None] > lo[1] + 4) & (ys[:, None] < hi[1] - 4)
        outer = ~(
            (xs[None] > lo[0] - 4) & (xs[None] < hi[0] + 4) & (ys[:, None] > lo[1] - 4) & (ys[:, None] < hi[1] + 4)
        )
        assert np.median(depth[t][inner]) < 0.75 and np.median(depth[t][outer]) == 1.0
    flat = motion_depth(store, mask, dh, dw, cfg(motion_init_sep=0.0))
    assert (flat == 1.0).all()


def test_checkpoint_config_without_later_keys_counts_as_their_defaults():
    cfg = resolve({"steps": 300})
    stored = {k: v for k, v in cfg.items() if k != "chain_match_stride"}  # written before the key existed
    assert same_training(stored, cfg)
    assert not same_training(stored, resolve({"steps": 300, "chain_match_stride": 16}))
    assert not same_training({**stored, "lr_deform": 1e-3}, cfg)
    assert same_training({**stored, "progress": False, "threads": 7}, cfg)  # run keys do not count


def test_davis_gpu_overlay_gives_the_paper_sizes():
    """configs/davis_gpu.yaml on top of configs/davis.yaml, merged as Snakemake merges config files."""
    import yaml
    from snakemake.utils import update_config

    root = Path(__file__).resolve().parents[1] / "configs"
    cpu = yaml.safe_load((root / "davis.yaml").read_text())
    merged = yaml.safe_load((root / "davis.yaml").read_text())
    update_config(merged, yaml.safe_load((root / "davis_gpu.yaml").read_text()))
    gpu = resolve(merged["nvp"])
    paper = default_config("paper")
    for key in ("num_pairs", "num_points", "steps", "plane_res", "lr_decay_steps", "match_weight_steps"):
        assert gpu[key] == paper[key], key
    # the depth start is the CPU preset's (documented); the former motion start is a depth method, not an nvp key
    assert merged["depth"] == cpu["depth"] == {"method": "layers"}
    assert "motion_init_sep" not in merged["nvp"] and gpu["motion_init_sep"] == 0
    assert resolve(cpu["nvp"])["num_pairs"] == cpu["nvp"]["num_pairs"]
    # the CPU preset takes bf16 only where the CPU has it; the GPU overlay computes every gap in fp32, as upstream
    assert cpu["flow"]["gaps"] and cpu["flow"]["raft"]["precision"] == "auto"
    assert merged["flow"]["gaps"] is None and merged["flow"]["raft"]["precision"] == "fp32"
