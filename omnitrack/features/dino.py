"""DINO ViT-S/16 (flow filtering) and DINOv2 ViT-S/14 (long-term matching) patch tokens.

Architecture: timm's ``vit_small_patch16_224`` (DINO v1) and ``vit_small_patch14_dinov2`` (DINOv2),
built with ``pretrained=False`` (timm never downloads anything) and a dynamic image size. timm is
already a pinned dependency; its ViT blocks, LayerScale and attention are the same modules and
parameter layout as the two official releases (the official DINO keys are timm's keys verbatim,
the DINOv2 ones differ only by ``mask_token``, which ``checkpoint_filter_fn`` drops), so loading is
a strict ``load_state_dict`` of the official file after timm's own key conversion. A hand-written
ViT would duplicate ~150 lines of well-tested code for no gain.

One part is ours: the interpolation of the position embedding to a non-native patch grid. timm
resamples to an exact size with antialiasing; both official releases call bicubic interpolation
with ``scale_factor = (grid + 0.1) / native_grid`` and no antialiasing (and skip interpolation on
the native square grid). :func:`patch_tokens` reproduces the official rule, so a checkpoint gives
the features the release code gives.

Weights (official release format, read from a local file only):
- dino:   dino_deitsmall16_pretrain.pth  (facebookresearch/dino; DINO_URLS["dino"])
- dinov2: dinov2_vits14_pretrain.pth     (facebookresearch/dinov2; DINO_URLS["dinov2"])

Preprocessing is deterministic (upstream's DINOv2 script applies a Gaussian blur of random sigma on
every call; we don't): RGB, ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)
(upstream's DINO v1 script uses 0.228 for red, a typo), and a resize to whole patches:
- dino:   shorter side to ``short_side`` (default 480 as upstream), longer side scaled by the same
          factor; both rounded down to a multiple of 16 (upstream rounds the longer side down to a
          multiple of 64: 854x480 -> 832x480; we lose less of the frame: 848x480).
- dinov2: each side rounded down to a multiple of 14 at the working resolution (854x480 -> 854x476).
Output: last-block tokens after the final LayerNorm, class token dropped, [h, w, 384] (DINO v1:
``get_intermediate_layers(n=1)``; DINOv2: ``x_norm_patchtokens``). The patch grid covers the whole
resized frame, so the cell size is (W / w, H / h) pixels of the working resolution.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError

ARCH = {"dino": "vit_small_patch16_224", "dinov2": "vit_small_patch14_dinov2"}
PATCH = {"dino": 16, "dinov2": 14}
DINO_URLS = {
    "dino": "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    "dinov2": "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def build_model(method: str, device: str = "cpu"):
    """Randomly initialised timm ViT of ``method`` ("dino" | "dinov2"), no classifier head, eval mode.

    device "meta" gives an uninitialised skeleton (no memory, no init cost) for :func:`load_model`.
    """
    import timm
    import torch

    if method not in ARCH:
        raise ValueError(f"DINO method must be one of {sorted(ARCH)}, got {method!r}")
    with torch.device(device):
        model = timm.create_model(ARCH[method], pretrained=False, num_classes=0, dynamic_img_size=True)
    return model.eval()


def load_model(method: str, weights: str | Path | None, device: str = "cpu"):
    """The ViT of ``method`` with the official checkpoint ``weights`` loaded strictly; eval mode on ``device``.

    Accepts the released backbone files and DINO training checkpoints (``checkpoint.pth`` of the DINO
    authors' main_dino.py: {"student": {"module.backbone.*", ...}, "teacher": {"backbone.*", "head.*"},
    "optimizer", "epoch", "args": argparse.Namespace, "dino_loss", "fp16_scaler"}; the teacher's backbone is
    used, as the authors' ``load_pretrained_weights`` does). The file is read with ``weights_only=True``;
    ``argparse.Namespace`` is the one class allowed beyond tensors and plain containers (a training
    checkpoint's ``args``).
    Missing file, unreadable file or a different architecture -> InputError naming the file.
    """
    import argparse

    import torch
    from timm.models.vision_transformer import checkpoint_filter_fn

    name = Path(DINO_URLS.get(method, "")).name or "the official checkpoint"
    if weights is None or not Path(weights).is_file():
        raise InputError(
            weights if weights is not None else f"config: features weights for {method}",
            f"{method} weights file not found",
            f"download {name} from {DINO_URLS.get(method, '?')} and set its path in config.yaml "
            f"(features.<purpose>.weights), or use method 'sift' which needs no weights",
        )
    model = build_model(method, device="meta")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a bad file
        raise InputError(weights, f"cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise InputError(weights, f"holds a {type(state).__name__}, expected a state dict")
    state = _unwrap(state)
    try:
        model.load_state_dict(checkpoint_filter_fn(dict(state), model), strict=True, assign=True)
    except (RuntimeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()
        raise InputError(
            weights,
            f"is not a {ARCH[method]} ({method}) checkpoint: {' '.join(first[:3])[:400]}",
            f"expected {name} from {DINO_URLS[method]}",
        ) from None
    return model.to(device).eval()


def _unwrap(state: dict) -> dict:
    """Backbone weights from an official file: a plain state dict, or a DINO training checkpoint
    (its "teacher", "module." and "backbone." prefixes stripped, the projection "head." dropped)."""
    if isinstance(state.get("teacher"), dict):
        state = state["teacher"]
    for prefix in ("module.", "backbone."):
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def resized_size(height: int, width: int, method: str, short_side: int = 480) -> tuple[int, int]:
    """(H', W') the network sees, both multiples of the patch size (see the module docstring)."""
    p = PATCH[method]
    if method == "dino":
        scale = short_side / min(height, width)
        height, width = height * scale, width * scale
    h, w = int(round(height, 6)) // p * p, int(round(width, 6)) // p * p
    if h < p or w < p:
        raise ValueError(f"a {width}x{height} frame is smaller than one {p}x{p} patch")
    return h, w


def preprocess(frame: np.ndarray, method: str, short_side: int = 480):
    """uint8 [H, W, 3] RGB -> float32 tensor [1, 3, H', W'] resized and ImageNet-normalised."""
    import cv2
    import torch

    height, width = frame.shape[:2]
    h, w = resized_size(height, width, method, short_side)
    if (h, w) != (height, width):
        shrink = h * w < height * width
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    x = (frame.astype(np.float32) / 255.0 - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def interpolate_pos_embed(pos_embed, grid_h: int, grid_w: int):
    """Official DINO / DINOv2 rule: [1, 1 + N, C] (square native grid) -> [1, 1 + grid_h * grid_w, C]."""
    import torch
    import torch.nn.functional as F

    n = pos_embed.shape[1] - 1
    m = int(math.sqrt(n))
    if grid_h * grid_w == n and grid_h == grid_w:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    patch_pos = F.interpolate(
        patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2).float(),
        scale_factor=((grid_h + 0.1) / m, (grid_w + 0.1) / m),
        mode="bicubic",
        align_corners=False,
    )
    if patch_pos.shape[-2:] != (grid_h, grid_w):
        raise RuntimeError(
            f"position embedding interpolated to {tuple(patch_pos.shape[-2:])}, expected {(grid_h, grid_w)}"
        )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def patch_tokens(model, image):
    """Last-layer normalised patch tokens: image [B, 3, H', W'] (multiples of the patch) -> [B, h, w, C]."""
    import torch

    with torch.inference_mode():
        x = model.patch_embed(image)  # [B, h, w, C] (dynamic image size: NHWC)
        b, h, w, c = x.shape
        x = torch.cat([model.cls_token.expand(b, -1, -1), x.reshape(b, h * w, c)], dim=1)
        x = x + interpolate_pos_embed(model.pos_embed, h, w)
        x = model.norm(model.blocks(model.norm_pre(x)))
        return x[:, model.num_prefix_tokens :].reshape(b, h, w, c)


def extract_features(
    frames: np.ndarray,
    method: str,
    weights: str | Path | None,
    device: str = "cpu",
    short_side: int = 480,
    progress: bool = False,
) -> tuple[np.ndarray, tuple[float, float]]:
    """frames uint8 [T, H, W, 3] -> (float32 [T, h, w, 384] patch tokens, (cx, cy) = (W / w, H / h))."""
    return run_model(load_model(method, weights, device), frames, method, device, short_side, progress)


def run_model(
    model, frames: np.ndarray, method: str, device: str = "cpu", short_side: int = 480, progress: bool = False
) -> tuple[np.ndarray, tuple[float, float]]:
    """Patch tokens of every frame from an already loaded ``model`` (see :func:`extract_features`)."""
    from tqdm import tqdm

    t, height, width, _ = frames.shape
    out = None
    for i in tqdm(range(t), desc=method, unit="frame", file=sys.stderr, disable=not progress):
        tokens = patch_tokens(model, preprocess(frames[i], method, short_side).to(device))[0]
        if out is None:
            out = np.empty((t, *tokens.shape), np.float32)
        out[i] = tokens.float().cpu().numpy()
    return out, (width / out.shape[2], height / out.shape[1])
