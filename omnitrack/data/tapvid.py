"""TAP-Vid ground truth: reading the official pickles, sampling queries, splitting per video.

Accepted inputs of :func:`load_tapvid`:

- DAVIS: one pickle holding ``{name: {"video", "points", "occluded"}}``;
- RGB-Stacking: one pickle holding a list of such dicts, named ``f"{i:04d}"``;
- Kinetics: shard pickles ``*_of_0010.pkl`` (lists, or dicts whose values are taken in order, as in
  the reference loader), given as a directory, a glob pattern or one shard; videos are named
  ``f"{shard}_{i:04d}"`` where ``shard`` is the file name before ``_of_`` (e.g. ``0003_0017``).
  Frames may be a list of JPEG byte strings.

Each example is validated: ``video`` uint8 [T, H, W, 3] with T ≥ 2, ``points`` float [N, T, 2] as
(x, y) normalised to [0, 1], ``occluded`` bool [N, T]. Visible points may exceed [0, 1] by at most
``RANGE_TOLERANCE`` (then they are clipped); occluded points' positions are never scored and are
clipped silently. NaN anywhere in ``points`` is an error. Tracks never visible are dropped with a
warning.
"""

from __future__ import annotations

import glob as globlib
import pickle
import re
import warnings
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError
from omnitrack.io import save_npz_if_changed

RANGE_TOLERANCE = 0.01  # normalised units (2.56 px of the 256×256 frame)
SHARD_GLOB = "*_of_0010.pkl"
QUERY_MODES = ("first", "strided")


def _shard_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob(SHARD_GLOB))
        if not files:
            raise InputError(path, f"is a directory without TAP-Vid Kinetics shards ({SHARD_GLOB})")
        return files
    files = sorted(Path(p) for p in globlib.glob(str(path)))
    if not files:
        raise InputError(path, "does not exist (no file or directory matches it)")
    return files


def _read_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception as e:  # unpickling garbage can raise almost any exception type
        raise InputError(path, f"is not a readable pickle ({type(e).__name__}: {e})") from None


