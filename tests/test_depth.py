"""Depth Anything V2 (architecture, loader, command) and the conversion to the fit's depth."""

import functools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from omnitrack.depth import fit_depth, infer_image, infer_video, load_depth_anything, network_size
from omnitrack.depth.convert import align_frames
from omnitrack.errors import InputError
from tests.shared import REPO, shared_file

WEIGHTS = "depth/depth_anything_v2_vits_random.pth"
REFERENCE = "depth/depth_anything_v2_vits_random_reference.npz"


@pytest.fixture(scope="module")
def reference(shared_data):
    """(weights path, reference arrays): fails under CI=true when the shared files are absent."""
    path = shared_file(shared_data, WEIGHTS)
    with np.load(shared_file(shared_data, REFERENCE)) as z:
        return path, {k: z[k] for k in z.files}


@functools.cache
def _model(path):
    return load_depth_anything(path, "vits", "cpu")


def rel_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


# ---------------------------------------------------------------- the official reference


def test_network_input_size_follows_the_official_resize(reference):
    _, ref = reference
    h, w = ref["image_bgr"].shape[:2]
    for size in (518, 252):
        assert (1, 3, *network_size(h, w, size)) == tuple(ref[f"net_input_shape_{size}"])
    assert network_size(200, 300, 518) == (518, 784)  # 777 = 55.5 x 14 rounds half to even: 56 x 14
    assert network_size(300, 200, 252) == (378, 252)
    assert network_size(100, 100, 20) == (28, 28)  # nearest multiple (14) is below 20: rounded up


def test_reference_depth_518_through_infer_image(reference):
    path, ref = reference
    depth = infer_image(_model(path), ref["image_bgr"], 518)
    assert depth.dtype == np.float32 and depth.shape == (200, 300)
    assert rel_error(depth, ref["depth_518"]) <= 1e-3


def test_reference_depth_252_through_infer_video_on_rgb_frames(reference):
    path, ref = reference
    rgb = np.ascontiguousarray(ref["image_bgr"][..., ::-1])
    frames = np.stack([rgb, rgb[:, ::-1]])  # the second frame mirrored: a batch of two different frames
    depth = infer_video(_model(path), frames, 252, batch_size=2, progress=False)
    assert depth.dtype == np.float32 and depth.shape == (2, 200, 300)
    assert rel_error(depth[0], ref["depth_252"]) <= 1e-3
    # the other frame of the batch is the map of that frame alone (BGR through infer_image)
    alone = infer_image(_model(path), np.ascontiguousarray(frames[1][..., ::-1]), 252)
    assert rel_error(depth[1], alone) <= 1e-5 and rel_error(depth[1], depth[0]) > 0.1


