"""The pipeline's stages as plain functions: paths in, paths out.

Each Snakemake rule calls one of these through a thin script in workflow_scripts/; they are just as
usable from Python. Every output is written atomically by the functions they call. Cached inputs are
checked against each other (frame count and size) before use: a mismatch is a CacheError naming the
stale file and how to recompute it. Running out of memory inside a stage becomes :class:`OutOfMemory`
naming the setting to lower (:data:`MEMORY_SETTINGS`).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from omnitrack.data.frames import load_frames, load_meta, save_frames
from omnitrack.errors import CacheError, InputError, OutOfMemory
from omnitrack.io import atomic_path, load_npz, read_json, save_npz, write_json

log = logging.getLogger("omnitrack")

RESOLUTION = "the working resolution (datasets.<name>.size, or max_side / max_frames for videos)"
MEMORY_SETTINGS = {
    "frames": "datasets.<name>.max_side / max_frames (videos) or datasets.<name>.size",
    "flow": "flow.raft.batch_size (RAFT pairs per batch), then " + RESOLUTION,
    "features": RESOLUTION + ", or raise features.cell (sift)",
    "masks": RESOLUTION,
    "matches": "raise features.cell (fewer descriptors per frame), or " + RESOLUTION,
    "track_chain": "grid.spacing (fewer grid queries), or " + RESOLUTION,
    "depth": "depth.input_size / depth.batch_size (depth_anything_v2), or " + RESOLUTION,
    "optimise": "nvp.num_points / nvp.num_pairs (flow points sampled per step; also match_points / match_pairs)",
    "track_nvp": "nvp.track_batch ((query, frame) evaluations per chunk)",
}
_OOM_TEXT = ("out of memory", "can't allocate memory", "insufficient memory", "failed to allocate")


def is_out_of_memory(e: BaseException) -> bool:
    """MemoryError (numpy), torch's CUDA/CPU allocator errors (RuntimeError) and OpenCV's cv2.error."""
    if isinstance(e, MemoryError):
        return True
    text = str(e).lower()
    return (isinstance(e, RuntimeError) or type(e).__module__ == "cv2") and any(t in text for t in _OOM_TEXT)


@contextlib.contextmanager
def memory_hint(path: str | Path, stage: str, setting: str | None = None):
    """Turn an out-of-memory error raised inside the block into :class:`OutOfMemory` naming ``setting``."""
    try:
        yield
    except OutOfMemory:
        raise
    except Exception as e:
        if is_out_of_memory(e):
            raise OutOfMemory(path, stage, setting or MEMORY_SETTINGS[stage], e) from e
        raise


def _check_frames_match(path, what: str, shape, meta: dict, frames_path) -> None:
    """Raise CacheError naming ``path`` if its (T, H, W) ``shape`` differs from the frames file's."""
    want = (meta["num_frames"], meta["height"], meta["width"])
    if tuple(int(v) for v in shape) != want:
        raise CacheError(path, f"{what} {tuple(int(v) for v in shape)} (T, H, W) do not match {frames_path} "
                               f"{want}: it was computed from other frames")


def render_synthetic(spec: dict, out_path: str | Path) -> None:
    """Generate the synthetic benchmark (TAP-Vid pickle form) from its config ``spec``."""
    from omnitrack.data.synthetic import write_dataset

    write_dataset(out_path, num_videos=spec["num_videos"], seed=spec["seed"],
                  num_frames=spec["num_frames"], size=tuple(spec["size"]))


def prepare_dataset(name: str, spec: dict, input_path: str | Path, manifest_path: str | Path,
                    source_dir: str | Path) -> dict:
    """Split a dataset into per-video sources and write its manifest (the video list)."""
    kind = spec["kind"]
    with atomic_path(source_dir) as tmp:
        tmp.mkdir(parents=True)
        if kind in ("synthetic", "tapvid"):
            from omnitrack.data.tapvid import split_tapvid

            names = split_tapvid(input_path, tmp, subset=spec.get("videos"))
            sources = {n: str(Path(source_dir) / f"{n}.npz") for n in names}
        else:
            from omnitrack.data.videos import list_videos

            found = list_videos(spec["path"])
            if not found:
                raise InputError(spec["path"], "holds no videos (mp4, avi, mov, mkv, webm) or frame folders")
            names, sources = sorted(found), {n: str(p) for n, p in found.items()}
    manifest = {"dataset": name, "kind": kind, "videos": names, "sources": sources,
                "has_gt": kind != "videos"}
    write_json(manifest_path, manifest)
    log.info("%s: %d videos", name, len(names))
    return manifest


