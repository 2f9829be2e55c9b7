"""User videos: finding them in a folder, decoding them to RGB frames, choosing a working size.

A video is either a file (mp4, avi, mov, mkv, webm; decoded with OpenCV's FFmpeg backend) or a
sub-folder of images (png, jpg/jpeg, bmp, tif/tiff). Frames come out as uint8 [T, H, W, 3] RGB:
grayscale is replicated to three channels, alpha is dropped, 16-bit images are scaled to 8 bits
(value · 255 / 65535, rounded).

What is accepted, and what is an error (docs/errors.md, "Videos"):

- a frame folder holds one numbered sequence: frames are ordered by the number in their names
  (the last run of digits: ``2.png`` before ``10.png``, ``frame_0009`` before ``frame_0010``); names
  without any number are ordered by name. Two names with the same number (``1.png`` and
  ``01.png``), names that follow different patterns (``left_1.png`` and ``right_1.png``) or
  numbered and unnumbered names in one folder are errors. Numbers that skip values are read as
  consecutive frames, with a :class:`FrameGapWarning` naming the folder and the missing numbers.
- images of one type per folder (``.jpg`` and ``.jpeg`` are one type, so are ``.tif`` and ``.tiff``).
  A folder holding two types (frames ``00001.jpg`` beside masks ``00001.png``) is an error naming
  the folder and the types, unless the dataset says which type the frames are (``frame_ext: jpg``):
  then only images of that type are frames and the others are ignored.
- an image that cannot be decoded, or a JPEG that is truncated (no end-of-image marker and a
  strict decoder stops early; OpenCV would fill the rest with grey), is an error naming the file
  and its frame index.
- a video file that decodes fewer frames than its container declares is an error (cut short or
  corrupt) naming the frame where decoding stopped; one frame short is a warning (containers that
  estimate their frame count from the duration are often off by one). A frame that fails to
  decode while later frames decode, and a frame whose size differs from the first frame's
  (resolution change inside the video) are errors naming the frame.
- a broken symbolic link is an error naming the link and its target.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np

from omnitrack.data.names import display_name, video_id
from omnitrack.errors import InputError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff", ".tiff": "tiff"}
IMAGE_EXTS = tuple(IMAGE_TYPES)
DOWNSCALE_WARN_FACTOR = 2.0  # warn when the longer side shrinks by more than this
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


class FrameGapWarning(UserWarning):
    """The frame numbers of a frame folder skip values (frames missing from the sequence)."""


class FrameCountWarning(UserWarning):
    """A video file decodes one frame fewer than its container declares."""


def _show(path) -> str:
    return display_name(str(path))


def _natural_key(path: Path):
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", path.name)]


def _is_broken_link(p: Path) -> bool:
    return p.is_symlink() and not p.exists()


def broken_link_error(p: Path) -> InputError:
    return InputError(
        _show(p),
        f"is a broken symbolic link (it points to {_show(os.readlink(p))}, which does not exist)",
        hint="fix the link, or remove it",
    )


def image_type(frame_ext: str | None) -> str | None:
    """'jpg', '.JPG', 'jpeg' -> 'jpeg'; None -> None."""
    if frame_ext is None:
        return None
    ext = "." + frame_ext.lower().lstrip(".")
    if ext not in IMAGE_TYPES:
        raise ValueError(f"frame_ext must be one of {sorted({e[1:] for e in IMAGE_EXTS})}, got {frame_ext!r}")
    return IMAGE_TYPES[ext]


def _images(folder: Path, kind: str | None = None) -> list[Path]:
    """Image files of ``folder`` (not hidden; broken links included), of type ``kind`` if given."""
    out = []
    for p in folder.iterdir():
        t = IMAGE_TYPES.get(p.suffix.lower())
        if t is None or p.name.startswith(".") or (kind is not None and t != kind):
            continue
        if p.is_file() or _is_broken_link(p):
            out.append(p)
    return sorted(out, key=_natural_key)


def _image_files(folder: Path, frame_ext: str | None = None) -> list[Path]:
    return _images(folder, image_type(frame_ext))


def frame_files(folder: str | Path, frame_ext: str | None = None) -> list[Path]:
    """The frame images of a frame folder in frame order (see the module docstring for the rules).

    Raises InputError naming the folder for two image types (without ``frame_ext``), ambiguous or
    mixed numbering; warns (:class:`FrameGapWarning`) when numbers skip values.
    """
    folder = Path(folder)
    files = _image_files(folder, frame_ext)
    if frame_ext is None:
        by_type: dict[str, list[Path]] = {}
        for f in files:
            by_type.setdefault(IMAGE_TYPES[f.suffix.lower()], []).append(f)
        if len(by_type) > 1:
            counts = ", ".join(
                f"{len(v)} {k.upper()} ({', '.join(sorted({p.suffix for p in v}))})" for k, v in sorted(by_type.items())
            )
            raise InputError(
                _show(folder),
                f"holds images of {len(by_type)} types: {counts}; a frame folder must hold "
                f"the frames of one video only",
                hint="if the others are masks or annotations, set `frame_ext:` in the dataset to the "
                "frames' extension (e.g. frame_ext: jpg) and the others are ignored, or move them "
                "out of the folder",
            )
    if not files:
        return files
    parsed = [(_NUMBERED.match(f.stem), f) for f in files]
    unnumbered = [f for m, f in parsed if m is None]
    if len(unnumbered) == len(files):
        return files  # no numbers at all: name order
    if unnumbered:
        numbered = next(f for m, f in parsed if m is not None)
        raise InputError(
            _show(folder),
            f"mixes numbered and unnumbered image names ('{_show(numbered.name)}', "
            f"'{_show(unnumbered[0].name)}'): the frame order is ambiguous",
            hint="keep only the numbered frames in the folder",
        )
    patterns: dict[tuple[str, str], list[Path]] = {}
    for m, f in parsed:
        patterns.setdefault((m.group(1).lower(), m.group(3).lower()), []).append(f)
    if len(patterns) > 1:
        desc = ", ".join(f"'{_show(p)}<n>{_show(s)}' ({len(v)} files)" for (p, s), v in sorted(patterns.items()))
        raise InputError(
            _show(folder),
            f"holds images named in {len(patterns)} patterns: {desc}; the frame order is ambiguous",
            hint="keep one numbered sequence per folder",
        )
    by_number: dict[int, Path] = {}
    for m, f in parsed:
        n = int(m.group(2))
        if n in by_number:
            a, b = sorted([by_number[n].name, f.name])
            raise InputError(
                _show(folder),
                f"'{_show(a)}' and '{_show(b)}' are both frame {n} (mixed zero padding): the frame order is ambiguous",
                hint="rename them so each number appears once",
            )
        by_number[n] = f
    numbers = sorted(by_number)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        warnings.warn(
            FrameGapWarning(
                f"{_show(folder)}: frame numbers {numbers[0]}..{numbers[-1]} skip {len(missing)} value(s) (missing: "
                f"{shown}); the {len(numbers)} frames are read as consecutive frames"
            ),
            stacklevel=2,
        )
    return [by_number[n] for n in numbers]


def video_name(path: Path) -> str:
    """A video's name: a file's stem, a folder's own name."""
    return path.stem if path.suffix.lower() in VIDEO_EXTS and not path.is_dir() else path.name


