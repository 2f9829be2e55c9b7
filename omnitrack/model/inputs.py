"""Reading and validating the inputs of a fit (formats of docs/formats.md).

- frames: an array uint8 [T, H, W, 3] or a frames npz (``omnitrack.data.frames``);
- masks dir: a flow store (flow.npy, meta.json) + mask.npy uint8 [P, H, W] + counts.npy uint16 [T, H, W];
- matches npz: frames int [M, 2], points float [M, 4] (x_a, y_a, x_b, y_b), score [M];
- depth: float [T, H, W] (an array, or an .npy / .npz with key ``depth``).
Nothing here reads a whole flow store: flows stay memory-mapped.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from omnitrack.errors import CacheError, InputError
from omnitrack.io import load_npz

log = logging.getLogger("omnitrack")


def load_video(frames_or_path) -> tuple[np.ndarray, str]:
    """-> frames uint8 [T, H, W, 3], a name for messages."""
    if isinstance(frames_or_path, np.ndarray):
        frames, name = frames_or_path, "frames (array argument)"
    else:
        from omnitrack.data.frames import load_frames

        frames, _ = load_frames(frames_or_path)
        name = str(frames_or_path)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(name, f"frames have shape {frames.shape}, expected [T, H, W, 3]")
    if frames.shape[0] < 2:
        raise InputError(name, f"the video has {frames.shape[0]} frame(s); tracking needs at least 2")
    return frames, name


def identity(frames: np.ndarray) -> dict:
    """What identifies a video in a checkpoint: its shape and a hash of every frame's pixels on a
    4-pixel lattice (cheap, and any changed frame changes it)."""
    h = hashlib.sha1(np.ascontiguousarray(frames[:, ::4, ::4]).tobytes())
    return {"shape": [int(s) for s in frames.shape], "hash": h.hexdigest()}


def load_masks(masks_dir, num_frames: int, height: int, width: int):
    """-> (FlowStore, mask memmap uint8 [P, H, W], counts memmap uint16 [T, H, W]) of the fitted video."""
    from omnitrack.flow.consistency import load_masks as read_masks

    if masks_dir is None:
        raise InputError(
            "masks_dir",
            "no masks directory was given; the nvp fit needs the masked flows",
            "run the masks stage first and pass its output directory",
        )
    store, mask, counts = read_masks(masks_dir)
    got = (store.num_frames, store.height, store.width)
    if got != (num_frames, height, width):
        raise CacheError(
            masks_dir,
            f"holds flows of a {got[0]}-frame {got[2]}x{got[1]} video, "
            f"the frames are {num_frames} frames of {width}x{height}",
        )
    return store, mask, counts


def load_matches(path, num_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """-> (frames int64 [M, 2], points float32 [M, 4]) or None (no path, or an empty table: no match loss)."""
    from omnitrack.features.matching import load_matches as read_matches

    if path is None:
        return None
    frames, points, _ = read_matches(path)
    if len(frames) == 0:
        log.warning("%s holds no matches; fitting without the long-term match loss", path)
        return None
    if frames.max() >= num_frames:
        raise CacheError(path, f"match frame ids reach {frames.max()}, the video has {num_frames} frames")
    return frames.astype(np.int64), points


def load_depth(depth, num_frames: int, height: int, width: int) -> np.ndarray | None:
    """-> float32 [T, H, W] (validated: finite and positive) or None."""
    if depth is None:
        return None
    if isinstance(depth, np.ndarray):
        name, arr = "depth (array argument)", depth
    else:
        name = str(depth)
        if str(depth).endswith(".npz"):
            arr = load_npz(depth, {"depth": (3, "f")})["depth"]
        else:
            try:
                arr = np.load(depth, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InputError(name, f"cannot be read as a .npy array ({e})") from None
    if arr.shape != (num_frames, height, width):
        raise InputError(name, f"depth maps have shape {arr.shape}, expected {(num_frames, height, width)}")
    arr = np.asarray(arr, np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        frames = np.unique(np.nonzero(bad)[0])
        raise InputError(
            name, f"depth maps contain NaN or inf (in frames {frames[:5].tolist()})", "recompute the depth stage"
        )
    if (arr <= 0).any():
        raise InputError(name, f"depth maps contain values <= 0 (min {arr.min():.3g}); depth must be positive")
    return arr
