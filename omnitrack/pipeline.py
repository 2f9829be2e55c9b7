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

from omnitrack.data.frames import check_frames_match, load_frames, load_meta, save_frames
from omnitrack.depth.file import load_depth_file, save_depth_file
from omnitrack.errors import CacheError, InputError, OutOfMemory
from omnitrack.evaluation.metrics import score
from omnitrack.io import load_npz, read_json, write_json
from omnitrack.prediction import load_prediction, save_prediction

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


def render_synthetic(spec: dict, out_path: str | Path) -> None:
    """Generate the synthetic benchmark (TAP-Vid pickle form) from its config ``spec``."""
    from omnitrack.data.synthetic import write_dataset

    write_dataset(
        out_path,
        num_videos=spec["num_videos"],
        seed=spec["seed"],
        num_frames=spec["num_frames"],
        size=tuple(spec["size"]),
        parallax=float(spec.get("parallax", 0.0)),
    )


def source_record(manifest_path: str | Path, video: str, kind: str) -> Path:
    """A video's source record beside the manifest: ``source/<id>.npz`` (ground truth kinds: the video and
    its tracks) or ``source/<id>.json`` (``videos``: its name and path)."""
    return Path(manifest_path).parent / "source" / f"{video}.{'json' if kind == 'videos' else 'npz'}"


def prepare_dataset(name: str, spec: dict, input_path: str | Path, manifest_path: str | Path) -> dict:
    """List a dataset's videos: write one source record per video and the manifest (the video list).

    A record is rewritten only when its content changes (docs/formats.md), so its modification time
    moves only when that video's source does: the per-video stages depend on their own record, never on
    the manifest, and adding or removing a video (or widening a TAP-Vid ``videos:`` subset) reruns
    nothing of the other videos.
    """
    from omnitrack.io import write_json_if_changed

    kind = spec["kind"]
    source_dir = Path(manifest_path).parent / "source"
    if kind in ("synthetic", "tapvid"):
        from omnitrack.data.tapvid import split_tapvid

        names = split_tapvid(input_path, source_dir, subset=spec.get("videos"))
        sources = {v: str(source_record(manifest_path, v, kind)) for v in names}
    else:
        from omnitrack.data.videos import list_videos, video_name

        found = list_videos(spec["path"], spec.get("frame_ext"))
        names = {v: video_name(p) for v, p in found.items()}
        sources = {v: str(p) for v, p in found.items()}
        for v, p in found.items():
            write_json_if_changed(source_record(manifest_path, v, kind), {"video": v, "name": names[v], "path": str(p)})
    from omnitrack.data.names import display_name

    videos = sorted(names)
    manifest = {
        "dataset": name,
        "kind": kind,
        "videos": videos,
        "sources": sources,
        "names": {v: display_name(n) for v, n in names.items()},
        "has_gt": kind != "videos",
    }
    renamed = {v: n for v, n in manifest["names"].items() if n != v}
    if renamed:
        log.info(
            "%s: video ids differ from their names: %s",
            name,
            ", ".join(f"{n!r} -> {v}" for v, n in sorted(renamed.items())),
        )
    write_json(manifest_path, manifest)
    log.info("%s: %d videos", name, len(videos))
    return manifest


def read_source(record_path: str | Path) -> dict:
    """A ``videos`` source record: {"video", "name", "path"} (the path with its original bytes)."""
    return read_json(record_path)


def make_frames(record_path: str | Path, video: str, out_path: str | Path, spec: dict) -> None:
    """Decode or load one video (from its source record) and resize it to the dataset's working resolution."""
    record_path = Path(record_path)
    source = read_source(record_path)["path"] if record_path.suffix == ".json" else record_path
    with memory_hint(source, "frames"):
        _make_frames(record_path.suffix == ".npz", video, source, out_path, spec)


