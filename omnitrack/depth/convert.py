"""Relative inverse depth (a monocular model's output) -> the depth the nvp fit starts from.

The fit's depth units (omnitrack/model): positive camera-space depth z of a pinhole camera
(geometry.Camera); with no depth maps the fit starts at the constant ``depth_init`` (1.0), and the
motion start (model/motion_init.py) puts independently moving pixels nearer, at
``depth_init * (1 - motion_init_sep)`` (0.55-1.0 for sep 0.45). The occlusion margin (0.02) and
``min_depth`` (0.01) are absolute depths, so the start must live on that scale: the far scene at
``depth_init``, nearer things below it, nothing near 0.

Depth Anything V2 (and MiDaS-style models) predict *affine-invariant* inverse depth: for each frame
``inv = a / z + b`` with an unknown scale a > 0 and shift b (b makes 1 / inv meaningless where inv
is small, e.g. the sky, where inv ~ 0). :func:`fit_depth` therefore:

1. (optional) puts every frame on one scale: :func:`align_frames` fits, for each frame t > 0, an affine
   map ``inv_t -> s * inv_t + c`` that makes it agree with frame t - 1 (already aligned) at pixels
   that correspond through reliable flow on the static scene (the caller supplies those pairs, e.g.
   the masks' reliable bit outside the independently moving regions; small-baseline neighbours, so a
   static point's inverse depth barely changes). The fit is robust (RANSAC over 2-point lines, inliers
   within 2 % of the range, then least squares on them); a frame with fewer than ``min_pairs`` pairs
   or a degenerate fit (non-positive slope) keeps its own values (s = 1, c = 0). Without pairs,
   all frames share the video's scale as predicted (DA-V2 is fairly stable between frames).
2. takes ONE pair of robust anchors over the whole video: ``far = percentile(inv, far_pct)`` (default
   2 %) and ``near = percentile(inv, near_pct)`` (default 98 %), so outliers (sky, specular spikes)
   do not set the scale, and relative depth between frames is kept;
3. maps inverse depth affinely so that ``far`` -> ``1 / depth_far`` and ``near`` ->
   ``max_ratio / depth_far``, clipping outside [far, near] (that is the cap: everything beyond the
   anchors is held at the range ends). Affine in inverse depth is exactly the model's own ambiguity
   (a, b), fixed here by two assumptions: the 2 % farthest pixels are at ``depth_far`` and the 2 %
   nearest are ``max_ratio`` times nearer;
4. returns ``z = depth_far / (1 + (max_ratio - 1) * n)`` with n = clip((inv - far) / (near - far), 0, 1):
   float32, in [depth_far / max_ratio, depth_far], nearer = smaller, order preserved.

A flat prediction (near - far tiny against the map's magnitude) gives the constant ``depth_far``
(upstream's no-depth start), and so do non-finite values (treated as far).
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_RATIO = 2.0


def fit_depth(
    inv_depth: np.ndarray,
    depth_far: float = 1.0,
    max_ratio: float = DEFAULT_MAX_RATIO,
    far_pct: float = 2.0,
    near_pct: float = 98.0,
    pairs=None,
    min_pairs: int = 50,
    max_samples: int = 2_000_000,
    seed: int = 0,
) -> np.ndarray:
    """Relative inverse depth [T, H, W] -> the fit's depth float32 [T, H, W] (see the module docstring).

    pairs: None, or per-frame static correspondences for :func:`align_frames`.
    max_samples: the percentiles are taken on at most this many pixels (a fixed-seed sample).
    """
    inv = np.asarray(inv_depth, dtype=np.float32)
    if inv.ndim != 3:
        raise ValueError(f"expected inverse depth [T, H, W], got shape {inv.shape}")
    if not (depth_far > 0 and max_ratio >= 1 and 0 <= far_pct < near_pct <= 100):
        raise ValueError(
            f"need depth_far > 0, max_ratio >= 1, 0 <= far_pct < near_pct <= 100; got "
            f"{depth_far}, {max_ratio}, {far_pct}, {near_pct}"
        )
    if pairs is not None:
        inv = align_frames(inv, pairs, min_pairs)
    far, near = anchors(inv, far_pct, near_pct, max_samples, seed)
    scale = max(abs(far), abs(near), 1e-12)
    if not (np.isfinite(far) and np.isfinite(near)) or near - far <= 1e-6 * scale or max_ratio == 1:
        return np.full(inv.shape, depth_far, np.float32)
    n = np.clip((inv - far) / (near - far), 0, 1)
    n[~np.isfinite(n)] = 0
    return (depth_far / (1 + (max_ratio - 1) * n)).astype(np.float32)


def anchors(
    inv: np.ndarray, far_pct: float = 2.0, near_pct: float = 98.0, max_samples: int = 2_000_000, seed: int = 0
) -> tuple[float, float]:
    """(far, near): the ``far_pct`` and ``near_pct`` percentiles of the finite values of ``inv``."""
    flat = inv.reshape(-1)
    if flat.size > max_samples:
        flat = flat[np.random.default_rng(seed).choice(flat.size, max_samples, replace=False)]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return float("nan"), float("nan")
    far, near = np.percentile(flat, [far_pct, near_pct])
    return float(far), float(near)


def align_frames(inv: np.ndarray, pairs, min_pairs: int = 50) -> np.ndarray:
    """Put every frame's inverse depth on frame 0's scale through static correspondences.

    pairs: a sequence (or callable t -> item) giving, for each t = 1 .. T-1, None or
    ``(xy_prev [N, 2], xy_t [N, 2])``: pixel positions (x, y) in frames t - 1 and t of the same static
    points (e.g. reliable flow from t to t - 1 outside moving regions). Looked up at the nearest pixel.
    Returns float32 [T, H, W]; frame 0 unchanged.
    """
    inv = np.asarray(inv, dtype=np.float32)
    t, h, w = inv.shape
    out = inv.copy()
    get = pairs if callable(pairs) else (lambda k: pairs[k - 1])
    for k in range(1, t):
        item = get(k)
        s, c = 1.0, 0.0
        if item is not None:
            prev_xy, cur_xy = (np.asarray(a, np.float64).reshape(-1, 2) for a in item)
            ref = _sample(out[k - 1], prev_xy)
            val = _sample(inv[k], cur_xy)
            ok = np.isfinite(ref) & np.isfinite(val)
            fitted = _robust_line(val[ok], ref[ok]) if ok.sum() >= min_pairs else None
            if fitted is not None:
                s, c = fitted
        out[k] = s * inv[k] + c
    return out


def _sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h, w = img.shape
    col = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, h - 1)
    return img[row, col].astype(np.float64)


def _robust_line(
    x: np.ndarray, y: np.ndarray, trials: int = 256, max_points: int = 20_000, seed: int = 0
) -> tuple[float, float] | None:
    """y ~ s x + c, robust to outliers (moving pixels that slipped through, flow errors, specular spikes):
    RANSAC over 2-point lines (``trials`` samples, fixed seed) with inliers within 2 % of y's 2-98 %
    range, then least squares on the best line's inliers, refitted once on its own inliers. None when
    no line with a positive slope explains the pairs."""
    rng = np.random.default_rng(seed)
    if x.size > max_points:
        pick = rng.choice(x.size, max_points, replace=False)
        x, y = x[pick], y[pick]
    lo, hi = np.percentile(y, [2, 98])
    tol = 0.02 * (hi - lo)
    if not tol > 0:
        return None
    i, j = rng.integers(0, x.size, (2, trials))
    dx = x[i] - x[j]
    ok = np.abs(dx) > 1e-12
    if not ok.any():
        return None
    s = (y[i][ok] - y[j][ok]) / dx[ok]
    c = y[i][ok] - s * x[i][ok]
    good = s > 0
    if not good.any():
        return None
    s, c = s[good], c[good]
    counts = (np.abs(s[:, None] * x[None] + c[:, None] - y[None]) <= tol).sum(1)
    best = int(np.argmax(counts))
    s, c = s[best], c[best]
    for _ in range(2):
        inl = np.abs(s * x + c - y) <= tol
        if inl.sum() < 2 or np.ptp(x[inl]) <= 1e-12:
            return None
        s, c = np.polyfit(x[inl], y[inl], 1)
    if not (np.isfinite(s) and np.isfinite(c)) or s <= 0:
        return None
    return float(s), float(c)
