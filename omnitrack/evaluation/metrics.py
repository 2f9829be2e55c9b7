"""TAP-Vid metrics (occlusion accuracy, < δ fractions, Jaccard, AJ) and temporal coherence.

:func:`compute_tapvid_metrics` follows the reference definition exactly
(google-deepmind/tapnet, ``tapnet/tapvid/evaluation_datasets.py::compute_tapvid_metrics``):

- evaluated frames: ``first`` scores the frames strictly after the query frame
  (``cumsum(eye, axis=1) - eye``); ``strided`` scores every frame except the query frame
  (``1 - eye``). The query frame is ``round(t)``.
- within δ is strict: ``|pred - gt|² < δ²``, δ ∈ {1, 2, 4, 8, 16} pixels of the 256×256 frame.
- ``pts_within_δ`` = (GT-visible and within δ) / GT-visible, ignoring predicted occlusion.
- ``jaccard_δ`` = TP / (TP + FP + FN) = TP / (GT-visible + FP), where TP = GT-visible, predicted
  visible and within δ; FP = predicted visible and (GT-occluded or not within δ).
- ``occlusion_accuracy`` = fraction of evaluated points whose predicted occlusion equals the GT.
- averages are unweighted means over the five thresholds. A video with no evaluated (or no
  GT-visible evaluated) point gets NaN, as in the reference.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (1, 2, 4, 8, 16)
QUERY_MODES = ("first", "strided")


def _check_shape(name: str, a: np.ndarray, shape: tuple) -> None:
    if a.ndim != len(shape) or any(e is not None and s != e for s, e in zip(a.shape, shape)):
        want = "[" + ", ".join("?" if e is None else str(e) for e in shape) + "]"
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {want}")


def evaluation_points(query_points: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """bool [B, N, T]: the (query, frame) pairs that are scored for ``query_mode``."""
    if query_mode not in QUERY_MODES:
        raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
    eye = np.eye(num_frames, dtype=np.int32)
    table = np.cumsum(eye, axis=1) - eye if query_mode == "first" else 1 - eye
    query_frame = np.round(query_points[..., 0]).astype(np.int64)
    if query_frame.size and (query_frame.min() < 0 or query_frame.max() >= num_frames):
        raise ValueError(
            f"query_points has query frames outside [0, {num_frames - 1}] "
            f"(min {query_frame.min()}, max {query_frame.max()})"
        )
    return table[query_frame] > 0


def compute_tapvid_metrics(
    query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, query_mode: str
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics of each video in a batch.

    query_points [B, N, 3] (t, y, x); gt_occluded, pred_occluded bool [B, N, T];
    gt_tracks, pred_tracks [B, N, T, 2] (x, y) in pixels of the 256×256 frame;
    query_mode 'first' or 'strided'.
    Returns float64 arrays of shape [B]: ``occlusion_accuracy``, ``pts_within_{1,2,4,8,16}``,
    ``jaccard_{1,2,4,8,16}``, ``average_jaccard``, ``average_pts_within_thresh``.
    Raises ValueError naming the argument on a shape mismatch or an unknown mode.
    """
    query_points = np.asarray(query_points, dtype=np.float64)
    gt_tracks = np.asarray(gt_tracks, dtype=np.float64)
    pred_tracks = np.asarray(pred_tracks, dtype=np.float64)
    gt_occluded = np.asarray(gt_occluded)
    pred_occluded = np.asarray(pred_occluded)
    _check_shape("gt_tracks", gt_tracks, (None, None, None, 2))
    b, n, t = gt_tracks.shape[:3]
    _check_shape("query_points", query_points, (b, n, 3))
    _check_shape("gt_occluded", gt_occluded, (b, n, t))
    _check_shape("pred_occluded", pred_occluded, (b, n, t))
    _check_shape("pred_tracks", pred_tracks, (b, n, t, 2))
    gt_occluded = gt_occluded.astype(bool)
    pred_occluded = pred_occluded.astype(bool)

    evaluated = evaluation_points(query_points, t, query_mode)
    axes = (1, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        metrics = {
            "occlusion_accuracy": np.sum((pred_occluded == gt_occluded) & evaluated, axis=axes)
            / np.sum(evaluated, axis=axes)
        }
        visible = ~gt_occluded
        pred_visible = ~pred_occluded
        sq_dist = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)
        gt_positives = np.sum(visible & evaluated, axis=axes)
        fracs, jaccards = [], []
        for thresh in THRESHOLDS:
            within = sq_dist < thresh**2
            correct = within & visible & evaluated
            frac = np.sum(correct, axis=axes) / gt_positives
            true_pos = np.sum(correct & pred_visible, axis=axes)
            false_pos = np.sum(pred_visible & (~visible | ~within) & evaluated, axis=axes)
            jac = true_pos / (gt_positives + false_pos)
            metrics[f"pts_within_{thresh}"] = frac
            metrics[f"jaccard_{thresh}"] = jac
            fracs.append(frac)
            jaccards.append(jac)
    metrics["average_jaccard"] = np.mean(np.stack(jaccards, axis=1), axis=1)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(fracs, axis=1), axis=1)
    return metrics


