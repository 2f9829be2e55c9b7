"""OpenCV's DIS optical flow: a weight-free fallback when no RAFT checkpoint is at hand.

Preset MEDIUM (the default): denser patches and variational refinement on more scales than
ULTRAFAST/FAST, more accurate for a few ms more per pair (BENCHMARKS.md §4). Still about 100x cheaper
than RAFT on CPU, and far less accurate on large motions; the masks discard what does not cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

PRESETS = ("ultrafast", "fast", "medium")


def _gray(frame: np.ndarray):
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def make_dis(preset: str = "medium"):
    import cv2

    if preset not in PRESETS:
        raise ValueError(f"DIS preset must be one of {PRESETS}, got {preset!r}")
    return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))


def dis_flow(frame_i: np.ndarray, frame_j: np.ndarray, dis=None) -> np.ndarray:
    """Flow from frame i to frame j: uint8 [H, W, 3] RGB each -> float32 [H, W, 2] (dx, dy) pixels."""
    dis = dis or make_dis()
    return dis.calc(_gray(frame_i), _gray(frame_j), None).astype(np.float32, copy=False)


def dis_pair_flows(
    frames: np.ndarray, pairs: Sequence[tuple[int, int]], preset: str = "medium"
) -> Iterator[tuple[int, np.ndarray]]:
    """(k, float32 [H, W, 2]) for every pairs[k]; frames uint8 [T, H, W, 3]."""
    dis = make_dis(preset)
    gray: dict[int, np.ndarray] = {}
    for k, (i, j) in enumerate(pairs):
        for f in (i, j):
            if f not in gray:
                gray[f] = _gray(frames[f])
        yield k, dis.calc(gray[i], gray[j], None).astype(np.float32, copy=False)