def check_dataset_path(path: str | Path, frame_ext: str | None = None) -> Path:
    """The folder of a ``videos`` dataset, or InputError saying what to write instead.

    A missing path, a broken link, a single video file or a frame folder given as ``path`` each get a
    message naming the path and the ``path:`` to write.
    """
    path = Path(path)
    if _is_broken_link(path):
        raise broken_link_error(path)
    if not path.exists():
        raise InputError(
            _show(path), "does not exist", hint="`path:` of a videos dataset is a folder of videos and frame folders"
        )
    parent = path.resolve().parent
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTS:
            raise InputError(
                _show(path),
                "is a video file, but `path:` of a videos dataset is the folder that holds the videos",
                hint=f"write `path: {_show(parent)}` to track every video in it "
                f"(this one becomes video '{video_id(path.stem)}')",
            )
        raise InputError(
            _show(path),
            "is a file, but `path:` of a videos dataset is a folder of videos (.mp4, ...) and frame folders",
        )
    images = (
        _image_files(path, frame_ext)
        if frame_ext
        else [p for p in path.iterdir() if p.suffix.lower() in IMAGE_TYPES and not p.name.startswith(".")]
    )
    if images and not _entries(path, frame_ext):
        raise InputError(
            _show(path),
            f"holds {len(images)} images directly: it is one video's frame folder, but "
            f"`path:` of a videos dataset is the folder that holds frame folders and videos",
            hint=f"write `path: {_show(parent)}` (this folder becomes video '{video_id(path.name)}'), "
            f"or move the images into a sub-folder",
        )
    return path