def _make_frames(has_gt: bool, video: str, source, out_path, spec: dict) -> None:
    from omnitrack.data.names import display_name
    from omnitrack.data.videos import plan_working_size, read_video, resize_frames

    if not has_gt:
        frames, fps = read_video(source, max_frames=spec.get("max_frames"), frame_ext=spec.get("frame_ext"))
        width, height = plan_working_size(display_name(str(source)), frames.shape[2], frames.shape[1], spec["max_side"])
    else:
        frames, fps = load_npz(source, {"video": (4, "u")})["video"], None
        width, height = spec.get("size") or (frames.shape[2], frames.shape[1])
    source_size = [int(frames.shape[2]), int(frames.shape[1])]
    if (frames.shape[2], frames.shape[1]) != (width, height):
        frames = resize_frames(frames, width, height)
    params = {k: spec[k] for k in ("size", "max_side", "max_frames") if k in spec}
    save_frames(
        out_path,
        frames,
        {
            "video": video,
            "source": display_name(str(source)),
            "source_size": source_size,
            "fps": fps,
            "has_gt": has_gt,
            "params": params,
        },
    )
    log.info("%s: %d frames %dx%d (source %dx%d)", video, len(frames), width, height, *source_size)


def estimate_flow(frames_path: str | Path, out_dir: str | Path, cfg: dict, device: str = "auto") -> None:
    from omnitrack.flow.compute import compute_flows

    frames, _ = load_frames(frames_path)
    setting = MEMORY_SETTINGS["flow"] if cfg["method"] == "raft" else RESOLUTION
    with memory_hint(frames_path, "flow", setting):
        compute_flows(
            frames,
            out_dir,
            method=cfg["method"],
            window=cfg["window"],
            raft=cfg.get("raft"),
            device=device,
            gaps=cfg.get("gaps"),
        )


def extract_features(
    frames_path: str | Path, out_path: str | Path, spec: dict, cell: int, device: str = "auto"
) -> None:
    from omnitrack.features.descriptors import compute_features, save_features

    frames, _ = load_frames(frames_path)
    with memory_hint(frames_path, "features"):
        desc, cell_xy = compute_features(frames, spec["method"], weights=spec.get("weights"), cell=cell, device=device)
    save_features(out_path, desc, cell_xy, spec["method"])


def build_masks(
    frames_path: str | Path, flow_dir: str | Path, features_path: str | Path | None, out_dir: str | Path, cfg: dict
) -> None:
    """The masks stage; ``cfg``: the config's ``masks`` section (keyword arguments of compute_masks)."""
    from omnitrack.features.descriptors import load_features
    from omnitrack.flow.consistency import compute_masks
    from omnitrack.flow.store import FlowStore

    frames, meta = load_frames(frames_path)
    store = FlowStore(flow_dir)
    check_frames_match(flow_dir, "flows of frames", (store.num_frames, store.height, store.width), meta, frames_path)
    features = None
    if features_path:
        desc, cell, _ = load_features(features_path)
        if len(desc) != meta["num_frames"]:
            raise CacheError(
                features_path,
                f"holds descriptors of {len(desc)} frames, {frames_path} has "
                f"{meta['num_frames']}: it was computed from other frames",
            )
        features = {"descriptors": desc, "cell": cell}
    with memory_hint(frames_path, "masks"):
        compute_masks(frames, store, out_dir, features=features, **cfg)


def find_matches(frames_path: str | Path, features_path: str | Path, out_path: str | Path, cfg: dict) -> None:
    from omnitrack.features.descriptors import load_features
    from omnitrack.features.matching import long_term_matches, match_defaults, save_matches

    meta = load_meta(frames_path)
    desc, cell, method = load_features(features_path)
    if len(desc) != meta["num_frames"]:
        raise CacheError(
            features_path,
            f"holds descriptors of {len(desc)} frames, {frames_path} has "
            f"{meta['num_frames']}: it was computed from other frames",
        )
    with memory_hint(frames_path, "matches"):
        frames, points, score = long_term_matches(
            desc, cell, (meta["width"], meta["height"]), **{**match_defaults(method), **cfg}
        )
    save_matches(out_path, frames, points, score)
    log.info("%d long-term matches", len(frames))


