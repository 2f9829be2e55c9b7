"""Flow-chaining baseline: follow each query point through the filtered flows.

For every frame k after (and, separately, before) the query frame, a point is carried from its
*anchor* (the last frame where it was reliably seen, starting at the query frame) to k by the flow
of pair (anchor, k), which the masks stage has densified by chaining. When that pair's cycle mask
holds at the anchor position the point is visible at k and k becomes the anchor; otherwise it is
marked occluded at k and the anchor stays, so a point is picked up again after an occlusion of up
to `window` frames. Beyond the window the chain is broken; a long-term match from the anchor frame
to k within `match_radius` pixels of the anchor position re-anchors it.

Mask bits (docs/formats.md): 1 = cycle-consistent, 2 = occluded but reliable.
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import SCALE, FlowStore
from omnitrack.interp import bilinear, nearest

RELIABLE = 1


def track_queries(
    flows: FlowStore,
    mask: np.ndarray,
    query_points: np.ndarray,
    matches: tuple[np.ndarray, np.ndarray] | None = None,
    match_radius: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Track query points through a video.

    flows: the masks stage's flow store (P pairs, T frames, H x W).
    mask: uint8 [P, H, W] reliability bits of the same pairs.
    query_points: float [N, 3] (t, y, x) in pixels.
    matches: optional (frames int [M, 2], points float [M, 4] (x_a, y_a, x_b, y_b)), a < b.
    Returns tracks float32 [N, T, 2] (x, y) and occluded bool [N, T].
    """
    n, t = len(query_points), flows.num_frames
    qt = np.rint(query_points[:, 0]).astype(np.int64)
    if n and (qt.min() < 0 or qt.max() >= t):
        raise ValueError(f"query frames must lie in [0, {t - 1}], got {qt.min()}..{qt.max()}")
    start = query_points[:, [2, 1]].astype(np.float32)
    tracks = np.zeros((n, t, 2), np.float32)
    occluded = np.ones((n, t), bool)
    tracks[np.arange(n), qt] = start
    occluded[np.arange(n), qt] = False
    match_index = _index_matches(matches)
    for step in (1, -1):
        anchor_t, anchor_p = qt.copy(), start.copy()
        frames = range(t) if step == 1 else range(t - 1, -1, -1)
        for k in frames:
            active = np.nonzero(qt * step < k * step)[0]
            for a in np.unique(anchor_t[active]):
                idx = active[anchor_t[active] == a]
                pos, vis = _carry(
                    flows, mask, match_index, int(a), k, anchor_p[idx], tracks[idx, k - step], match_radius
                )
                tracks[idx, k] = pos
                occluded[idx, k] = ~vis
                anchor_t[idx[vis]] = k
                anchor_p[idx[vis]] = pos[vis]
    return tracks, occluded


def chain_matches(flows: FlowStore, mask: np.ndarray, stride: int, min_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Long-range correspondences from chained flow: a grid of every frame tracked through the video.

    Points on a grid of spacing ``stride`` px (cell centres) in every frame are followed by
    :func:`track_queries`; every frame b at least ``min_gap`` frames from the query frame a where the
    track is visible gives a match. They reach where the masks stage's strict chaining stops (one
    failed step voids a chained pair, while a track re-anchors at its last visible frame).
    Returns frames int64 [M, 2] (a < b) and points float32 [M, 4] (x_a, y_a, x_b, y_b), the
    matches format of docs/formats.md.
    """
    from omnitrack.queries import grid_points

    t, h, w = flows.num_frames, flows.height, flows.width
    queries = np.concatenate([grid_points(w, h, frame, stride) for frame in range(t)])
    qt = queries[:, 0].astype(np.int64)
    tracks, occluded = track_queries(flows, mask, queries)
    a, b = np.nonzero(~occluded & (np.abs(np.arange(t)[None] - qt[:, None]) >= min_gap))
    pa, pb = queries[a][:, [2, 1]], tracks[a, b]
    forward = (qt[a] < b)[:, None]
    frames = np.sort(np.stack([qt[a], b], 1), 1)
    points = np.concatenate([np.where(forward, pa, pb), np.where(forward, pb, pa)], 1)
    return frames.astype(np.int64), points.astype(np.float32)


def _carry(flows, mask, match_index, a, k, p, previous, match_radius):
    """Positions [n, 2] at frame k of points p [n, 2] anchored at frame a, and their visibility [n]."""
    kidx = flows.index.get((a, k))
    if kidx is not None:
        q = p + bilinear(flows.raw(kidx), p) / SCALE
        return q, ((nearest(mask[kidx], p) & RELIABLE) > 0) & _inside(q, flows.width, flows.height)
    pos, vis = previous.copy(), np.zeros(len(p), bool)
    table = match_index.get((a, k))
    if table is not None:
        src, dst = table
        d2 = ((p[:, None, :] - src[None]) ** 2).sum(-1)
        best = d2.argmin(1)
        hit = d2[np.arange(len(p)), best] < match_radius**2
        pos[hit] = p[hit] + (dst[best[hit]] - src[best[hit]])
        vis = hit & _inside(pos, flows.width, flows.height)
    return pos, vis


def _inside(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def _index_matches(matches):
    """{(a, b): (points in a [m, 2], points in b [m, 2])} for both directions of every frame pair."""
    if matches is None or len(matches[0]) == 0:
        return {}
    frames, points = matches
    index = {}
    for a, b in np.unique(frames, axis=0):
        sel = (frames[:, 0] == a) & (frames[:, 1] == b)
        pa, pb = points[sel, :2], points[sel, 2:]
        index[(int(a), int(b))] = (pa, pb)
        index[(int(b), int(a))] = (pb, pa)
    return index