def _decode_jpegs(path: Path, name: str, frames) -> np.ndarray:
    import cv2

    out = []
    for i, buf in enumerate(frames):
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(path, f"video '{name}': frame {i} is not a decodable JPEG")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if len({f.shape for f in out}) > 1:
        raise InputError(path, f"video '{name}': JPEG frames have different sizes {sorted({f.shape for f in out})}")
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def _validate(path: Path, name: str, example) -> dict[str, np.ndarray]:
    """-> {"video" uint8 [T,H,W,3], "points" float32 [N,T,2], "occluded" bool [N,T]} or InputError."""

    def fail(problem: str):
        raise InputError(path, f"video '{name}': {problem}")

    if not isinstance(example, dict):
        fail(f"is a {type(example).__name__}, expected a dict with keys 'video', 'points', 'occluded'")
    missing = [k for k in ("video", "points", "occluded") if k not in example]
    if missing:
        fail(f"has no key {missing} (found {sorted(map(str, example))})")

    video = example["video"]
    if isinstance(video, (list, tuple, np.ndarray)) and len(video) and isinstance(video[0], (bytes, np.bytes_)):
        video = _decode_jpegs(path, name, video)
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        fail(f"'video' is {video.dtype} {video.shape}, expected uint8 [T, H, W, 3]")
    t = video.shape[0]
    if t < 2:
        fail(f"has {t} frame(s); tracking needs at least 2")

    points = np.asarray(example["points"])
    if points.dtype.kind not in "fiu" or points.ndim != 3 or points.shape[-1] != 2:
        fail(f"'points' is {points.dtype} {points.shape}, expected float [N, T, 2] (x, y)")
    occluded = np.asarray(example["occluded"])
    if occluded.ndim != 2 or occluded.dtype.kind not in "biu" or not np.isin(occluded, (0, 1)).all():
        fail(f"'occluded' is {occluded.dtype} {occluded.shape}, expected bool [N, T]")
    occluded = occluded.astype(bool)
    if occluded.shape != points.shape[:2]:
        fail(f"'occluded' {occluded.shape} does not match 'points' {points.shape[:2]} (N, T)")
    if points.shape[1] != t:
        fail(f"'points' has {points.shape[1]} frames but 'video' has {t}")

    points = points.astype(np.float32)
    if np.isnan(points).any():
        bad = np.argwhere(np.isnan(points).any(-1))[0]
        fail(f"'points' contains NaN (first at track {bad[0]}, frame {bad[1]})")
    vis = points[~occluded]
    if vis.size:
        lo, hi = float(vis.min()), float(vis.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            fail(
                f"visible 'points' span [{lo:.4g}, {hi:.4g}], expected coordinates normalised to [0, 1] "
                f"(pixel coordinates must be divided by the frame width and height)"
            )
    points = np.clip(points, 0.0, 1.0)

    never_visible = occluded.all(axis=1)
    if never_visible.any():
        warnings.warn(
            f"{path}: video '{name}': dropped {int(never_visible.sum())} of {len(occluded)} "
            f"tracks that are occluded in every frame",
            stacklevel=3,
        )
        points, occluded = points[~never_visible], occluded[~never_visible]
    if len(points) == 0:
        fail("has no track that is visible in any frame")
    return {"video": video, "points": points, "occluded": occluded}


def _examples(path: Path, data, shard: str | None) -> dict[str, object]:
    if shard is not None:
        items = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise InputError(path, f"holds a {type(data).__name__}, expected a list of videos (a Kinetics shard)")
        return {f"{shard}_{i:04d}": ex for i, ex in enumerate(items)}
    if isinstance(data, dict):
        return {str(k): v for k, v in data.items()}
    if isinstance(data, list):
        return {f"{i:04d}": ex for i, ex in enumerate(data)}
    raise InputError(
        path, f"holds a {type(data).__name__}, expected a dict (DAVIS) or a list (RGB-Stacking, Kinetics) of videos"
    )


def load_tapvid(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a TAP-Vid pickle, a directory of Kinetics shards or a glob of shard files.

    -> {name: {"video": uint8 [T,H,W,3], "points": float32 [N,T,2] (x, y) in [0, 1],
    "occluded": bool [N,T]}}, validated (see the module docstring). Raises InputError.
    """
    path = Path(path)
    single = path.is_file()
    files = [path] if single else _shard_files(path)
    out: dict[str, dict[str, np.ndarray]] = {}
    for file in files:
        match = re.fullmatch(r"(.+)_of_\d+\.pkl", file.name)
        shard = match.group(1) if match and (not single or file.name.endswith("_of_0010.pkl")) else None
        if not single and shard is None:
            raise InputError(file, f"is not a Kinetics shard (expected a name like 0000{SHARD_GLOB[1:]})")
        data = _read_pickle(file)
        for name, example in _examples(file, data, shard).items():
            if name in out:
                raise InputError(file, f"video '{name}' appears in more than one shard")
            out[name] = _validate(file, name, example)
    if not out:
        raise InputError(path, "holds no video")
    return out


def sample_queries(
    points: np.ndarray, occluded: np.ndarray, query_mode: str, stride: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TAP-Vid query sampling, identical to the reference samplers.

    points [N, T, 2] (x, y) in any unit; occluded bool [N, T].
    -> query_points float32 [Q, 3] (t, y, x), gt_tracks float32 [Q, T, 2], gt_occluded bool [Q, T].

    Follows google-deepmind/tapnet ``tapnet/tapvid/evaluation_datasets.py``
    (``sample_queries_strided`` / ``sample_queries_first``):

    - 'strided': frames t = 0, stride, 2·stride, … in the outer loop; at each, one query per
      track visible at t, in track order (so queries are grouped by frame, not by track);
      each query carries its track's full ground truth.
    - 'first': one query per track at its first visible frame, in track order; tracks never
      visible are skipped.
    """
    points = np.asarray(points, dtype=np.float32)
    occluded = np.asarray(occluded, dtype=bool)
    if points.ndim != 3 or points.shape[-1] != 2 or occluded.shape != points.shape[:2]:
        raise ValueError(f"points {points.shape} / occluded {occluded.shape}: expected [N, T, 2] and [N, T]")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n, t = occluded.shape
    if query_mode == "strided":
        frames, tracks = [], []
        for f in range(0, t, stride):
            visible = np.flatnonzero(~occluded[:, f])
            frames.append(np.full(len(visible), f))
            tracks.append(visible)
        frame_idx = np.concatenate(frames).astype(np.int64) if frames else np.zeros(0, np.int64)
        track_idx = np.concatenate(tracks).astype(np.int64) if tracks else np.zeros(0, np.int64)
    elif query_mode == "first":
        track_idx = np.flatnonzero((~occluded).any(axis=1))
        frame_idx = np.argmax(~occluded[track_idx], axis=1)
    else:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
    xy = points[track_idx, frame_idx]
    query_points = np.stack([frame_idx.astype(np.float32), xy[:, 1], xy[:, 0]], axis=-1).reshape(-1, 3)
    return query_points, points[track_idx].reshape(-1, t, 2), occluded[track_idx].reshape(-1, t)


def split_tapvid(path: str | Path, out_dir: str | Path, subset: list[str] | None = None) -> dict[str, str]:
    """Write ``out_dir/<id>.npz`` (``video``, ``points``, ``occluded``; docs/formats.md ``source/``)
    for every video of the TAP-Vid input ``path`` (or only those in ``subset``, by name or id).

    -> {id: name}, sorted by id; the id is :func:`omnitrack.data.names.video_id` of the name (a name
    with a dot or a space gets ``_`` in its place). A file that already holds the same arrays is left
    untouched (its modification time too), so widening ``subset`` or re-reading an unchanged pickle
    never makes the other videos' stages rerun.
    """
    from omnitrack.data.names import video_id

    data = load_tapvid(path)
    ids: dict[str, str] = {}
    for name in sorted(data):
        vid = video_id(name)
        if vid in ids:
            raise InputError(
                path,
                f"videos '{ids[vid]}' and '{name}' would both be video '{vid}' (names are mapped "
                f"to ids made of letters, digits, '_' and '-')",
                hint="rename one of them in the file",
            )
        ids[vid] = name
    if subset is None:
        wanted = set(ids)
    else:
        by_name = {n: v for v, n in ids.items()}
        unknown = [n for n in subset if n not in by_name and n not in ids]
        if unknown:
            raise InputError(path, f"has no video {sorted(set(unknown))}", hint=f"available: {', '.join(sorted(data))}")
        wanted = {by_name.get(n, n) for n in subset}
    out_dir = Path(out_dir)
    for vid in sorted(wanted):
        ex = data[ids[vid]]
        save_npz_if_changed(out_dir / f"{vid}.npz", video=ex["video"], points=ex["points"], occluded=ex["occluded"])
    return {vid: ids[vid] for vid in sorted(wanted)}