# two processes, each importing torch and timm: ~10-20 s on 2 busy cores
def test_reference_depth_through_the_command(reference, tmp_path):
    import cv2

    path, ref = reference
    image = tmp_path / "frame.png"  # lossless: cv2 reads back the reference's exact BGR pixels
    cv2.imwrite(str(image), ref["image_bgr"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    runs = {
        size: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "omnitrack.depth",
                str(image),
                str(tmp_path / f"d{size}.npy"),
                "--weights",
                str(path),
                "--encoder",
                "vits",
                "--input-size",
                str(size),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for size in (518, 252)
    }
    for size, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        depth = np.load(tmp_path / f"d{size}.npy")
        assert depth.dtype == np.float32 and depth.shape == (200, 300)
        assert rel_error(depth, ref[f"depth_{size}"]) <= 1e-3
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # written atomically


def test_parameter_names_are_the_official_files(reference):
    path, _ = reference
    official = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        from omnitrack.depth.model import DepthAnythingV2

        ours = DepthAnythingV2("vits").state_dict()
    assert sorted(ours) == sorted(official)
    assert all(tuple(ours[k].shape) == tuple(official[k].shape) for k in ours)
    assert all(p.dtype == torch.float32 for p in _model(path).parameters())  # float16 file, float32 compute


# ---------------------------------------------------------------- bad weight files and images

HINT = r"download depth_anything_v2_vits\.pth from https://huggingface\.co/depth-anything/Depth-Anything-V2-Small"


def test_missing_truncated_and_foreign_weights_are_named(tmp_path, reference):
    path, _ = reference
    missing = tmp_path / "depth_anything_v2_vits.pth"
    with pytest.raises(
        InputError,
        match=f"^{re.escape(str(missing))}: Depth Anything V2 vits weights file not found \\({HINT}.*Apache-2.0",
    ):
        load_depth_anything(missing, "vits")
    with pytest.raises(InputError, match=r"^config: depth.weights: .*not found.*Depth-Anything-V2-Base.*CC-BY-NC-4.0"):
        load_depth_anything(None, "vitb")

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(
        InputError, match=f"^{re.escape(str(truncated))}: cannot be read as a PyTorch checkpoint.*{HINT}"
    ):
        load_depth_anything(truncated, "vits")

    # the (vits) file given as vitb: named as what it is
    large = "https://huggingface\\.co/depth-anything/Depth-Anything-V2-Base"
    with pytest.raises(
        InputError,
        match=f"^{re.escape(str(path))}: is a Depth Anything V2 vits checkpoint, "
        f"not vitb \\(pass --encoder vits .*{large}",
    ):
        load_depth_anything(path, "vitb")

    # a state dict of another model (a DINO backbone's keys): not this architecture
    other = tmp_path / "other.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 384), "blocks.0.norm1.weight": torch.ones(384)}, other)
    with pytest.raises(
        InputError,
        match=f"^{re.escape(str(other))}: is not a Depth Anything V2 vits checkpoint: "
        f".*Missing key.*pretrained.cls_token.*{HINT}",
    ):
        load_depth_anything(other, "vits")

    # the right backbone with a head of another width (vitb's 128 features): a shape mismatch
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["depth_head.scratch.layer1_rn.weight"] = torch.zeros(128, 48, 3, 3, dtype=torch.float16)
    wrong = tmp_path / "wrong_head.pth"
    torch.save(state, wrong)
    with pytest.raises(
        InputError,
        match=f"^{re.escape(str(wrong))}: is not a Depth Anything V2 vits checkpoint: "
        f".*size mismatch for depth_head.scratch.layer1_rn.weight.*{HINT}",
    ):
        load_depth_anything(wrong, "vits")

    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(
        InputError, match=f"^{re.escape(str(tensor))}: holds a Tensor, expected a Depth Anything V2 state dict"
    ):
        load_depth_anything(tensor, "vits")


def test_command_errors_have_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "omnitrack.depth", *map(str, args)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    weights = tmp_path / "depth_anything_v2_vits.pth"
    missing_image = tmp_path / "nope.png"
    r = run(missing_image, tmp_path / "out.npy", "--weights", weights)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {missing_image}: does not exist" in r.stderr
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    r = run(junk, tmp_path / "out.npy", "--weights", weights)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"error: {junk}: cannot be decoded as an image" in r.stderr
    import cv2

    image = tmp_path / "ok.png"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    r = run(image, tmp_path / "out.npy", "--weights", weights)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert re.search(
        f"error: {re.escape(str(weights))}: Depth Anything V2 vits weights file not found \\({HINT}", r.stderr
    )
    assert not (tmp_path / "out.npy").exists()


# ---------------------------------------------------------------- relative inverse depth -> the fit's depth


def scene(t=3, h=40, w=60, a=(0.2, 0.2, 0.2), b=(0.05, 0.05, 0.05), seed=0):
    """A plane (inverse depth 1) with an object in front (inverse depth 3) moving right, a sky strip
    (inverse depth 0) and a few specular spikes, seen through a per-frame affine (a / z + b) as a
    monocular model predicts -> (predicted inverse depth [T, H, W], object, sky and plane masks [T, H, W])."""
    rng = np.random.default_rng(seed)
    inv = np.ones((t, h, w))
    obj = np.zeros((t, h, w), bool)
    sky = np.zeros((t, h, w), bool)
    sky[:, :4] = True  # 10 % of the pixels
    inv[sky] = 0
    for k in range(t):
        obj[k, 15:35, 10 + 5 * k : 30 + 5 * k] = True  # 400 px of 2400: 17 %
    inv[obj] = 3
    spikes = rng.random((t, h, w)) < 0.005
    inv[spikes] = 100  # outliers far beyond the object
    pred = np.stack([a[k] * inv[k] + b[k] for k in range(t)]) + rng.normal(0, 1e-4, (t, h, w))
    return pred.astype(np.float32), obj & ~spikes, sky & ~spikes, ~obj & ~sky & ~spikes


def test_fit_depth_orders_plane_and_object_and_caps_the_range():
    pred, obj, sky, plane = scene()
    depth = fit_depth(pred, depth_far=1.0, max_ratio=2.0)
    assert depth.dtype == np.float32 and depth.shape == pred.shape
    # capped: [depth_far / max_ratio, depth_far]; the spikes do not stretch it
    assert depth.min() >= 0.5 - 1e-6 and depth.max() <= 1.0 + 1e-6
    # the object is nearer than the plane, at the near end; the plane and the sky at the far end
    assert np.median(depth[obj]) == pytest.approx(0.5, abs=0.01)
    # the far anchor is the sky (inverse depth 0, 10 % of the pixels), the near one the object (3):
    # the plane (1) is a third of the way in inverse depth
    assert np.median(depth[plane]) == pytest.approx(1.0 / (1 + (1 - 0) / (3 - 0)), abs=0.01)
    assert depth[obj].max() < depth[plane].min() and depth[plane].max() < depth[sky].min()
    assert np.allclose(depth[sky], 1.0, atol=1e-3)
    # depth_far and max_ratio set the units
    d2 = fit_depth(pred, depth_far=2.0, max_ratio=4.0)
    assert d2.min() >= 0.5 - 1e-6 and d2.max() <= 2.0 + 1e-6 and np.median(d2[obj]) == pytest.approx(0.5, abs=0.01)


def test_fit_depth_is_invariant_to_the_models_scale_and_shift():
    pred = scene()[0]
    assert np.allclose(fit_depth(pred), fit_depth(7.0 * pred + 3.0), atol=1e-5)


def test_flat_or_invalid_prediction_gives_the_constant_start():
    flat = np.full((2, 8, 8), 0.3, np.float32)
    assert np.all(fit_depth(flat, depth_far=1.5) == 1.5)
    nan = np.full((2, 8, 8), np.nan, np.float32)
    assert np.all(fit_depth(nan) == 1.0)
    with pytest.raises(ValueError, match="expected inverse depth"):
        fit_depth(np.ones((8, 8)))


def test_frames_are_aligned_to_one_scale_through_static_correspondences():
    # the same scene, but the model's scale and shift drift per frame
    pred, obj, sky, plane = scene(a=(0.2, 0.3, 0.15), b=(0.05, 0.0, 0.2))
    t, h, w = pred.shape
    ys, xs = np.mgrid[0:h, 0:w]
    xy = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)

    def pairs(k):  # static camera: a static pixel maps to itself; the moving object is left out
        static = (~obj[k - 1] & ~obj[k]).ravel()
        return xy[static], xy[static]

    aligned = align_frames(pred, pairs)
    for k in range(1, t):
        same = (plane[k] | sky[k]) & (plane[0] | sky[0])  # static in both frames
        assert np.allclose(aligned[k][same], pred[0][same], atol=2e-3)
    depth = fit_depth(pred, pairs=pairs)
    per_frame = [np.median(depth[k][plane[k]]) for k in range(t)]
    assert max(per_frame) - min(per_frame) < 0.01  # one scale: the plane has one depth in every frame
    assert np.median(depth[obj]) < min(per_frame) - 0.1
    unaligned = fit_depth(pred)
    raw = [np.median(unaligned[k][plane[k]]) for k in range(t)]
    assert max(raw) - min(raw) > 0.05  # which the drifting prediction alone does not give
    # frames without pairs keep their own values
    assert np.array_equal(align_frames(pred, [None, None]), pred)
