"""Sparse long-term matches between distant frames from dense descriptors (upstream featmatch.py).

For every pair (a, b), a < b, b - a >= min_gap, on L2-normalised descriptors [h, w, C]:
1. mutual nearest neighbours of the a x b cosine-similarity matrix;
2. similarity > ``sim_th`` (0.75, as upstream);
3. distinctiveness: the number of patches of the patch's own frame with similarity > ``self_sim_th``
   (0.55, as upstream; the patch itself included) is < ``area_frac`` x (patches per frame), in both frames;
4. local-similarity band: the mean similarity between the patch and the patches of the window
   rows [r - k, r + k) x columns [c - k, c + k) (k = ``window_cells``, clipped to the grid; the patch
   itself included) lies strictly inside ``local_band``, in both frames;
5. spatial coherence (:func:`coherence_filter`): twice with ``coherence[0]`` cells (grid units), then
   once with ``coherence[1]`` pixels.
Patch (r, c) becomes the point ((c + 0.5) * cx, (r + 0.5) * cy) (docs/formats.md corner convention).

Upstream's absolute thresholds were tuned for DINOv2 on 854x480 frames, a 34 x 61 = 2074-patch grid:
- area threshold 100 patches -> ``area_frac`` = 100 / 2074 of the grid (49 patches of a 32 x 32 grid);
- local band (30, 100) as a *sum* over a 10 x 10 window -> (30 / 100, 100 / 100) as a *mean* over
  the window's cells. Upstream divides implicitly by the nominal 100 cells even where the window is
  clipped at the border (penalising border patches); we divide by the clipped window's own count.
  The upper bound 1.0 only rejects windows identical to the patch (flat regions);
- spatial coherence 4 patch units, then 32 px: kept as is (4 cells, then 32 px of the working
  resolution); upstream's depth-inlier mask between the two (its step 7) is not applied here.
Upstream stores frame ids as float32; ours are int32.

The defaults of :func:`long_term_matches` are these DINOv2 values. The local band does not transfer to
the weight-free dense SIFT (:func:`match_defaults` disables it for "sift"): a SIFT descriptor sees
only ~4 cells, so its mean similarity over a 10 x 10-cell window is mostly 0.05-0.25; on the TAP-Vid
DAVIS frames (davis32_dev, 256x256, cell 8, 253 pairs per video) the band kept 1-33 % of the patches
(the flattest ones) and left no match within 6 px of a visible ground-truth point; without it, 98 %
of the 3599 such matches agree with the ground-truth displacement to 8 px.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError
from omnitrack.io import load_npz, save_npz

MATCH_DEFAULTS = {
    "dinov2": {},
    "dino": {},
    "sift": {"local_band": (-1.0, 1.0)},
}


def match_defaults(method: str) -> dict:
    """Keyword arguments of :func:`long_term_matches` that differ from its defaults for descriptors of ``method``."""
    if method not in MATCH_DEFAULTS:
        raise ValueError(f"feature method must be one of {sorted(MATCH_DEFAULTS)}, got {method!r}")
    return dict(MATCH_DEFAULTS[method])


def long_term_matches(
    descriptors: np.ndarray,
    cell,
    image_size,
    min_gap: int = 10,
    sim_th: float = 0.75,
    self_sim_th: float = 0.55,
    area_frac: float = 100 / 2074,
    local_band: tuple[float, float] = (30 / 100, 100 / 100),
    window_cells: int = 5,
    coherence: tuple[float, float] = (4.0, 32.0),
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matches of every pair a < b with b - a >= min_gap (see the module docstring).

    descriptors float [T, h, w, C] (normalised here); cell (cx, cy) pixels per cell; image_size (W, H).
    -> frames int32 [M, 2] (a, b), points float32 [M, 4] (x_a, y_a, x_b, y_b) pixels, score float32 [M].
    """
    import torch
    from tqdm import tqdm

    desc = np.asarray(descriptors)
    if desc.ndim != 4:
        raise ValueError(f"descriptors must be [T, h, w, C], got shape {desc.shape}")
    t, h, w, c = desc.shape
    cx, cy = float(cell[0]), float(cell[1])
    width, height = image_size
    if w * cx > width + 1e-3 or h * cy > height + 1e-3:
        raise ValueError(f"a {w}x{h} grid of {cx}x{cy}-pixel cells does not fit in a {width}x{height} image")
    if min_gap < 1:
        raise ValueError(f"min_gap must be >= 1, got {min_gap}")

    feats = torch.from_numpy(desc.reshape(t, h * w, c).astype(np.float32))
    feats = torch.nn.functional.normalize(feats, dim=-1)
    ok = torch.stack([_frame_filter(f, h, w, self_sim_th, area_frac, local_band, window_cells) for f in feats])
    rows, cols = np.divmod(np.arange(h * w), w)
    grid = np.stack([cols, rows], axis=1).astype(np.float64)  # (col, row) grid units
    pixels = ((grid + 0.5) * [cx, cy]).astype(np.float32)

    pairs = [(a, b) for a in range(t) for b in range(a + min_gap, t)]
    out_frames, out_points, out_score = [], [], []
    for a, b in tqdm(pairs, desc="matches", unit="pair", file=sys.stderr, disable=not progress):
        ia, ib, sim = _mutual_nn(feats[a], feats[b])
        keep = (sim > sim_th) & ok[a][ia] & ok[b][ib]
        ia, ib, sim = ia[keep].numpy(), ib[keep].numpy(), sim[keep].numpy()
        for mindist, space in ((coherence[0], grid), (coherence[0], grid), (coherence[1], pixels)):
            k = coherence_filter(space[ia], space[ib], mindist)
            ia, ib, sim = ia[k], ib[k], sim[k]
        out_frames.append(np.tile(np.int32([a, b]), (len(ia), 1)))
        out_points.append(np.concatenate([pixels[ia], pixels[ib]], axis=1))
        out_score.append(sim.astype(np.float32))
    if not pairs:
        return np.zeros((0, 2), np.int32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    return np.concatenate(out_frames), np.concatenate(out_points), np.concatenate(out_score)


def _mutual_nn(fa, fb):
    """fa [P, C], fb [Q, C] unit rows -> (ia, ib) int64 [M] mutual nearest neighbours, their cosine [M]."""
    import torch

    sim = fa @ fb.T
    best_b = sim.argmax(dim=1)
    best_a = sim.argmax(dim=0)
    ia = torch.nonzero(best_a[best_b] == torch.arange(len(fa)), as_tuple=True)[0]
    ib = best_b[ia]
    return ia, ib, sim[ia, ib]


def _frame_filter(
    f, h: int, w: int, self_sim_th: float, area_frac: float, local_band: tuple[float, float], k: int, chunk: int = 1024
):
    """Per-patch distinctiveness and local-band test of one frame: f [P, C] unit rows -> bool [P]."""
    import torch

    p = h * w
    rows = torch.arange(p) // w
    cols = torch.arange(p) % w
    passed = []
    for start in range(0, p, chunk):  # bounded memory: chunk x P similarities at a time
        sel = slice(start, min(start + chunk, p))
        sim = f[sel] @ f.T
        distinct = (sim > self_sim_th).sum(dim=1) < area_frac * p
        dr = rows[None, :] - rows[sel, None]
        dc = cols[None, :] - cols[sel, None]
        window = (dr >= -k) & (dr < k) & (dc >= -k) & (dc < k)
        mean = (sim * window).sum(dim=1) / window.sum(dim=1)
        passed.append(distinct & (mean > local_band[0]) & (mean < local_band[1]))
    return torch.cat(passed)


def coherence_filter(pa: np.ndarray, pb: np.ndarray, mindist: float) -> np.ndarray:
    """Upstream ``sparse_filter``: keep a match if its two nearest other matches are < mindist away in both images.

    pa, pb float [M, 2] positions of the M matches in image a and b -> int64 indices of the kept
    matches; none if fewer than 4 would remain.
    """
    m = len(pa)
    if m < 3:
        return np.zeros(0, np.int64)
    ok = np.ones(m, bool)
    for pts in (pa, pb):
        pts = np.asarray(pts, np.float64)
        dx = pts[:, 0, None] - pts[None, :, 0]
        dy = pts[:, 1, None] - pts[None, :, 1]
        close = dx * dx + dy * dy < float(mindist) ** 2  # [M, M], exact for grid and cell-centre positions
        ok &= close.sum(axis=1) - close.diagonal() >= 2  # the second nearest other match is within mindist
    kept = np.nonzero(ok)[0]
    return kept if len(kept) >= 4 else np.zeros(0, np.int64)


def save_matches(path: str | Path, frames: np.ndarray, points: np.ndarray, score: np.ndarray) -> None:
    """Write frames int32 [M, 2], points float32 [M, 4], score float32 [M] (M may be 0)."""
    frames = np.asarray(frames).reshape(-1, 2)
    points = np.asarray(points, np.float32).reshape(-1, 4)
    score = np.asarray(score, np.float32).reshape(-1)
    if frames.size and not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"match frames must be integers, got {frames.dtype}")
    if not len(frames) == len(points) == len(score):
        raise ValueError(f"frames {len(frames)}, points {len(points)} and score {len(score)} rows differ")
    save_npz(path, frames=frames.astype(np.int32), points=points, score=score)


def load_matches(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> frames int32 [M, 2], points float32 [M, 4], score float32 [M]; CacheError if the file does not match."""
    z = load_npz(path, {"frames": (2, "i"), "points": (2, "f"), "score": (1, "f")})
    frames, points, score = z["frames"], z["points"], z["score"]
    m = len(frames)
    if frames.shape != (m, 2) or points.shape != (m, 4) or score.shape != (m,):
        raise CacheError(
            path,
            f"inconsistent shapes: frames {frames.shape}, points {points.shape}, "
            f"score {score.shape} (expected [M,2], [M,4], [M])",
        )
    if m and (frames.min() < 0 or np.any(frames[:, 0] >= frames[:, 1])):
        raise CacheError(path, "frame pairs must be non-negative with a < b")
    if not (np.all(np.isfinite(points)) and np.all(np.isfinite(score))):
        raise CacheError(path, "points or scores hold NaN/inf")
    return frames.astype(np.int32), points.astype(np.float32), score.astype(np.float32)