def _entries(folder: Path, frame_ext: str | None) -> list[Path]:
    """Video files, frame folders and broken links (named like videos) of ``folder``, by name."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if _is_broken_link(p):
            if p.suffix.lower() in VIDEO_EXTS or not p.suffix:
                out.append(p)  # reported by the video's frames job, not hidden
        elif p.is_file() and p.suffix.lower() in VIDEO_EXTS:
            out.append(p)
        elif p.is_dir() and _image_files(p, frame_ext):
            out.append(p)
    return out


def list_videos(folder: str | Path, frame_ext: str | None = None) -> dict[str, Path]:
    """{id: path} of the video files and image sub-folders in ``folder``, sorted by id.

    A file's name is its stem, a sub-folder's is its own name; the id is :func:`omnitrack.data.names.video_id`
    of the name (``clip.v2.mp4`` -> ``clip_v2``). Sub-folders without images (of type ``frame_ext`` if
    given) and hidden entries are ignored; a broken link named like a video is listed (its frames job
    reports it). Raises InputError if the folder is missing, is a video file or a frame folder itself
    (:func:`check_dataset_path`), holds no video, or two entries share an id (e.g. ``a.mp4`` and ``a/``).
    """
    folder = check_dataset_path(folder, frame_ext)
    found: dict[str, Path] = {}
    for p in _entries(folder, frame_ext):
        vid = video_id(video_name(p))
        if vid in found:
            a, b = sorted([found[vid].name, p.name])
            raise InputError(
                _show(folder), f"'{_show(a)}' and '{_show(b)}' would both be video '{vid}'", hint="rename one of them"
            )
        found[vid] = p
    if not found:
        raise InputError(_show(folder), f"holds no video file ({', '.join(VIDEO_EXTS)}) and no folder of images")
    loose = _image_files(folder, frame_ext)
    if loose:
        warnings.warn(
            f"{_show(folder)}: ignored {len(loose)} image(s) lying directly in the dataset folder (e.g. "
            f"'{_show(loose[0].name)}'): a video's frames must be in a sub-folder of their own",
            stacklevel=2,
        )
    return dict(sorted(found.items()))


def source_stamp(path: str | Path, frame_ext: str | None = None) -> str:
    """A digest of what a video's source is on disk (names, sizes and modification times of its file
    or frame images): it changes when the video changes, so the frames stage reruns."""
    path = Path(path)
    h = hashlib.sha1()
    try:
        files = [path] if not path.is_dir() else _image_files(path, frame_ext)
        for f in files:
            st = f.stat()
            h.update(os.fsencode(f.name) + f":{st.st_size}:{st.st_mtime_ns};".encode())
    except OSError:
        return "unreadable"
    return h.hexdigest()[:16]


def _to_rgb8(path: Path, img: np.ndarray) -> np.ndarray:
    """An image as read by cv2.imread(IMREAD_UNCHANGED) (BGR[A], gray, 8/16 bit) -> uint8 [H, W, 3] RGB."""
    import cv2

    if img.dtype == np.uint16:
        img = np.rint(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(_show(path), f"has pixel type {img.dtype}; expected 8- or 16-bit integers")
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise InputError(_show(path), f"has an unsupported image layout {img.shape}")


def jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG's data ends before its image does (OpenCV would decode the rest as grey)."""
    if data.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
        return False
    from PIL import Image  # no end-of-image marker at the end: trailing bytes, or truncated? a strict decoder says

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except OSError:
        return True
    return False


def read_image(path: Path, index: int) -> np.ndarray:
    """One frame image -> uint8 [H, W, 3] RGB, or InputError naming the file and its frame ``index``."""
    import cv2

    if _is_broken_link(path):
        raise broken_link_error(path)
    data = path.read_bytes()
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind == "jpeg" and jpeg_is_truncated(data):
        raise InputError(
            _show(path),
            f"is truncated (frame {index}: the JPEG data ends before the image does)",
            hint="re-extract or re-download the frame",
        )
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise InputError(
            _show(path), f"cannot be decoded as an image (frame {index}; unreadable, truncated or corrupt)"
        )
    return _to_rgb8(path, img)