def track_chain(
    frames_path, masks_dir, matches_path, truth_path, video: str, mode: str, out_path, cfg: dict, grid: dict
) -> None:
    """The flow-chaining baseline for one video and query mode (``truth_path``: the video's source
    record with ground truth for the benchmark modes; None for mode ``grid``)."""
    from omnitrack.features.matching import load_matches
    from omnitrack.flow.chaining import track_queries
    from omnitrack.flow.consistency import load_masks
    from omnitrack.queries import video_queries

    meta = load_meta(frames_path)
    flows, mask, _ = load_masks(masks_dir)
    check_frames_match(masks_dir, "flows of frames", (flows.num_frames, flows.height, flows.width), meta, frames_path)
    frames_ab, points, _ = load_matches(matches_path)
    if len(frames_ab) and int(frames_ab.max()) >= meta["num_frames"]:
        raise CacheError(
            matches_path,
            f"matches frame {int(frames_ab.max())} but {frames_path} has "
            f"{meta['num_frames']} frames: it was computed from other frames",
        )
    queries = video_queries(truth_path, mode, meta["num_frames"], meta["width"], meta["height"], grid)
    with memory_hint(frames_path, "track_chain"):
        tracks, occluded = track_queries(flows, mask, queries, (frames_ab, points), cfg["match_radius"])
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def estimate_depth(
    frames_path, masks_dir, out_path, cfg: dict, device: str = "auto", version: int | None = None
) -> np.ndarray:
    """The depth stage: the depth the nvp fit starts from (omnitrack.depth.stage, by ``cfg["method"]``),
    written to ``out_path`` (npz: ``depth`` float32 [T, H, W], ``meta`` a JSON string: method, settings,
    version). ``cfg``: the config's ``depth`` section; ``masks_dir`` is needed by layers and motion;
    ``version``: the stage version recorded in ``meta`` (the workflow passes its own).

    depth_anything_v2 loads its weights before anything else, so a missing or foreign file fails at once
    (InputError naming the file and where to download it).
    """
    from omnitrack.depth.stage import NEEDS_MASKS, compute_depth, settings, used_settings

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
        check_frames_match(
            masks_dir, "flows of frames", (store.num_frames, store.height, store.width), meta, frames_path
        )
        masks = (store, mask)
    with memory_hint(frames_path, "depth"):
        depth = compute_depth(frames, cfg, masks=masks, device=device, model=model)
    info = {
        "method": method,
        "settings": used_settings(cfg),
        "version": version,
        "units": "nvp fit depth: far scene 1.0, nearer smaller",
    }
    save_depth_file(out_path, depth, info)
    log.info(
        "%s: depth by %s, range [%.3f, %.3f], %d distinct values",
        meta["video"],
        method,
        depth.min(),
        depth.max(),
        min(len(np.unique(depth)), 10**6),
    )
    return depth


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
        check_frames_match(depth_path, "depth maps", depth.shape, load_meta(frames_path), frames_path)
    with memory_hint(frames_path, "optimise"):
        fit_video(frames_path, masks_dir, matches_path, out_path, nvp, loss_path=loss_path, depth_path=depth)


def track_nvp(
    model_path,
    frames_path,
    truth_path,
    video: str,
    mode: str,
    out_path,
    grid: dict,
    device: str = "auto",
    inference: dict | None = None,
) -> None:
    """Track one video's query points with its fitted nvp model (``inference``: values of the nvp keys
    only inference reads, e.g. occlusion_margin, that replace the model's)."""
    from omnitrack.model import predict
    from omnitrack.queries import video_queries

    meta = load_meta(frames_path)
    queries = video_queries(truth_path, mode, meta["num_frames"], meta["width"], meta["height"], grid)
    with memory_hint(model_path, "track_nvp"):
        tracks, occluded = predict(model_path, queries, device=device, inference=inference)
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def evaluate(prediction_path, truth_path, video: str, mode: str, out_path) -> dict:
    """:func:`score` of one prediction file against the video's source record ``truth_path``, written to
    ``out_path`` as strict JSON (undefined metrics, e.g. of a mode without queries, are null)."""
    from omnitrack.queries import prediction_truth

    pred = load_prediction(prediction_path)
    width, height = (int(v) for v in pred["size"])
    truth = prediction_truth(pred, prediction_path, truth_path, mode)
    result = score(pred["tracks"], pred["occluded"], truth, mode, width, height)
    write_json(out_path, result)
    if result["num_queries"] == 0:
        log.warning(
            "%s/%s: no query point in this mode (no track is visible on a query frame): metrics are null", video, mode
        )
    else:
        log.info(
            "%s/%s: AJ %.3f  delta %.3f  OA %.3f",
            video,
            mode,
            result["average_jaccard"],
            result["average_pts_within_thresh"],
            result["occlusion_accuracy"],
        )
    return result
