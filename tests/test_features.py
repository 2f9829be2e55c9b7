import functools

import numpy as np
import pytest
import torch

from omnitrack.errors import CacheError, InputError
from omnitrack.features import dino
from omnitrack.features.descriptors import compute_features, dense_sift, load_features, save_features
from tests.textures import texture

# ---------------------------------------------------------------- dense SIFT


def test_sift_descriptors_follow_shifted_content():
    cell, (sx, sy) = 8, (3, 2)  # shift in cells, x != y
    big = texture(160, 176)
    a = big[sy * cell : sy * cell + 128, sx * cell : sx * cell + 144]
    b = big[:128, :144]  # b(p + shift) = a(p): a's cell (r, c) is b's cell (r + sy, c + sx)
    frames = np.stack([a, b])
    desc, cellxy = dense_sift(frames, cell=cell)
    assert desc.shape == (2, 16, 18, 128) and cellxy == (8.0, 8.0)
    assert np.allclose(np.linalg.norm(desc, axis=-1), 1, atol=1e-5)
    # away from the borders (the descriptor support is 4 cells), the same content gives the same descriptor
    inner_a = desc[0, 3 : 16 - 3 - sy, 3 : 18 - 3 - sx]
    inner_b = desc[1, 3 + sy : 16 - 3, 3 + sx : 18 - 3]
    cos = (inner_a * inner_b).sum(-1)
    assert cos.min() > 0.99
    # and they differ from unrelated cells (the test would pass trivially on constant descriptors)
    assert (desc[0, 3:13, 3:15] * desc[1, 3:13, 3:15]).sum(-1).mean() < 0.5


def test_sift_flat_frames_and_grid_size():
    frames = np.full((2, 50, 70, 3), 128, np.uint8)
    frames[1, :, 35:] = texture(50, 35)
    desc, cellxy = dense_sift(frames, cell=8)
    assert desc.shape == (2, 6, 8, 128)  # floor(50 / 8), floor(70 / 8): the border remainder is dropped
    assert np.all(np.isfinite(desc)) and np.allclose(np.linalg.norm(desc, axis=-1), 1, atol=1e-5)
    flat = desc[0].reshape(-1, 128)
    assert np.allclose(flat, flat[0], atol=1e-6)  # flat cells are all alike


def test_compute_features_sift_and_roundtrip(tmp_path):
    frames = np.stack([texture(64, 96, seed=s) for s in range(3)])
    desc, cell = compute_features(frames, "sift", cell=8, progress=False)
    assert desc.dtype == np.float16 and desc.shape == (3, 8, 12, 128) and cell == (8.0, 8.0)
    assert np.allclose(np.linalg.norm(desc.astype(np.float32), axis=-1), 1, atol=2e-3)
    path = tmp_path / "v.match.npz"
    save_features(path, desc, cell, "sift")
    d2, c2, m2 = load_features(path)
    assert np.array_equal(d2, desc) and c2 == cell and m2 == "sift"
    with pytest.raises(ValueError, match="feature method must be one of"):
        compute_features(frames, "orb", progress=False)


def test_load_features_rejects_bad_files(tmp_path):
    from omnitrack.io import save_npz

    good = np.ones((1, 2, 2, 4), np.float16) / 2
    with pytest.raises(CacheError, match="missing"):
        load_features(tmp_path / "nope.npz")
    bad = tmp_path / "unnormalised.npz"
    save_npz(bad, descriptors=good * 2, cell=np.float32([8, 8]), method=np.array("sift"))
    with pytest.raises(CacheError, match=f"{bad}.*not L2-normalised"):
        load_features(bad)
    bad = tmp_path / "method.npz"
    save_npz(bad, descriptors=good, cell=np.float32([8, 8]), method=np.array("orb"))
    with pytest.raises(CacheError, match=f"{bad}.*unknown feature method 'orb'"):
        load_features(bad)
    bad = tmp_path / "cell.npz"
    save_npz(bad, descriptors=good, cell=np.float32([8, 8, 8]), method=np.array("sift"))
    with pytest.raises(CacheError, match=f"{bad}.*cell must be two positive"):
        load_features(bad)
    bad = tmp_path / "truncated.npz"
    save_features(bad, good, (8, 8), "sift")
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(CacheError, match=f"{bad}.*truncated or corrupt"):
        load_features(bad)


# ---------------------------------------------------------------- DINO / DINOv2