def make_frames(manifest_path: str | Path, video: str, out_path: str | Path, spec: dict) -> None:
    """Decode or load one video and resize it to the dataset's working resolution."""
    manifest = read_json(manifest_path)
    source = manifest["sources"][video]
    with memory_hint(source, "frames"):
        _make_frames(manifest, video, source, out_path, spec)


def _make_frames(manifest: dict, video: str, source, out_path, spec: dict) -> None:
    from omnitrack.data.videos import plan_working_size, read_video, resize_frames

    if manifest["kind"] == "videos":
        frames, fps = read_video(source, max_frames=spec.get("max_frames"))
        width, height = plan_working_size(source, frames.shape[2], frames.shape[1], spec["max_side"])
    else:
        frames, fps = load_npz(source, {"video": (4, "u")})["video"], None
        width, height = spec.get("size") or (frames.shape[2], frames.shape[1])
    source_size = [int(frames.shape[2]), int(frames.shape[1])]
    if (frames.shape[2], frames.shape[1]) != (width, height):
        frames = resize_frames(frames, width, height)
    params = {k: spec[k] for k in ("size", "max_side", "max_frames") if k in spec}
    save_frames(out_path, frames, {"video": video, "source": str(source), "source_size": source_size,
                                   "fps": fps, "has_gt": manifest["has_gt"], "params": params})
    log.info("%s: %d frames %dx%d (source %dx%d)", video, len(frames), width, height, *source_size)


def estimate_flow(frames_path: str | Path, out_dir: str | Path, cfg: dict, device: str = "auto") -> None:
    from omnitrack.flow.compute import compute_flows

    frames, _ = load_frames(frames_path)
    setting = MEMORY_SETTINGS["flow"] if cfg["method"] == "raft" else RESOLUTION
    with memory_hint(frames_path, "flow", setting):
        compute_flows(frames, out_dir, method=cfg["method"], window=cfg["window"], raft=cfg.get("raft"),
                      device=device)


def extract_features(frames_path: str | Path, out_path: str | Path, spec: dict, cell: int,
                     device: str = "auto") -> None:
    from omnitrack.features.descriptors import compute_features, save_features

    frames, _ = load_frames(frames_path)
    with memory_hint(frames_path, "features"):
        desc, cell_xy = compute_features(frames, spec["method"], weights=spec.get("weights"), cell=cell,
                                         device=device)
    save_features(out_path, desc, cell_xy, spec["method"])


def build_masks(frames_path: str | Path, flow_dir: str | Path, features_path: str | Path | None,
                out_dir: str | Path, cfg: dict) -> None:
    """The masks stage; ``cfg``: the config's ``masks`` section (keyword arguments of compute_masks)."""
    from omnitrack.features.descriptors import load_features
    from omnitrack.flow.consistency import compute_masks
    from omnitrack.flow.store import FlowStore

    frames, meta = load_frames(frames_path)
    store = FlowStore(flow_dir)
    _check_frames_match(flow_dir, "flows of frames", (store.num_frames, store.height, store.width), meta, frames_path)
    features = None
    if features_path:
        desc, cell, _ = load_features(features_path)
        if len(desc) != meta["num_frames"]:
            raise CacheError(features_path, f"holds descriptors of {len(desc)} frames, {frames_path} has "
                                            f"{meta['num_frames']}: it was computed from other frames")
        features = {"descriptors": desc, "cell": cell}
    with memory_hint(frames_path, "masks"):
        compute_masks(frames, store, out_dir, features=features, **cfg)


def find_matches(frames_path: str | Path, features_path: str | Path, out_path: str | Path, cfg: dict) -> None:
    from omnitrack.features.descriptors import load_features
    from omnitrack.features.matching import long_term_matches, match_defaults, save_matches

    meta = load_meta(frames_path)
    desc, cell, method = load_features(features_path)
    if len(desc) != meta["num_frames"]:
        raise CacheError(features_path, f"holds descriptors of {len(desc)} frames, {frames_path} has "
                                        f"{meta['num_frames']}: it was computed from other frames")
    with memory_hint(frames_path, "matches"):
        frames, points, score = long_term_matches(desc, cell, (meta["width"], meta["height"]),
                                                  **{**match_defaults(method), **cfg})
    save_matches(out_path, frames, points, score)
    log.info("%d long-term matches", len(frames))


