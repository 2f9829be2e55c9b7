"""User videos: finding them in a folder, decoding them to RGB frames, choosing a working size.

A video is either a file (mp4, avi, mov, mkv, webm; decoded with OpenCV's FFmpeg backend) or a
sub-folder of images (png, jpg, jpeg, bmp, tif, tiff) read in natural order (``2.png`` before
``10.png``). Frames come out as uint8 [T, H, W, 3] RGB: grayscale is replicated to three channels,
alpha is dropped, 16-bit images are scaled to 8 bits (value · 255 / 65535, rounded).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DOWNSCALE_WARN_FACTOR = 2.0  # warn when the longer side shrinks by more than this


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")),
                  key=_natural_key)


def list_videos(folder: str | Path) -> dict[str, Path]:
    """{name: path} of the video files and image sub-folders in ``folder``, sorted by name.

    A file's name is its stem; a sub-folder's is its own name. Sub-folders without images and
    hidden entries are ignored. Raises InputError if the folder is missing, holds no video, or two
    entries share a name (e.g. ``a.mp4`` and ``a/``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "is not a directory" if folder.exists() else "does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            name = p.stem
        elif p.is_dir() and _image_files(p):
            name = p.name
        else:
            continue
        if name in found:
            raise InputError(folder, f"'{found[name].name}' and '{p.name}' would both be video '{name}'",
                             hint="rename one of them")
        found[name] = p
    if not found:
        raise InputError(folder, f"holds no video file ({', '.join(VIDEO_EXTS)}) and no folder of images")
    return dict(sorted(found.items()))


def _to_rgb8(path: Path, img: np.ndarray) -> np.ndarray:
    """An image as read by cv2.imread(IMREAD_UNCHANGED) (BGR[A], gray, 8/16 bit) -> uint8 [H, W, 3] RGB."""
    import cv2

    if img.dtype == np.uint16:
        img = np.rint(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(path, f"has pixel type {img.dtype}; expected 8- or 16-bit integers")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise InputError(path, f"has an unsupported image layout {img.shape}")


def _read_folder(folder: Path, max_frames: int | None) -> np.ndarray:
    import cv2

    files = _image_files(folder)
    if max_frames is not None:
        files = files[:max_frames]
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise InputError(f, "cannot be decoded as an image (unreadable or corrupt)")
        img = _to_rgb8(f, img)
        if frames and img.shape != frames[0].shape:
            raise InputError(folder, f"frame '{f.name}' is {img.shape[1]}x{img.shape[0]} but the first frame "
                                     f"'{files[0].name}' is {frames[0].shape[1]}x{frames[0].shape[0]}",
                             hint="all frames of a video must have the same size")
        frames.append(img)
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _read_file(path: Path, max_frames: int | None) -> tuple[np.ndarray, float | None]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(path, "cannot be opened as a video (unreadable, corrupt or unsupported codec)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(_to_rgb8(path, img))
    finally:
        cap.release()
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
    return (np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)), fps


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float | None]:
    """Decode a video file or a folder of images.

    -> frames uint8 [T, H, W, 3] RGB (the first ``max_frames`` if given), fps (None for an image
    folder or when the container does not say). Raises InputError naming the path when it is
    missing, unreadable or corrupt, holds fewer than 2 frames, or (folder) mixes frame sizes.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2 (tracking needs two frames), got {max_frames}")
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_dir():
        frames, fps = _read_folder(path, max_frames), None
    elif path.suffix.lower() in VIDEO_EXTS:
        frames, fps = _read_file(path, max_frames)
    else:
        raise InputError(path, f"is neither a video file ({', '.join(VIDEO_EXTS)}) nor a folder of images")
    if len(frames) < 2:
        what = "no decodable frame" if len(frames) == 0 else "only 1 frame"
        raise InputError(path, f"has {what}; tracking needs at least 2 frames")
    return frames, fps


def resize_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, height, width, 3]; area averaging when shrinking, bilinear otherwise."""
    import cv2

    t, h, w = frames.shape[:3]
    if (w, h) == (width, height):
        return frames
    interp = cv2.INTER_AREA if width <= w and height <= h else cv2.INTER_LINEAR
    out = np.empty((t, height, width, frames.shape[3]), frames.dtype)
    for i in range(t):
        out[i] = cv2.resize(frames[i], (width, height), interpolation=interp).reshape(out.shape[1:])
    return out


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the aspect ratio of width×height, the longer side at most ``max_side`` (never
    enlarged), both rounded to the nearest multiple of 8 (at least 8)."""
    if width < 1 or height < 1 or max_side < 8:
        raise ValueError(f"need width, height >= 1 and max_side >= 8, got {width}, {height}, {max_side}")
    scale = min(1.0, max_side / max(width, height))

    def round8(v: float) -> int:
        r = max(8, int(round(v / 8)) * 8)
        return r - 8 if r > max_side and r > 8 else r

    return round8(width * scale), round8(height * scale)


def plan_working_size(path: str | Path, width: int, height: int, max_side: int) -> tuple[int, int]:
    """:func:`working_size`, warning (naming ``path``) when the video is shrunk by more than
    ``DOWNSCALE_WARN_FACTOR``: fine detail is lost and tracks are only as precise as the working size."""
    w, h = working_size(width, height, max_side)
    if max(width, height) > DOWNSCALE_WARN_FACTOR * max(w, h):
        warnings.warn(f"{path}: {width}x{height} is downscaled to {w}x{h} (factor {max(width, height) / max(w, h):.1f}); "
                      f"tracks are computed at the working size, raise max_side to keep more detail",
                      stacklevel=2)
    return w, h