@functools.cache
def random_model(method, seed=0):
    """The method's architecture with random parameters (no DINO weights exist here).

    Filled into an uninitialised skeleton: timm's own initialisation takes seconds on this machine.
    LayerNorm scales near 1 and LayerScale near 0.1 keep the activations in a realistic range.
    """
    gen = torch.Generator().manual_seed(seed)
    model = dino.build_model(method, device="meta")
    state = {}
    for key, p in model.state_dict().items():
        v = torch.randn(p.shape, generator=gen) * 0.05
        if "norm" in key and key.endswith("weight"):
            v += 1
        elif key.endswith("gamma"):
            v += 0.1
        state[key] = v
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


NATIVE = {"dino": 224, "dinov2": 518}  # the release's image size: a 14x14 (DINO) or 37x37 (DINOv2) patch grid


def official_keys(method):
    """(name, shape) of every tensor in the official release file, written out from the two authors'
    ViT-S definitions (facebookresearch/dino and /dinov2 vision_transformer.py), not from timm:
    DINO ViT-S/16 (dino_deitsmall16_pretrain.pth) and DINOv2 ViT-S/14 (dinov2_vits14_pretrain.pth, which
    adds LayerScale ``ls1``/``ls2`` per block and an unused ``mask_token``). Width 384, 12 blocks, MLP 1536."""
    dim, p = 384, dino.PATCH[method]
    grid = NATIVE[method] // p
    keys = [("cls_token", (1, 1, dim)), ("pos_embed", (1, 1 + grid * grid, dim))]
    if method == "dinov2":
        keys.append(("mask_token", (1, dim)))
    keys += [("patch_embed.proj.weight", (dim, 3, p, p)), ("patch_embed.proj.bias", (dim,))]
    for n in range(12):
        b = f"blocks.{n}."
        keys += [
            (b + "norm1.weight", (dim,)),
            (b + "norm1.bias", (dim,)),
            (b + "attn.qkv.weight", (3 * dim, dim)),
            (b + "attn.qkv.bias", (3 * dim,)),
            (b + "attn.proj.weight", (dim, dim)),
            (b + "attn.proj.bias", (dim,)),
        ]
        if method == "dinov2":
            keys.append((b + "ls1.gamma", (dim,)))
        keys += [
            (b + "norm2.weight", (dim,)),
            (b + "norm2.bias", (dim,)),
            (b + "mlp.fc1.weight", (4 * dim, dim)),
            (b + "mlp.fc1.bias", (4 * dim,)),
            (b + "mlp.fc2.weight", (dim, 4 * dim)),
            (b + "mlp.fc2.bias", (dim,)),
        ]
        if method == "dinov2":
            keys.append((b + "ls2.gamma", (dim,)))
    keys += [("norm.weight", (dim,)), ("norm.bias", (dim,))]
    return keys


@functools.cache
def _official_state(method, seed):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_keys(method):
        v = torch.randn(shape, generator=gen) * 0.05
        if "norm" in key and key.endswith("weight"):
            v += 1
        elif key.endswith("gamma"):
            v += 0.1
        state[key] = v
    return state


def official_state(method, seed=0):
    """A state dict in the official release layout with random values (LayerNorm scales near 1, LayerScale near 0.1)."""
    return {k: v.clone() for k, v in _official_state(method, seed).items()}


def reference_tokens(state, image, method):
    """The official ViT-S forward pass written with plain torch ops on the official keys: image
    [B, 3, H, W] (multiples of the patch) -> last-layer normalised patch tokens [B, h, w, 384]. The
    position embedding is resampled by the official rule (checked on its own in
    test_position_embedding_follows_the_official_rule)."""
    import torch.nn.functional as F

    w = state
    x = F.conv2d(image, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], stride=dino.PATCH[method])
    b, c, h, wd = x.shape
    x = torch.cat([w["cls_token"].expand(b, -1, -1), x.flatten(2).transpose(1, 2)], 1)
    x = x + dino.interpolate_pos_embed(w["pos_embed"], h, wd)
    heads = 6
    hd = c // heads
    for n in range(12):

        def g(k, n=n):
            return w[f"blocks.{n}.{k}"]

        y = F.layer_norm(x, (c,), g("norm1.weight"), g("norm1.bias"), eps=1e-6)
        q, k, v = (
            F.linear(y, g("attn.qkv.weight"), g("attn.qkv.bias")).reshape(b, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        )
        a = (torch.softmax(q @ k.transpose(-2, -1) * hd**-0.5, -1) @ v).transpose(1, 2).reshape(b, -1, c)
        a = F.linear(a, g("attn.proj.weight"), g("attn.proj.bias"))
        x = x + (a * g("ls1.gamma") if method == "dinov2" else a)
        y = F.layer_norm(x, (c,), g("norm2.weight"), g("norm2.bias"), eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, g("mlp.fc1.weight"), g("mlp.fc1.bias"))), g("mlp.fc2.weight"), g("mlp.fc2.bias")
        )
        x = x + (y * g("ls2.gamma") if method == "dinov2" else y)
    x = F.layer_norm(x, (c,), w["norm.weight"], w["norm.bias"], eps=1e-6)
    return x[:, 1:].reshape(b, h, wd, c)


