"""The nvp fit end to end on tiny synthetic videos: accuracy, short videos, checkpoints, resume, NaN."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from omnitrack.data.frames import save_frames
from omnitrack.errors import InputError
from omnitrack.model import Tracker, TrainingError, fit, fit_video, predict
from omnitrack.model.checkpoint import partial_path, read_checkpoint
from omnitrack.model.synthetic import make_video, write_inputs
from tests.shared import REPO, tiny_nvp_config

STEPS_SMALL_OBJECT = 300


def small_config(**kw):
    return tiny_nvp_config(**{"num_points": 128, "match_pairs": 4, "match_points": 16, **kw})


@pytest.fixture(scope="module")
def video12(tmp_path_factory):
    """12 frames of 48x48, with matches; frames also saved as a frames npz."""
    out = tmp_path_factory.mktemp("v12")
    video = make_video(12, 48, 48, v_front=(1.0, 0.5), v_back=(-0.5, 0.0))
    inputs = write_inputs(video, out, num_matches=8)
    save_frames(
        out / "frames.npz",
        inputs["frames"],
        {"video": "v12", "source": "synthetic", "fps": 10, "source_size": [48, 48], "has_gt": True},
    )
    return video, inputs, out / "frames.npz"


def params(tracker_or_path):
    ck = read_checkpoint(tracker_or_path) if isinstance(tracker_or_path, Path) else None
    state = ck["scene"] if ck else tracker_or_path.scene.state_dict()
    return {k: v.detach().cpu() for k, v in state.items()}


def test_translating_texture_is_tracked_accurately(tmp_path):
    video = make_video(12, 64, 64, v_front=(1.5, -0.5), v_back=(1.5, -0.5))  # one rigid translation
    inputs = write_inputs(video, tmp_path)
    tracker = fit(inputs["frames"], small_config(steps=250, num_pairs=8, num_points=256), masks_dir=inputs["masks_dir"])
    q = np.array([[0, 30.5, 20.5], [6, 40.0, 33.0], [11, 25.25, 50.75]])
    tracks, occ = tracker.track(q)
    gt, gt_occ = video.track(q)
    err = np.linalg.norm(tracks - gt, axis=-1)[~gt_occ]
    assert np.median(err) < 0.3 and err.max() < 1.5, err
    assert (occ == gt_occ).mean() > 0.9


def test_small_independently_moving_object_is_tracked(tmp_path):
    """A 14-px square moving 3 px/frame over a background moving the other way: with upstream's constant
    depth start and uniform-ish sampling the square's points follow the background (median error ~5 px
    at this budget); the motion-separated depth start and error-driven sampling (off in both presets) track it."""
    video = make_video(12, 64, 64, side=14, corner0=(8, 20), v_front=(3.0, 1.0), v_back=(-0.5, 0.25))
    inputs = write_inputs(video, tmp_path)
    tracker = fit(
        inputs["frames"],
        small_config(steps=STEPS_SMALL_OBJECT, motion_init_sep=0.3, error_sampling=True),
        masks_dir=inputs["masks_dir"],
    )
    ys, xs = np.meshgrid(np.arange(21, 34, 2.0), np.arange(9, 22, 2.0), indexing="ij")
    q = np.stack([np.zeros(ys.size), ys.ravel(), xs.ravel()], 1)
    tracks, _ = tracker.track(q)
    gt, gt_occ = video.track(q)
    err = np.linalg.norm(tracks - gt, axis=-1)[~gt_occ]
    assert np.median(err) < 1.5 and (err < 2).mean() > 0.6, (np.median(err), (err < 2).mean())


def test_twelve_frame_video_fits_and_tracks(video12, tmp_path):
    video, inputs, frames_path = video12
    ck = tmp_path / "model.pt"
    loss = tmp_path / "loss.csv"
    tracker = fit_video(
        frames_path, inputs["masks_dir"], inputs["matches_path"], ck, small_config(steps=20), loss_path=loss
    )
    assert isinstance(tracker, Tracker) and ck.exists() and not partial_path(ck).exists()
    history = pd.read_csv(loss)
    assert history.step.tolist() == list(range(10, 21, 10)) and np.isfinite(history.loss).all()
    assert Tracker.load(ck).history == tracker.history
    q = np.array([[0, 10.5, 10.5], [5, 30.0, 20.0], [11, 2.0, 47.0]], np.float32)
    tracks, occ = predict(ck, q)
    assert tracks.shape == (3, 12, 2) and occ.shape == (3, 12) and tracks.dtype == np.float32
    for n, (t, y, x) in enumerate(q):
        assert tuple(tracks[n, int(t)]) == (x, y) and not occ[n, int(t)]  # i -> i is the query itself
    grid, grid_occ = Tracker.load(ck).track_grid(3, stride=8)
    assert grid.shape == (6, 6, 12, 2) and grid_occ.shape == (6, 6, 12)
    np.testing.assert_allclose(grid[1, 2, 3], [16.5, 8.5])


def test_existing_final_checkpoint_is_reused(video12, tmp_path, caplog):
    _, inputs, frames_path = video12
    ck = tmp_path / "model.pt"
    fit_video(frames_path, inputs["masks_dir"], None, ck, small_config(steps=5))
    stamp = ck.stat().st_mtime_ns
    caplog.set_level(logging.INFO, logger="omnitrack")
    caplog.clear()
    fit(frames_path, small_config(steps=5), masks_dir=inputs["masks_dir"], checkpoint_path=ck)
    assert ck.stat().st_mtime_ns == stamp and "not refitting" in caplog.messages[0]


def test_inference_keys_come_from_the_caller_and_do_not_refit(video12, tmp_path, caplog):
    """occlusion_margin is read at inference only: predict() takes it from the caller (the workflow's
    config), and a fit asked with another margin reuses the fitted model."""
    _, inputs, frames_path = video12
    ck = tmp_path / "model.pt"
    fit_video(frames_path, inputs["masks_dir"], None, ck, small_config(steps=5, occlusion_margin=0.1))
    q = (
        np.stack(np.meshgrid(np.arange(12), np.arange(4, 48, 8) + 0.5, np.arange(4, 48, 8) + 0.5, indexing="ij"), -1)
        .reshape(-1, 3)
        .astype(np.float32)
    )
    _, occ_default = predict(ck, q)
    _, occ_never = predict(ck, q, inference={"occlusion_margin": 10.0})
    _, occ_always = predict(ck, q, inference={"occlusion_margin": -10.0})
    inside = ~occ_never  # margin 10: only points outside the frame stay occluded
    assert occ_always.sum() > occ_default.sum() >= occ_never.sum() and (occ_always | ~inside).mean() > 0.9
    with pytest.raises(ValueError, match=r"\['steps'\] are not inference keys"):
        predict(ck, q, inference={"steps": 3})
    stamp = ck.stat().st_mtime_ns
    caplog.set_level(logging.INFO, logger="omnitrack")
    caplog.clear()
    fit(frames_path, small_config(steps=5, occlusion_margin=0.5), masks_dir=inputs["masks_dir"], checkpoint_path=ck)
    assert ck.stat().st_mtime_ns == stamp and "not refitting" in caplog.messages[0]


def test_checkpoint_of_another_video_is_rejected(video12, tmp_path):
    _, inputs, frames_path = video12
    ck = tmp_path / "model.pt"
    fit_video(frames_path, inputs["masks_dir"], None, ck, small_config(steps=3))
    other = inputs["frames"].copy()
    other[5] = 255 - other[5]
    with pytest.raises(InputError, match=r"model\.pt: checkpoint belongs to another video"):
        fit(other, small_config(steps=3), masks_dir=inputs["masks_dir"], checkpoint_path=ck)
    with pytest.raises(InputError, match="another video"):
        Tracker.load(ck, frames=other[:10])


def test_nan_loss_stops_naming_step_and_term(video12, tmp_path, monkeypatch):
    import omnitrack.model.training as fit_module

    _, inputs, _ = video12
    real = fit_module.flow_losses

    def poisoned(scene, batch, mapped, step, cfg):
        terms = real(scene, batch, mapped, step, cfg)
        if step == 7:
            terms["depth_pred"] = terms["depth_pred"] * float("nan")
        return terms

    monkeypatch.setattr(fit_module, "flow_losses", poisoned)
    ck = tmp_path / "model.pt"
    with pytest.raises(TrainingError, match=r"step 7: loss term 'depth_pred' is nan.*model\.pt\.partial \(step 5\)"):
        fit(
            inputs["frames"],
            small_config(steps=20, checkpoint_every=5),
            masks_dir=inputs["masks_dir"],
            checkpoint_path=ck,
        )
    assert read_checkpoint(partial_path(ck))["step"] == 5 and not ck.exists()


SCRIPT = """
import sys
from omnitrack.model import fit_video
import json
fit_video(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
"""


def test_sigterm_then_resume_equals_uninterrupted_run(video12, tmp_path, caplog):
    import json

    _, inputs, frames_path = video12
    # with the motion depth start, which a resumed run takes from the checkpoint instead of recomputing
    cfg = small_config(steps=60, checkpoint_every=4, motion_init_sep=0.3)
    whole = fit(frames_path, cfg, masks_dir=inputs["masks_dir"], matches_path=inputs["matches_path"])

    ck = tmp_path / "model.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(frames_path),
            str(inputs["masks_dir"]),
            str(inputs["matches_path"]),
            str(ck),
            json.dumps(cfg),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not partial_path(ck).exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM received: stopped after step" in err
    stopped = read_checkpoint(partial_path(ck))["step"]
    assert 0 < stopped < 60 and not ck.exists()

    caplog.set_level(logging.INFO, logger="omnitrack")
    resumed = fit(
        frames_path, cfg, masks_dir=inputs["masks_dir"], matches_path=inputs["matches_path"], checkpoint_path=ck
    )
    assert any(f"resuming at step {stopped}" in m for m in caplog.messages)
    a, b = params(whole), params(resumed)
    assert a["depth.initial"].std() > 0  # the start is not constant: resuming must not replace it
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not partial_path(ck).exists() and ck.exists()


def test_same_seed_same_parameters_different_seed_differs(video12):
    _, inputs, _ = video12
    runs = [fit(inputs["frames"], small_config(steps=8, seed=s), masks_dir=inputs["masks_dir"]) for s in (1, 1, 2)]
    p = [params(r) for r in runs]
    assert all(torch.equal(p[0][k], p[1][k]) for k in p[0])
    assert not torch.equal(p[0]["deformer.planes"], p[2]["deformer.planes"])


def test_chained_flow_matches_feed_the_match_loss(video12, caplog):
    _, inputs, frames_path = video12
    caplog.set_level(logging.INFO, logger="omnitrack")
    tracker = fit(
        frames_path,
        small_config(steps=3, log_every=1, chain_match_stride=8, chain_match_min_gap=2),
        masks_dir=inputs["masks_dir"],
        matches_path=None,
    )
    count = next(int(m.split(":")[1].split()[0]) for m in caplog.messages if m.startswith("chained-flow matches:"))
    assert count > 0
    assert all("match" in row for row in tracker.history)  # without any matches there is no match term


def test_flow_and_match_points_mapped_in_one_pass_as_apart(video12):
    """map_batches (one deformer pass for batches of different point counts) gives each batch what
    mapping it alone gives, values and gradients."""
    from omnitrack.model.losses import map_batches
    from omnitrack.model.training import _build, _initial_depth

    _, inputs, _ = video12
    cfg = small_config()
    trainer = _build(
        inputs["frames"],
        cfg,
        inputs["masks_dir"],
        None,
        _initial_depth(inputs["frames"], cfg, inputs["masks_dir"], None),
    )
    scene, gen = trainer.scene.double(), torch.Generator().manual_seed(0)
    batches = [
        {
            "fi": torch.tensor(fi),
            "fj": torch.tensor(fj),
            "p1": torch.rand(len(fi), q, 2, generator=gen, dtype=torch.float64) * 48,
        }
        for fi, fj, q in (([0, 3, 11], [5, 2, 0], 7), ([4, 4], [9, 1], 2))
    ]

    def run(groups):
        scene.zero_grad()
        out = [m for g in groups for m in map_batches(scene, scene.deformer.prepare(), g)]
        sum((x2 * 1.3 + y2 * 0.7 + z2).sum() for _, x2, y2, z2 in out).backward()
        return out, [p.grad.clone() for p in scene.parameters() if p.grad is not None]

    together, grads = run([batches])
    apart, grads_apart = run([[b] for b in batches])
    for t, a in zip(together, apart):
        assert t[1].shape == a[1].shape
        for u, v in zip(t[1:], a[1:]):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)
    for g, h in zip(grads, grads_apart):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-10)
