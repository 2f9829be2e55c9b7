"""Depth Anything V2 inference: loading a release file, the official preprocessing, images and videos.

Weights (read from a local file only; nothing is downloaded): the official release files on Hugging Face,
- vits: depth_anything_v2_vits.pth (depth-anything/Depth-Anything-V2-Small, Apache-2.0)
- vitb: depth_anything_v2_vitb.pth (depth-anything/Depth-Anything-V2-Base, CC-BY-NC-4.0)
- vitl: depth_anything_v2_vitl.pth (depth-anything/Depth-Anything-V2-Large, CC-BY-NC-4.0)
(:data:`WEIGHTS_URLS`). They load into :class:`omnitrack.depth.model.DepthAnythingV2` strictly.
The network runs in float32 whatever the file's dtype (the released files and the reference
outputs in ../shared/data/depth are float32 computations).

Preprocessing is the official ``infer_image``'s, step by step (:func:`preprocess`): the image as cv2
reads it (BGR uint8) -> RGB float64 in [0, 1] -> resize keeping the aspect ratio so that both sides
are >= ``input_size`` (the scale of the shorter side), each side then rounded to the nearest multiple
of 14 (numpy's round-half-to-even; rounded up instead when the nearest multiple falls below
``input_size``), bicubic (cv2.INTER_CUBIC, on float64) -> ImageNet mean/std -> float32.
The network's output is resized back to the image's (H, W) bilinearly with align_corners=True.
Video frames in the pipeline are RGB: :func:`infer_video` takes RGB and skips the BGR->RGB step
(the same pixels reach the network).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError

WEIGHTS_URLS = {
    "vits": "https://huggingface.co/depth-anything/Depth-Anything-V2-Small/resolve/main/depth_anything_v2_vits.pth",
    "vitb": "https://huggingface.co/depth-anything/Depth-Anything-V2-Base/resolve/main/depth_anything_v2_vitb.pth",
    "vitl": "https://huggingface.co/depth-anything/Depth-Anything-V2-Large/resolve/main/depth_anything_v2_vitl.pth",
}
LICENCES = {"vits": "Apache-2.0", "vitb": "CC-BY-NC-4.0", "vitl": "CC-BY-NC-4.0"}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MULTIPLE = 14


def download_hint(encoder: str) -> str:
    """How to obtain the real release file of ``encoder``."""
    if encoder not in WEIGHTS_URLS:
        return f"the encoders are {sorted(WEIGHTS_URLS)}"
    name = Path(WEIGHTS_URLS[encoder]).name
    return (
        f"download {name} from {WEIGHTS_URLS[encoder]} (licence {LICENCES[encoder]}) "
        f"and pass its path (depth.weights in config.yaml, --weights on the command line)"
    )


def _encoder_of(state: dict) -> str | None:
    """The encoder a Depth Anything V2 state dict was made for, from its class token width."""
    from omnitrack.depth.model import CONFIGS

    tok = state.get("pretrained.cls_token")
    width = tok.shape[-1] if hasattr(tok, "shape") else None
    return next((name for name, c in CONFIGS.items() if c.embed_dim == width), None)


def _unwrap(state: dict) -> dict:
    """The model's state dict from a release file (a plain state dict), also inside {'model': ...}
    or {'state_dict': ...} and with a DistributedDataParallel 'module.' prefix."""
    for key in ("model", "state_dict"):
        if not any(k.startswith("pretrained.") for k in state) and isinstance(state.get(key), dict):
            state = state[key]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_depth_anything(path: str | Path | None, encoder: str = "vits", device: str = "cpu"):
    """The Depth Anything V2 model of ``encoder`` with the release file ``path`` loaded strictly,
    float32, eval mode, on ``device``.

    Missing file, unreadable (truncated, corrupt) file, or a file of another architecture (another
    encoder, another model) -> :class:`InputError` naming the file and how to get the real one.
    """
    if encoder not in WEIGHTS_URLS:
        raise InputError(
            f"config: depth encoder {encoder!r}",
            "unknown Depth Anything V2 encoder",
            f"use one of {sorted(WEIGHTS_URLS)}",
        )
    hint = download_hint(encoder)
    if path is None or not Path(path).is_file():
        raise InputError(
            path if path is not None else "config: depth.weights",
            f"Depth Anything V2 {encoder} weights file not found",
            hint,
        )
    import torch

    from omnitrack.depth.model import DepthAnythingV2

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a truncated or foreign file
        raise InputError(
            path, f"cannot be read as a PyTorch checkpoint ({type(e).__name__}: {str(e).strip()[:300]})", hint
        ) from None
    if not isinstance(state, dict):
        raise InputError(path, f"holds a {type(state).__name__}, expected a Depth Anything V2 state dict", hint)
    state = _unwrap(state)
    found = _encoder_of(state)
    if found is not None and found != encoder:
        raise InputError(
            path,
            f"is a Depth Anything V2 {found} checkpoint, not {encoder}",
            f"pass --encoder {found} (depth.encoder: {found}), or {hint}",
        )
    with torch.device("meta"):
        model = DepthAnythingV2(encoder)
    try:
        floats = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(floats, strict=True, assign=True)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        lines = " ".join(str(e).strip().splitlines()[:3])[:400]
        raise InputError(path, f"is not a Depth Anything V2 {encoder} checkpoint: {lines}", hint) from None
    return model.to(device).eval()


def network_size(height: int, width: int, input_size: int) -> tuple[int, int]:
    """(H', W') the network sees for an image of (height, width): the official ``Resize`` with
    keep_aspect_ratio, resize_method 'lower_bound', ensure_multiple_of 14 (see the module docstring)."""
    if input_size < MULTIPLE:
        raise ValueError(f"input_size must be at least {MULTIPLE}, got {input_size}")
    scale = max(input_size / height, input_size / width)

    def constrain(x: float) -> int:
        y = int(np.round(x / MULTIPLE) * MULTIPLE)
        if y < input_size:
            y = int(np.ceil(x / MULTIPLE) * MULTIPLE)
        return y

    return constrain(scale * height), constrain(scale * width)


def preprocess(images, input_size: int, bgr: bool = False):
    """uint8 [H, W, 3] or [B, H, W, 3] (RGB, or BGR when ``bgr``) -> float32 tensor [B, 3, H', W']."""
    import cv2
    import torch

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [H, W, 3] or [B, H, W, 3], got shape {images.shape}")
    height, width = images.shape[1:3]
    h, w = network_size(height, width, input_size)
    mean, std = np.array(MEAN), np.array(STD)
    out = np.empty((len(images), 3, h, w), np.float32)
    for k, image in enumerate(images):
        x = image[..., ::-1] if bgr else image
        x = np.ascontiguousarray(x).astype(np.float64) / 255.0
        x = cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)
        out[k] = ((x - mean) / std).transpose(2, 0, 1)
    return torch.from_numpy(out)


def _forward(model, batch, height: int, width: int, device: str):
    """Network on a preprocessed batch, output resized back to (height, width) -> float32 numpy [B, H, W]."""
    import torch
    import torch.nn.functional as F

    with torch.inference_mode():
        raw = model(batch.to(device))
        depth = F.interpolate(raw[:, None], (height, width), mode="bilinear", align_corners=True)[:, 0]
        return depth.float().cpu().numpy()


def infer_image(model, image_bgr: np.ndarray, input_size: int = 518, device: str = "cpu") -> np.ndarray:
    """The official ``infer_image``: a BGR uint8 image [H, W, 3] (as cv2 reads it) -> relative
    inverse depth float32 [H, W] (larger = nearer, >= 0, arbitrary scale and shift)."""
    height, width = image_bgr.shape[:2]
    return _forward(model, preprocess(image_bgr, input_size, bgr=True), height, width, device)[0]


def infer_video(
    model, frames: np.ndarray, input_size: int = 518, device: str = "cpu", batch_size: int = 4, progress: bool = True
) -> np.ndarray:
    """Relative inverse depth of every frame: uint8 RGB [T, H, W, 3] (the pipeline's frames) -> float32
    [T, H, W], frame by frame identical to :func:`infer_image` on the frame converted to BGR.

    ``batch_size`` frames go through the network at once; tqdm progress on stderr when ``progress``.
    """
    from tqdm import tqdm

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, height, width = frames.shape[:3]
    batch_size = max(1, int(batch_size))
    out = np.empty((t, height, width), np.float32)
    with tqdm(total=t, desc=f"depth ({model.encoder})", unit="frame", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, t, batch_size):
            chunk = frames[start : start + batch_size]
            out[start : start + len(chunk)] = _forward(model, preprocess(chunk, input_size), height, width, device)
            bar.update(len(chunk))
    return out


def video_depth(
    frames: np.ndarray,
    weights: str | Path,
    encoder: str = "vits",
    input_size: int = 518,
    device: str = "cpu",
    batch_size: int = 4,
    progress: bool = True,
) -> np.ndarray:
    """Load the release file ``weights`` and run :func:`infer_video`: uint8 RGB [T, H, W, 3] ->
    relative inverse depth float32 [T, H, W]. Convert with :func:`omnitrack.depth.convert.fit_depth`."""
    model = load_depth_anything(weights, encoder, device)
    return infer_video(model, frames, input_size, device, batch_size, progress)