def test_official_dinov2_keys_are_those_of_the_official_code(shared_data):
    """The DINOv2 list above against a file the official code wrote: the Depth Anything V2 reference
    file's backbone (``pretrained.*``) is the DINOv2 authors' ViT-S/14."""
    from tests.shared import shared_file

    state = torch.load(
        shared_file(shared_data, "depth/depth_anything_v2_vits_random.pth"), map_location="cpu", weights_only=True
    )
    backbone = {k[len("pretrained.") :]: tuple(v.shape) for k, v in state.items() if k.startswith("pretrained.")}
    assert backbone == dict(official_keys("dinov2"))


@pytest.mark.parametrize("method", ["dino", "dinov2"])
def test_official_checkpoint_loads_to_the_official_features(tmp_path, method):
    state = official_state(method)
    path = tmp_path / f"{method}.pth"
    torch.save(state, path)
    loaded = dino.load_model(method, path)
    p = dino.PATCH[method]
    x = torch.randn(1, 3, 5 * p, 7 * p, generator=torch.Generator().manual_seed(0))
    ours = dino.patch_tokens(loaded, x)
    with torch.inference_mode():
        ref = reference_tokens(state, x, method)
    assert ours.shape == ref.shape == (1, 5, 7, 384)
    assert torch.allclose(ours, ref, atol=1e-4), float((ours - ref).abs().max())
    assert ref.std() > 0.1  # far from a degenerate (e.g. all-normalised-away) output
    # the common entry point gives the loaded model's tokens, L2-normalised, float16
    frames = np.stack([texture(60, 90, seed=1), texture(60, 90, seed=2)])
    expected, cell = dino.run_model(loaded, frames, method, short_side=64)
    desc, cell3 = compute_features(frames, method, weights=path, device="cpu", progress=False, short_side=64)
    norm = expected / np.linalg.norm(expected, axis=-1, keepdims=True)
    assert desc.dtype == np.float16 and cell3 == cell
    assert np.allclose(desc.astype(np.float32), norm, atol=2e-3)


def test_dino_training_checkpoint_is_accepted(tmp_path):
    """checkpoint.pth as the DINO authors' main_dino.py saves it: the teacher's backbone is loaded."""
    import argparse

    state = official_state("dino")
    student = official_state("dino", seed=1)  # differs from the teacher: the loader must take the teacher
    teacher = {f"backbone.{k}": v for k, v in state.items()}
    teacher.update(
        {
            "head.mlp.0.weight": torch.zeros(8, 384),
            "head.mlp.0.bias": torch.zeros(8),
            "head.last_layer.weight_g": torch.ones(16, 1),
            "head.last_layer.weight_v": torch.zeros(16, 8),
        }
    )
    checkpoint = {
        "student": {
            **{f"module.backbone.{k}": v for k, v in student.items()},
            "module.head.mlp.0.weight": torch.zeros(8, 384),
        },
        "teacher": teacher,
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.0005, "weight_decay": 0.04, "params": [0, 1]}]},
        "epoch": 100,
        "args": argparse.Namespace(
            arch="vit_small",
            patch_size=16,
            out_dim=65536,
            lr=0.0005,
            epochs=100,
            data_path="/path/to/imagenet/train/",
            output_dir=".",
            use_fp16=True,
            global_crops_scale=(0.4, 1.0),
            local_crops_number=8,
            seed=0,
        ),
        "dino_loss": {"center": torch.zeros(1, 16)},
        "fp16_scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    loaded = dino.load_model("dino", path)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = reference_tokens(state, x, "dino")
    assert torch.allclose(dino.patch_tokens(loaded, x), ref, atol=1e-4)


@pytest.mark.parametrize("method,size", [("dino", 224), ("dinov2", 518)])
def test_patch_tokens_match_timm_on_the_native_grid(method, size):
    model = random_model(method)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    ours = dino.patch_tokens(model, x)
    with torch.inference_mode():
        ref = model.forward_features(x)[:, 1:]
    g = size // dino.PATCH[method]
    assert ours.shape == (1, g, g, 384)
    assert torch.allclose(ours.reshape(1, g * g, 384), ref, atol=1e-5)