def temporal_coherence(gt_tracks, gt_occluded, pred_tracks) -> np.ndarray:
    """Temporal coherence TC of each video (lower is better), float64 [B].

    gt_tracks, pred_tracks [B, N, T, 2] (x, y) in 256×256 pixels; gt_occluded bool [B, N, T].

    For every triplet of consecutive frames (t-1, t, t+1) in which the GT point is visible in all
    three, the acceleration ``a = (p[t+1] - p[t]) - (p[t] - p[t-1])`` is computed for the prediction
    and for the GT, and TC is the mean of ``‖a_pred − a_gt‖`` over those triplets (of all tracks
    of the video). This is the upstream ``eval.py::eval_temporal_coherence``
    (the upstream reference, §4 of the method notes); predicted occlusion and the query mode
    play no part. A prediction that differs from the GT by a constant or a constant velocity
    has TC = 0. A video with no such triplet gets NaN.
    """
    gt_tracks = np.asarray(gt_tracks, dtype=np.float64)
    pred_tracks = np.asarray(pred_tracks, dtype=np.float64)
    gt_occluded = np.asarray(gt_occluded)
    _check_shape("gt_tracks", gt_tracks, (None, None, None, 2))
    b, n, t = gt_tracks.shape[:3]
    _check_shape("gt_occluded", gt_occluded, (b, n, t))
    _check_shape("pred_tracks", pred_tracks, (b, n, t, 2))
    gt_occluded = gt_occluded.astype(bool)

    def accel(p):
        return (p[..., 2:, :] - p[..., 1:-1, :]) - (p[..., 1:-1, :] - p[..., :-2, :])

    visible3 = ~(gt_occluded[..., :-2] | gt_occluded[..., 1:-1] | gt_occluded[..., 2:])
    err = np.linalg.norm(accel(pred_tracks) - accel(gt_tracks), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.where(visible3, err, 0.0), axis=(1, 2)) / np.sum(visible3, axis=(1, 2))


def score(tracks, occluded, truth, mode: str, width: int, height: int) -> dict:
    """TAP-Vid metrics and temporal coherence (None without three consecutive visible frames) of a
    prediction, in 256x256 space.

    tracks float [N, T, 2] and occluded bool [N, T] in working pixels (width x height); truth: the
    (query_points, gt_tracks, gt_occluded) of :func:`omnitrack.queries.benchmark_queries` for ``mode``.
    """
    queries, gt_tracks, gt_occluded = truth
    to256 = np.array([256.0 / width, 256.0 / height], np.float32)
    q256 = queries * np.array([1.0, 256.0 / height, 256.0 / width], np.float32)
    gt256, pred256 = (gt_tracks * to256)[None], (np.asarray(tracks) * to256)[None]
    metrics = compute_tapvid_metrics(q256[None], gt_occluded[None], gt256, np.asarray(occluded)[None], pred256, mode)
    result = {k: float(v[0]) if np.isfinite(v[0]) else None for k, v in metrics.items()}
    tc = temporal_coherence(gt256, gt_occluded[None], pred256)[0]
    result["temporal_coherence"] = float(tc) if np.isfinite(tc) else None
    result["num_queries"] = int(len(queries))
    return result