def save_prediction(out_path: str | Path, query_points: np.ndarray, tracks: np.ndarray, occluded: np.ndarray,
                    width: int, height: int) -> None:
    """Write the prediction format every method shares (docs/formats.md)."""
    save_npz(out_path, query_points=query_points.astype(np.float32), tracks=tracks.astype(np.float32),
             occluded=occluded.astype(bool), size=np.array([width, height], np.int32))


def load_prediction(path: str | Path) -> dict[str, np.ndarray]:
    return load_npz(path, {"query_points": (2, "f"), "tracks": (3, "f"), "occluded": (2, "b"),
                           "size": (1, "i")})


def track_chain(frames_path, masks_dir, matches_path, manifest_path, video: str, mode: str,
                out_path, cfg: dict, grid: dict) -> None:
    """The flow-chaining baseline for one video and query mode."""
    from omnitrack.features.matching import load_matches
    from omnitrack.flow.consistency import load_masks
    from omnitrack.queries import video_queries
    from omnitrack.track.chain import track_queries

    meta = load_meta(frames_path)
    flows, mask, _ = load_masks(masks_dir)
    _check_frames_match(masks_dir, "flows of frames", (flows.num_frames, flows.height, flows.width), meta, frames_path)
    frames_ab, points, _ = load_matches(matches_path)
    if len(frames_ab) and int(frames_ab.max()) >= meta["num_frames"]:
        raise CacheError(matches_path, f"matches frame {int(frames_ab.max())} but {frames_path} has "
                                       f"{meta['num_frames']} frames: it was computed from other frames")
    queries = video_queries(read_json(manifest_path), video, mode, meta["num_frames"], meta["width"],
                            meta["height"], grid)
    with memory_hint(frames_path, "track_chain"):
        tracks, occluded = track_queries(flows, mask, queries, (frames_ab, points), cfg["match_radius"])
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def estimate_depth(frames_path, masks_dir, out_path, cfg: dict, device: str = "auto") -> np.ndarray:
    """The depth stage: the depth the nvp fit starts from (omnitrack.depth.stage, by ``cfg["method"]``),
    written to ``out_path`` (npz: ``depth`` float32 [T, H, W], ``meta`` a JSON string: method, settings,
    version). ``cfg``: the config's ``depth`` section; ``masks_dir`` is needed by layers and motion.

    depth_anything_v2 loads its weights before anything else, so a missing or foreign file fails at once
    (InputError naming the file and where to download it).
    """
    import json

    from omnitrack.depth.stage import NEEDS_MASKS, compute_depth, settings, used_settings
    from omnitrack.versions import STAGE_VERSIONS

    cfg = settings(cfg)
    method = cfg["method"]
    model = None
    if method == "depth_anything_v2":
        from omnitrack.depth.anything import load_depth_anything

        device = _torch_device(device)
        model = load_depth_anything(cfg["weights"], cfg["encoder"], device)
    frames, meta = load_frames(frames_path)
    masks = None
    if method in NEEDS_MASKS:
        from omnitrack.flow.consistency import load_masks

        if masks_dir is None:
            raise InputError("depth", f"depth.method {method} needs the masks stage's output directory")
        store, mask, _ = load_masks(masks_dir)
        _check_frames_match(masks_dir, "flows of frames", (store.num_frames, store.height, store.width), meta,
                            frames_path)
        masks = (store, mask)
    with memory_hint(frames_path, "depth"):
        depth = compute_depth(frames, cfg, masks=masks, device=device, model=model)
    info = {"method": method, "settings": used_settings(cfg), "version": STAGE_VERSIONS["depth"],
            "units": "nvp fit depth: far scene 1.0, nearer smaller"}
    save_npz(out_path, depth=depth.astype(np.float32), meta=np.array(json.dumps(info)))
    log.info("%s: depth by %s, range [%.3f, %.3f], %d distinct values", meta["video"], method, depth.min(),
             depth.max(), min(len(np.unique(depth)), 10**6))
    return depth