def _read_folder(folder: Path, max_frames: int | None, frame_ext: str | None = None) -> np.ndarray:
    files = frame_files(folder, frame_ext)
    if max_frames is not None:
        files = files[:max_frames]
    frames = []
    for i, f in enumerate(files):
        img = read_image(f, i)
        if frames and img.shape != frames[0].shape:
            raise InputError(
                _show(folder),
                f"frame '{_show(f.name)}' is {img.shape[1]}x{img.shape[0]} but the first frame "
                f"'{_show(files[0].name)}' is {frames[0].shape[1]}x{frames[0].shape[0]}",
                hint="all frames of a video must have the same size",
            )
        frames.append(img)
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _open_capture(path: Path):
    """cv2.VideoCapture of ``path``; a name that is not UTF-8 is opened through /proc/self/fd."""
    import cv2

    try:
        str(path).encode("utf-8")
        return cv2.VideoCapture(str(path)), None
    except UnicodeEncodeError:
        fd = os.open(os.fsencode(path), os.O_RDONLY)
        return cv2.VideoCapture(f"/proc/self/fd/{fd}"), fd


def _read_file(path: Path, max_frames: int | None) -> tuple[np.ndarray, float | None]:
    import cv2

    cap, fd = _open_capture(path)
    try:
        if not cap.isOpened():
            raise InputError(_show(path), "cannot be opened as a video (unreadable, corrupt or unsupported codec)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        wanted = declared if max_frames is None else min(declared, max_frames)
        frames = []
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            img = _to_rgb8(path, img)
            if frames and img.shape != frames[0].shape:
                raise InputError(
                    _show(path),
                    f"frame {len(frames)} is {img.shape[1]}x{img.shape[0]} but frame 0 is "
                    f"{frames[0].shape[1]}x{frames[0].shape[0]}: the resolution changes "
                    f"inside the video",
                    hint=f"re-encode it at one size, e.g. ffmpeg -i <in> -vf scale={frames[0].shape[1]}:"
                    f"{frames[0].shape[0]} <out>.mp4",
                )
            frames.append(img)
        k = len(frames)
        if declared > 0 and k < wanted:
            if any(cap.grab() for _ in range(3)):
                raise InputError(
                    _show(path),
                    f"frame {k} cannot be decoded, but later frames can: the file is corrupt at frame {k}",
                    hint="re-encode or re-download it",
                )
            if wanted - k > 1:
                raise InputError(
                    _show(path),
                    f"is cut short: it declares {declared} frames but decoding stops after frame {k - 1} ({k} frames)",
                    hint="the file is truncated or corrupt; re-download or re-encode it",
                )
            warnings.warn(
                FrameCountWarning(
                    f"{_show(path)}: declares {declared} frames but {k} decode; using {k} "
                    f"(the last frame is missing, or the container's count is an estimate)"
                ),
                stacklevel=3,
            )
    finally:
        cap.release()
        if fd is not None:
            os.close(fd)
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
    return (np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)), fps


def read_video(
    path: str | Path, max_frames: int | None = None, frame_ext: str | None = None
) -> tuple[np.ndarray, float | None]:
    """Decode a video file or a folder of images.

    -> frames uint8 [T, H, W, 3] RGB (the first ``max_frames`` if given), fps (None for an image
    folder or when the container does not say). Raises InputError naming the path (and the frame)
    when it is missing, a broken link, unreadable or corrupt, cut short, holds fewer than 2 frames,
    changes size, or (folder) has ambiguous frame names (module docstring).
    """
    path = Path(path)
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"max_frames must be at least 2 (tracking needs two frames), got {max_frames}")
    if _is_broken_link(path):
        raise broken_link_error(path)
    if not path.exists():
        raise InputError(_show(path), "does not exist")
    if path.is_dir():
        frames, fps = _read_folder(path, max_frames, frame_ext), None
    elif path.suffix.lower() in VIDEO_EXTS:
        frames, fps = _read_file(path, max_frames)
    else:
        raise InputError(_show(path), f"is neither a video file ({', '.join(VIDEO_EXTS)}) nor a folder of images")
    if len(frames) < 2:
        what = "no decodable frame" if len(frames) == 0 else "only 1 frame"
        raise InputError(_show(path), f"has {what}; tracking needs at least 2 frames")
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
        warnings.warn(
            f"{path}: {width}x{height} is downscaled to {w}x{h} (factor {max(width, height) / max(w, h):.1f}); "
            f"tracks are computed at the working size, raise max_side to keep more detail",
            stacklevel=2,
        )
    return w, h