def test_feature_map_shape_of_a_non_square_frame():
    frames = texture(100, 150)[None]
    # dino: shorter side 100 -> 64, longer 150 -> 96 (a multiple of 16): 4 x 6 patches
    desc, cell = dino.run_model(random_model("dino"), frames, "dino", short_side=64)
    assert desc.shape == (1, 4, 6, 384) and cell == pytest.approx((25.0, 25.0))
    # dinov2: each side rounded down to a multiple of 14: 98 x 140 -> 7 x 10 patches
    desc, cell = dino.run_model(random_model("dinov2"), frames, "dinov2")
    assert desc.shape == (1, 7, 10, 384) and cell == pytest.approx((15.0, 100 / 7))
    assert dino.resized_size(480, 854, "dino") == (480, 848)
    assert dino.resized_size(480, 854, "dinov2") == (476, 854)


def test_position_embedding_follows_the_official_rule():
    pos = torch.randn(1, 1 + 14 * 14, 8)
    assert dino.interpolate_pos_embed(pos, 14, 14) is pos  # native square grid: untouched
    out = dino.interpolate_pos_embed(pos, 4, 6)
    assert out.shape == (1, 1 + 24, 8) and torch.equal(out[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 14, 14, 8).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, scale_factor=(4.1 / 14, 6.1 / 14), mode="bicubic")
    assert torch.allclose(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 24, 8))


def test_missing_or_wrong_weights(tmp_path):
    missing = tmp_path / "dinov2_vits14_pretrain.pth"
    with pytest.raises(InputError, match=f"{missing}: dinov2 weights file not found.*dl.fbaipublicfiles.com/dinov2"):
        dino.load_model("dinov2", missing)
    with pytest.raises(InputError, match="dino weights file not found.*dino_deitsmall16_pretrain.pth"):
        compute_features(np.zeros((1, 32, 32, 3), np.uint8), "dino", weights=None, progress=False)
    wrong = tmp_path / "dino_as_dinov2.pth"
    torch.save(official_state("dino"), wrong)
    with pytest.raises(InputError, match=f"{wrong}: is not a vit_small_patch14_dinov2 \\(dinov2\\) checkpoint"):
        dino.load_model("dinov2", wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=f"{junk}: cannot be read as a PyTorch checkpoint"):
        dino.load_model("dino", junk)


def test_raft_encoder_descriptors_tell_the_right_point_from_a_wrong_one(shared_data):
    """features method raft: RAFT's feature encoder, 8-px cells, L2-normalised; the descriptor of a
    point matches its moved position better than a point 16 px away (what the masks' check needs),
    for the large and the small checkpoint (told apart by their keys)."""
    from omnitrack.flow.consistency import _Features
    from omnitrack.interp import pixel_centres
    from tests.shared import shared_file

    base = texture(144, 144, seed=3)
    frames = np.stack([base[8:, 8:], base[:-8, :-8]])  # frame 1: frame 0 moved by (8, 8) px
    rng = np.random.default_rng(0)
    src = rng.uniform(24, 96, (200, 2)).astype(np.float32)
    for name, dim in (("raft-sintel.pth", 256), ("raft-small.pth", 128)):
        desc, cell = compute_features(
            frames, "raft", weights=shared_file(shared_data, f"weights/{name}"), progress=False
        )
        assert desc.shape == (2, 17, 17, dim) and desc.dtype == np.float16 and cell == (8.0, 8.0)
        np.testing.assert_allclose(np.linalg.norm(desc.astype(np.float32), axis=-1), 1, atol=1e-2)
        feats = _Features({"descriptors": desc, "cell": cell}, 2, pixel_centres(136, 136))
        flat = src[:, 1].astype(int) * 136 + src[:, 0].astype(int)
        centres = pixel_centres(136, 136).reshape(-1, 2)[flat]
        right = feats.cosine(0, flat, 1, centres + 8.0)
        wrong = feats.cosine(0, flat, 1, centres + np.array([8.0 + 16.0, 8.0], np.float32))
        assert np.mean(right > wrong) > 0.9, name


def test_raft_descriptors_need_a_checkpoint():
    with pytest.raises(InputError, match=r"features\.<purpose>\.weights.*method raft needs a RAFT checkpoint"):
        compute_features(np.zeros((2, 16, 16, 3), np.uint8), "raft", weights=None)