def load_depth_file(path) -> tuple[np.ndarray, dict]:
    """A depth stage file -> (depth float32 [T, H, W], meta dict)."""
    import json

    z = load_npz(path, {"depth": (3, "f"), "meta": (0, "U")})
    try:
        meta = json.loads(str(z["meta"]))
    except ValueError as e:
        raise CacheError(path, f"its 'meta' is not JSON ({e})") from None
    return z["depth"].astype(np.float32), meta


def _torch_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def optimise(frames_path, masks_dir, matches_path, out_path, loss_path, nvp: dict, depth_path=None) -> None:
    """Fit the nvp model to one video (resumes from ``<out_path>.partial`` after an interruption).

    depth_path: the depth stage's file (the fit's start); None: the fit's own start (nvp.motion_init_sep).
    """
    from omnitrack.model import fit_video

    depth = None
    if depth_path is not None:
        depth, _ = load_depth_file(depth_path)
        _check_frames_match(depth_path, "depth maps", depth.shape, load_meta(frames_path), frames_path)
    with memory_hint(frames_path, "optimise"):
        fit_video(frames_path, masks_dir, matches_path, out_path, nvp, loss_path=loss_path, depth_path=depth)


def track_nvp(model_path, frames_path, manifest_path, video: str, mode: str, out_path, grid: dict,
              device: str = "auto", inference: dict | None = None) -> None:
    """Track one video's query points with its fitted nvp model (``inference``: values of the nvp keys
    only inference reads, e.g. occlusion_margin, that replace the model's)."""
    from omnitrack.model import predict
    from omnitrack.queries import video_queries

    meta = load_meta(frames_path)
    queries = video_queries(read_json(manifest_path), video, mode, meta["num_frames"], meta["width"],
                            meta["height"], grid)
    with memory_hint(model_path, "track_nvp"):
        tracks, occluded = predict(model_path, queries, device=device, inference=inference)
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def score(tracks, occluded, truth, mode: str, width: int, height: int) -> dict:
    """TAP-Vid metrics and temporal coherence (None without three consecutive visible frames) of a
    prediction, in 256x256 space.

    tracks float [N, T, 2] and occluded bool [N, T] in working pixels (width x height); truth: the
    (query_points, gt_tracks, gt_occluded) of :func:`omnitrack.queries.benchmark_queries` for ``mode``.
    """
    from omnitrack.evaluation.metrics import compute_tapvid_metrics, temporal_coherence

    queries, gt_tracks, gt_occluded = truth
    to256 = np.array([256.0 / width, 256.0 / height], np.float32)
    q256 = queries * np.array([1.0, 256.0 / height, 256.0 / width], np.float32)
    gt256, pred256 = (gt_tracks * to256)[None], (np.asarray(tracks) * to256)[None]
    metrics = compute_tapvid_metrics(q256[None], gt_occluded[None], gt256, np.asarray(occluded)[None], pred256, mode)
    result = {k: float(v[0]) for k, v in metrics.items()}
    tc = temporal_coherence(gt256, gt_occluded[None], pred256)[0]
    result["temporal_coherence"] = float(tc) if np.isfinite(tc) else None
    result["num_queries"] = int(len(queries))
    return result


def evaluate(prediction_path, manifest_path, video: str, mode: str, out_path) -> dict:
    """:func:`score` of one prediction file, written to ``out_path``."""
    from omnitrack.queries import benchmark_queries

    pred = load_prediction(prediction_path)
    width, height = (int(v) for v in pred["size"])
    truth = benchmark_queries(read_json(manifest_path)["sources"][video], mode, width, height)
    queries = truth[0]
    if pred["query_points"].shape != queries.shape or not np.allclose(pred["query_points"], queries, atol=1e-3):
        raise InputError(prediction_path, f"was made for other query points than the {mode} queries of "
                                          f"{video} ({pred['query_points'].shape} vs {queries.shape})",
                         hint="rerun its track rule")
    result = score(pred["tracks"], pred["occluded"], truth, mode, width, height)
    write_json(out_path, result)
    log.info("%s/%s: AJ %.3f  delta %.3f  OA %.3f", video, mode, result["average_jaccard"],
             result["average_pts_within_thresh"], result["occlusion_accuracy"])
    return result
