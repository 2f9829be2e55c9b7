"""Dense per-frame descriptors: the weight-free dense SIFT, the common entry point, and their file.

Grid convention (docs/formats.md corner convention): a descriptor map [T, h, w, C] comes with its
cell size ``(cx, cy)`` in pixels of the working resolution, and descriptor (r, c) describes the
neighbourhood of the point ((c + 0.5) * cx, (r + 0.5) * cy). For dense SIFT the grid starts at the
top-left corner, cx = cy = ``cell`` and the last W mod cell columns (H mod cell rows) are not covered;
for RAFT's feature encoder (cells of 8 pixels from the top-left corner) cx = cy = 8 and the last cell
may reach past the image; for DINO/DINOv2 the resized image maps exactly onto the patch grid, so
(cx, cy) = (W / w, H / h).

File ``features/<video>.<purpose>.npz``: ``descriptors`` float16 [T, h, w, C] L2-normalised,
``cell`` float32 [2] (cx, cy), ``method`` str.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError, InputError
from omnitrack.io import load_npz, save_npz

METHODS = ("sift", "raft", "dino", "dinov2")
SIFT_SUPPORT = 4  # a SIFT descriptor's 4x4 histogram grid spans this many cells


def dense_sift(
    frames: np.ndarray, cell: int = 8, support: float = SIFT_SUPPORT, progress: bool = False
) -> tuple[np.ndarray, tuple[float, float]]:
    """Centred RootSIFT on a grid: uint8 [T, H, W, 3] -> (float32 [T, H // cell, W // cell, 128], (cell, cell)).

    One upright (angle 0) SIFT keypoint per cell, at the cell centre, with a fixed size chosen so that
    the descriptor's 4x4 histogram grid spans ``support`` cells (OpenCV: span = 4 bins x 3 x size / 2).
    Each descriptor is RootSIFT-normalised (L1, square root). The frame is reflection-padded by the
    descriptor radius first: OpenCV leaves the out-of-image part of a border descriptor empty, which
    makes all border cells of a side alike and lets them match each other across frames whatever
    their content. A cell with no gradient at all (SIFT returns zeros) gets the constant vector, so
    flat regions are all alike and the matcher's distinctiveness filter rejects them.

    Centring: RootSIFT vectors are non-negative, so any two have cosine ~0.5-0.9 and the cosine
    thresholds of the pipeline (masks: > 0; matches: 0.55 / 0.75, tuned on DINO features) would be
    meaningless. The video's mean RootSIFT vector (over all frames and cells) is subtracted and
    every vector L2-normalised again; unrelated cells then have cosine ~0 (measured on TAP-Vid
    DAVIS: median 0.0, 90 % quantile 0.23-0.34), like DINO tokens. The descriptors of a frame
    therefore depend (only through that mean) on the other frames of the video.
    """
    import cv2
    from tqdm import tqdm

    frames = _check_frames(frames)
    t, height, width, _ = frames.shape
    cell = int(cell)
    h, w = height // cell, width // cell
    if cell < 1 or h < 1 or w < 1:
        raise ValueError(f"cell {cell} does not fit in a {width}x{height} frame")
    size = support * cell / 6.0
    pad = int(np.ceil(0.9 * support * cell)) + 2  # OpenCV's descriptor radius is 10.6 x size / 2 = 0.88 x span
    # OpenCV keypoint coordinates put pixel centres on integers: project point (x, y) is at
    # (x - 0.5, y - 0.5), plus the padding.
    ys, xs = np.meshgrid(
        (np.arange(h) + 0.5) * cell - 0.5 + pad, (np.arange(w) + 0.5) * cell - 0.5 + pad, indexing="ij"
    )
    keypoints = [cv2.KeyPoint(float(x), float(y), size, 0.0) for x, y in zip(xs.ravel(), ys.ravel())]
    sift = cv2.SIFT_create()
    out = np.empty((t, h, w, 128), np.float32)
    for i in tqdm(range(t), desc="sift", unit="frame", file=sys.stderr, disable=not progress):
        gray = cv2.copyMakeBorder(
            cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY), pad, pad, pad, pad, cv2.BORDER_REFLECT_101
        )
        kept, desc = sift.compute(gray, keypoints)
        if desc is None or len(kept) != h * w:
            raise RuntimeError(f"OpenCV SIFT returned {0 if desc is None else len(kept)} of {h * w} grid descriptors")
        out[i] = _root_sift(desc).reshape(h, w, 128)
    out -= out.reshape(-1, 128).mean(axis=0)
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    out = np.where(norm > 1e-6, out / np.maximum(norm, 1e-6), np.float32(128**-0.5))
    return out, (float(cell), float(cell))


def _root_sift(desc: np.ndarray) -> np.ndarray:
    """[N, 128] raw SIFT -> RootSIFT (unit L2 norm); all-zero rows become the constant unit vector."""
    desc = np.maximum(desc.astype(np.float32), 0)
    l1 = desc.sum(axis=1, keepdims=True)
    root = np.sqrt(desc / np.maximum(l1, 1e-12))
    root[l1[:, 0] <= 0] = 1.0
    return root / np.linalg.norm(root, axis=1, keepdims=True)


def compute_features(
    frames: np.ndarray,
    method: str,
    weights: str | Path | None = None,
    cell: int = 8,
    device: str = "auto",
    progress: bool = True,
    short_side: int = 480,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Dense descriptors of every frame.

    frames uint8 [T, H, W, 3]; method "sift" (weight-free; ``cell`` pixels per descriptor), "raft"
    (the feature encoder of a RAFT checkpoint ``weights``, 8-pixel cells: learned for correspondence,
    it tells right from wrong long-gap flows best, BENCHMARKS.md §6), "dino"
    (DINO ViT-S/16, shorter side resized to ``short_side``) or "dinov2" (DINOv2 ViT-S/14) — the
    last two need ``weights`` (official checkpoint, see omnitrack.features.dino) and ignore ``cell``.
    -> (descriptors float16 [T, h, w, C] L2-normalised, (cx, cy) float pixels per cell);
    descriptor (r, c) is centred at ((c + 0.5) * cx, (r + 0.5) * cy).
    """
    if method == "sift":
        desc, cellxy = dense_sift(frames, cell=cell, progress=progress)
    elif method in ("dino", "dinov2"):
        from omnitrack.features.dino import extract_features
        from omnitrack.flow.compute import resolve_device

        desc, cellxy = extract_features(
            frames, method, weights, device=resolve_device(device), short_side=short_side, progress=progress
        )
    elif method == "raft":
        from omnitrack.flow.compute import resolve_device
        from omnitrack.flow.raft import encode_frames, load_raft_encoder

        if weights is None:
            from omnitrack.flow.raft import HINT

            raise InputError("features.<purpose>.weights", "method raft needs a RAFT checkpoint", HINT)
        dev = resolve_device(device)
        desc = encode_frames(load_raft_encoder(weights, dev), frames, device=dev, progress=progress)
        cellxy = (8.0, 8.0)
    else:
        raise ValueError(f"feature method must be one of {METHODS}, got {method!r}")
    desc = desc / np.maximum(np.linalg.norm(desc, axis=-1, keepdims=True), 1e-12)
    return desc.astype(np.float16), cellxy


def save_features(path: str | Path, descriptors: np.ndarray, cell, method: str) -> None:
    """Write descriptors float [T, h, w, C] (stored float16), cell (cx, cy) and the method name."""
    descriptors = np.asarray(descriptors)
    cell = np.asarray(cell, np.float32)
    if descriptors.ndim != 4:
        raise ValueError(f"descriptors must be [T, h, w, C], got shape {descriptors.shape}")
    if cell.shape != (2,) or not np.all(cell > 0):
        raise ValueError(f"cell must be two positive numbers (cx, cy), got {cell}")
    if method not in METHODS:
        raise ValueError(f"feature method must be one of {METHODS}, got {method!r}")
    save_npz(path, descriptors=descriptors.astype(np.float16), cell=cell, method=np.array(method))


def load_features(path: str | Path) -> tuple[np.ndarray, tuple[float, float], str]:
    """-> (descriptors float16 [T, h, w, C], (cx, cy), method); CacheError if the file does not match."""
    z = load_npz(path, {"descriptors": (4, "f"), "cell": (1, "f"), "method": (0, "U")})
    desc, cell, method = z["descriptors"], z["cell"], str(z["method"])
    if desc.dtype != np.float16:
        raise CacheError(path, f"descriptors are {desc.dtype}, expected float16")
    if cell.shape != (2,) or not np.all(np.isfinite(cell)) or not np.all(cell > 0):
        raise CacheError(path, f"cell must be two positive numbers (cx, cy), got {cell.tolist()}")
    if method not in METHODS:
        raise CacheError(path, f"unknown feature method {method!r} (expected one of {METHODS})")
    if 0 in desc.shape:
        raise CacheError(path, f"descriptors are empty {desc.shape}")
    norms = np.linalg.norm(desc.astype(np.float32), axis=-1)
    if not np.all(np.abs(norms - 1) < 1e-2):
        raise CacheError(path, "descriptors are not L2-normalised (or hold NaN/inf)")
    return desc, (float(cell[0]), float(cell[1])), method


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return frames
