"""The pipeline's stages as plain functions: paths in, paths out.

Each Snakemake rule calls one of these through a thin script in workflow_scripts/; they are just as
usable from Python. Every output is written atomically by the functions they call.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from omnitrack.data.frames import load_frames, load_meta, save_frames
from omnitrack.errors import InputError
from omnitrack.io import atomic_path, load_npz, read_json, save_npz, write_json

log = logging.getLogger("omnitrack")


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
    from omnitrack.data.videos import plan_working_size, read_video, resize_frames

    manifest = read_json(manifest_path)
    source = manifest["sources"][video]
    if manifest["kind"] == "videos":
        frames, fps = read_video(source, max_frames=spec.get("max_frames"))
        width, height = plan_working_size(source, frames.shape[2], frames.shape[1], spec["max_side"])
    else:
        frames, fps = load_npz(source, {"video": (4, "u")})["video"], None
        width, height = spec.get("size") or (frames.shape[2], frames.shape[1])
    source_size = [int(frames.shape[2]), int(frames.shape[1])]
    if (frames.shape[2], frames.shape[1]) != (width, height):
        frames = resize_frames(frames, width, height)
    save_frames(out_path, frames, {"video": video, "source": str(source), "source_size": source_size,
                                   "fps": fps, "has_gt": manifest["has_gt"]})
    log.info("%s: %d frames %dx%d (source %dx%d)", video, len(frames), width, height, *source_size)


def estimate_flow(frames_path: str | Path, out_dir: str | Path, cfg: dict, device: str = "auto") -> None:
    from omnitrack.flow.compute import compute_flows

    frames, _ = load_frames(frames_path)
    compute_flows(frames, out_dir, method=cfg["method"], window=cfg["window"], raft=cfg.get("raft"),
                  device=device)


def extract_features(frames_path: str | Path, out_path: str | Path, spec: dict, cell: int,
                     device: str = "auto") -> None:
    from omnitrack.features.descriptors import compute_features, save_features

    frames, _ = load_frames(frames_path)
    desc, cell_xy = compute_features(frames, spec["method"], weights=spec.get("weights"), cell=cell,
                                     device=device)
    save_features(out_path, desc, cell_xy, spec["method"])


def build_masks(frames_path: str | Path, flow_dir: str | Path, features_path: str | Path | None,
                out_dir: str | Path, cfg: dict) -> None:
    from omnitrack.features.descriptors import load_features
    from omnitrack.flow.consistency import compute_masks
    from omnitrack.flow.store import FlowStore

    frames, _ = load_frames(frames_path)
    features = None
    if features_path:
        desc, cell, _ = load_features(features_path)
        features = {"descriptors": desc, "cell": cell}
    compute_masks(frames, FlowStore(flow_dir), out_dir, features=features, cycle_th=cfg["cycle_th"],
                  appearance_th=cfg["appearance_th"], chain=cfg["chain"])


def find_matches(frames_path: str | Path, features_path: str | Path, out_path: str | Path, cfg: dict) -> None:
    from omnitrack.features.descriptors import load_features
    from omnitrack.features.matching import long_term_matches, match_defaults, save_matches

    meta = load_meta(frames_path)
    desc, cell, method = load_features(features_path)
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
    frames_ab, points, _ = load_matches(matches_path)
    queries = video_queries(read_json(manifest_path), video, mode, meta["num_frames"], meta["width"],
                            meta["height"], grid)
    tracks, occluded = track_queries(flows, mask, queries, (frames_ab, points), cfg["match_radius"])
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def optimise(frames_path, masks_dir, matches_path, out_path, nvp: dict) -> None:
    """Fit the nvp model to one video (resumes from ``<out_path>.partial`` after an interruption)."""
    from omnitrack.model import fit_video

    fit_video(frames_path, masks_dir, matches_path, out_path, nvp)


def track_nvp(model_path, frames_path, manifest_path, video: str, mode: str, out_path, grid: dict,
              device: str = "auto") -> None:
    """Track one video's query points with its fitted nvp model."""
    from omnitrack.model import predict
    from omnitrack.queries import video_queries

    meta = load_meta(frames_path)
    queries = video_queries(read_json(manifest_path), video, mode, meta["num_frames"], meta["width"],
                            meta["height"], grid)
    tracks, occluded = predict(model_path, queries, device=device)
    save_prediction(out_path, queries, tracks, occluded, meta["width"], meta["height"])
    log.info("%s/%s: %d queries, %.1f%% predicted occluded", video, mode, len(queries), 100 * occluded.mean())


def evaluate(prediction_path, manifest_path, video: str, mode: str, out_path) -> dict:
    """TAP-Vid metrics of one prediction in 256x256 space."""
    from omnitrack.evaluation.metrics import compute_tapvid_metrics
    from omnitrack.queries import benchmark_queries

    pred = load_prediction(prediction_path)
    width, height = (int(v) for v in pred["size"])
    manifest = read_json(manifest_path)
    queries, gt_tracks, gt_occluded = benchmark_queries(manifest["sources"][video], mode, width, height)
    if pred["query_points"].shape != queries.shape or not np.allclose(pred["query_points"], queries, atol=1e-3):
        raise InputError(prediction_path, f"was made for other query points than the {mode} queries of "
                                          f"{video} ({pred['query_points'].shape} vs {queries.shape})",
                         hint="rerun its track rule")
    to256 = np.array([256.0 / width, 256.0 / height], np.float32)
    q256 = queries * np.array([1.0, 256.0 / height, 256.0 / width], np.float32)
    metrics = compute_tapvid_metrics(q256[None], gt_occluded[None], (gt_tracks * to256)[None],
                                     pred["occluded"][None], (pred["tracks"] * to256)[None], mode)
    result = {k: float(v[0]) for k, v in metrics.items()}
    result["num_queries"] = int(len(queries))
    write_json(out_path, result)
    log.info("%s/%s: AJ %.3f  delta %.3f  OA %.3f", video, mode, result["average_jaccard"],
             result["average_pts_within_thresh"], result["occlusion_accuracy"])
    return result
