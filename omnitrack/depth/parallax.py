"""Plane-plus-parallax depth of the static scene (``depth.layers.parallax``), weight-free.

When the camera translates, the static scene is not one plane: a point's image in frame j is
``x_j ~ H x_i + rho e_j`` (homogeneous), with H the homography of a reference plane, e_j the epipole
and rho its projective depth. For a pinhole camera rho = 1/Z - (an affine function of the pixel):
the choice of plane only adds such a function. For frame i and each partner j = i +- g (g in
``gaps``), from the reliable flow of the static pixels (mask bit 1, layer 0):

1. the dominant homography by RANSAC at ``tol`` px: when fewer than ``min_share`` of the pixels
   (or MIN_POINTS) miss it by more than ``tol``, the pair shows no measurable parallax (a rotating,
   zooming or still camera, or a planar scene) and is skipped;
2. the fundamental matrix F by RANSAC at ``tol`` px (``samples`` random pixels), its epipole e_j,
   H0 = [e_j]x F and each pixel's rho from x_j x (H0 x_i + rho e_j) = 0 (:func:`projective_depth`);
   pixels farther than ``tol`` px from their epipolar line (Sampson distance) are dropped: they move
   on their own (missed by the segmentation);
3. rho's sign is not fixed by F. The pair's maps of a frame, and then the frames (through the
   reliable flows to t + 1, t + 2), are compared without their least-squares planes (the
   plane-dependent part) and given the signs that agree (:func:`agree`: maximum spanning trees over
   correlations of at least MIN_CORR; within a frame the largest agreeing group is kept, a frame's
   map is their median). Each group of agreeing frames is then oriented by its pairs' votes: the
   correlation of rho with the inverse depth of a calibrated two-view reconstruction under a guessed
   camera (focal FOCAL x the larger side; the essential matrix and the pose that puts the points in
   front of both cameras, :func:`metric_inverse_depth`). A guessed focal distorts that depth but
   rarely its sign (on the synthetic set with relief 74 % of the pairs vote right, 88 % weighted by
   the vote's size); a group whose votes sum to less than MIN_CORR is left out;
4. the remaining affine part goes with the farthest surface: the plane under the lowest 20 % of the
   oriented map is subtracted (:func:`lower_plane`: "the backdrop is at inverse depth ~0") and the
   map scaled so that its ``quantile`` is 1, then clipped to [0, 1].

Pixels of frames without a usable map, or without a value in it, are 0 (the backdrop). The layered
depth then puts static pixel p nearer by ``parallax`` x gamma(p) (omnitrack.depth.layers).
tests/test_depth_parallax.py checks it on exact flows of a pinhole camera (rotation plus sideways,
forward or backward translation), of the synthetic renderer with ``parallax``, and through the
layered depth; BENCHMARKS.md §7 measures it on the renderer's flows.
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import FlowStore
from omnitrack.interp import pixel_centres

DEFAULTS = {"gaps": [4, 8], "tol": 1.0, "min_share": 0.05, "quantile": 0.99, "samples": 2000, "pose_samples": 500}
MIN_POINTS = 50
NEAR_EPIPOLE = 2.0
MIN_CORR = 0.3
FOCAL = 0.87  # x the larger side: a 60 degree field of view, the guess for the sign vote


def _grid(h: int, w: int) -> np.ndarray:
    """float64 [H * W, 2]: the (x, y) pixel centres, row-major."""
    return pixel_centres(h, w).reshape(-1, 2).astype(np.float64)


def _homogeneous(xy: np.ndarray) -> np.ndarray:
    """[M, 2] -> [M, 3] with a last coordinate of 1."""
    return np.concatenate([xy, np.ones((len(xy), 1))], 1)


def _along(src: np.ndarray, dst: np.ndarray, hmat: np.ndarray, e: np.ndarray) -> np.ndarray:
    """w [M] with dst ~ hmat src + w e (homogeneous; least squares in dst x (.) = 0), src, dst [M, 2]."""
    q = _homogeneous(dst)
    qe, qh = np.cross(q, e[None]), np.cross(q, _homogeneous(src) @ hmat.T)
    return -(qh * qe).sum(1) / np.maximum((qe * qe).sum(1), 1e-12)


def _design(xy: np.ndarray) -> np.ndarray:
    """[M, 2] -> [M, 3]: 1, x, y (scaled to ~1) for the plane fits."""
    return np.concatenate([np.ones((len(xy), 1)), xy / max(np.abs(xy).max(), 1.0)], 1)


def projective_depth(src: np.ndarray, dst: np.ndarray, fmat: np.ndarray) -> np.ndarray:
    """src, dst [M, 2] pixels, F [3, 3] (dst^T F src = 0) -> rho [M]: dst ~ H0 src + rho e' with e'
    the epipole in the second image and H0 = [e']x F (homogeneous points); NaN within NEAR_EPIPOLE px
    of a finite e', where the direction is unknown."""
    _, _, vt = np.linalg.svd(fmat.T)
    e = vt[-1]
    e = e / np.linalg.norm(e)
    cross = np.array([[0, -e[2], e[1]], [e[2], 0, -e[0]], [-e[1], e[0], 0]])
    rho = _along(src, dst, cross @ fmat, e)
    if abs(e[2]) > 1e-12:  # a finite epipole: the direction is unknown within NEAR_EPIPOLE px of it
        rho[np.linalg.norm(dst - e[:2] / e[2], axis=1) < NEAR_EPIPOLE] = np.nan
    return rho


def metric_inverse_depth(src: np.ndarray, dst: np.ndarray, size: tuple[int, int], tol: float) -> np.ndarray | None:
    """Inverse depth [M] (up to one positive scale) with a guessed camera: focal ``FOCAL`` x the larger
    side, principal point at the centre; the essential matrix by RANSAC on src, dst [M, 2], the pose
    whose points lie in front of both cameras (cv2.recoverPose), then w from dst ~ K R K^-1 src + w K t.
    None when no pose is found. Only its sign is used (step 3): the guessed focal distorts the values."""
    import cv2

    h, w = size
    f = FOCAL * max(h, w)
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    emat, inl = cv2.findEssentialMat(src, dst, k, cv2.RANSAC, 0.999, tol)
    if emat is None or emat.shape != (3, 3):
        return None
    _, rot, t, _ = cv2.recoverPose(emat, src, dst, k, mask=inl)
    return _along(src, dst, k @ rot @ np.linalg.inv(k), (k @ t).ravel())


def sampson(src: np.ndarray, dst: np.ndarray, fmat: np.ndarray) -> np.ndarray:
    """The Sampson distance [M] (px, first order) of each pair src, dst [M, 2] from dst^T F src = 0."""
    p, q = _homogeneous(src), _homogeneous(dst)
    fp, ftq = p @ fmat.T, q @ fmat
    num = (q * fp).sum(1)
    den = fp[:, 0] ** 2 + fp[:, 1] ** 2 + ftq[:, 0] ** 2 + ftq[:, 1] ** 2
    return np.abs(num) / np.sqrt(np.maximum(den, 1e-12))


def pair_rho(flow: np.ndarray, use: np.ndarray, cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    """flow [H, W, 2] of a pair, use bool [H, W] (reliable static pixels) -> (rho float64 [H, W], vote):
    rho of steps 1-2 of the module docstring (sign and offset arbitrary, NaN off ``use``), vote the
    correlation of rho with :func:`metric_inverse_depth` on the sampled pixels (> 0: rho's sign is
    nearer = larger). None when the pair shows no parallax."""
    import cv2

    h, w = use.shape
    idx = np.flatnonzero(use.ravel())
    if idx.size < MIN_POINTS:
        return None
    grid = _grid(h, w)[idx]
    target = grid + flow.reshape(-1, 2)[idx]
    sel = rng.choice(idx.size, min(idx.size, int(cfg["samples"])), replace=False)
    tol = float(cfg["tol"])
    hom, _ = cv2.findHomography(grid[sel], target[sel], cv2.RANSAC, tol, maxIters=1000)
    if hom is None:
        return None
    off_plane = np.linalg.norm(target - cv2.perspectiveTransform(grid[None], hom)[0], axis=1) > tol
    if off_plane.sum() < max(MIN_POINTS, cfg["min_share"] * idx.size):
        return None
    fmat, _ = cv2.findFundamentalMat(grid[sel], target[sel], cv2.FM_RANSAC, tol, 0.999, 1000)
    if fmat is None or fmat.shape != (3, 3):
        return None
    rho = projective_depth(grid, target, fmat)
    rho[sampson(grid, target, fmat) > tol] = np.nan  # off the epipolar lines: not static after all
    few = sel[: int(cfg["pose_samples"])]
    metric = metric_inverse_depth(grid[few], target[few], (h, w), tol)
    vote = 0.0 if metric is None else _corr(_detrend(grid[few], rho[few]), _detrend(grid[few], metric))
    out = np.full(h * w, np.nan)
    out[idx] = rho
    return out.reshape(h, w), vote


def orient(rho: np.ndarray, sign: float, quantile: float) -> np.ndarray | None:
    """rho [H, W] (NaN: unknown) -> sign x rho minus its lower plane, scaled so that its ``quantile``
    is 1 (step 4); None when nothing is left above the plane."""
    h, w = rho.shape
    ok = np.isfinite(rho.ravel())
    grid = _grid(h, w)[ok]
    value = sign * rho.ravel()[ok]
    value = value - lower_plane(grid, value)
    spread = np.quantile(value, quantile)
    if not spread > 0:
        return None
    out = np.full(h * w, np.nan)
    out[ok] = value / spread
    return out.reshape(h, w)


def pair_parallax(flow: np.ndarray, use: np.ndarray, cfg: dict, rng: np.random.Generator) -> np.ndarray | None:
    """One pair alone: :func:`pair_rho` oriented by its own vote (:func:`orient`) -> float64 [H, W] in
    the units of step 4 (NaN off ``use``), or None."""
    cfg = {**DEFAULTS, **cfg}
    got = pair_rho(flow, use, cfg, rng)
    if got is None:
        return None
    rho, vote = got
    return orient(rho, 1.0 if vote >= 0 else -1.0, cfg["quantile"])


def lower_plane(xy: np.ndarray, value: np.ndarray, share: float = 0.2, rounds: int = 6) -> np.ndarray:
    """An affine a + b x + c y under the lowest ``share`` of ``value`` [M] (finite) at xy [M, 2] (the
    farthest surface: inverse depth = rho + an affine function of the pixel, module docstring) -> [M]."""
    design = _design(xy)
    keep = np.ones(len(value), bool)
    for _ in range(rounds):
        coef, *_ = np.linalg.lstsq(design[keep], value[keep], rcond=None)
        resid = value - design @ coef
        keep = resid <= np.quantile(resid, share)
    return design @ coef


def _detrend(xy: np.ndarray, value: np.ndarray) -> np.ndarray:
    """value [M] (finite) at xy [M, 2] minus its least-squares plane a + b x + c y: the part of rho that
    depends on the pair's reference plane (and of the metric inverse depth, the guessed focal's error)."""
    design = _design(xy)
    coef, *_ = np.linalg.lstsq(design, value, rcond=None)
    return value - design @ coef


def _standard(rho: np.ndarray) -> np.ndarray:
    """rho [H, W] detrended (:func:`_detrend`) over its median absolute deviation (NaN kept): maps of
    different pairs become comparable up to sign."""
    h, w = rho.shape
    ok = np.isfinite(rho.ravel())
    value = _detrend(_grid(h, w)[ok], rho.ravel()[ok])
    out = np.full(h * w, np.nan)
    out[ok] = value / max(float(np.median(np.abs(value))), 1e-12)
    return out.reshape(h, w)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the pixels finite in both (0 when fewer than MIN_POINTS)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < MIN_POINTS:
        return 0.0
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-12))


def agree(corr: np.ndarray, min_corr: float = MIN_CORR) -> tuple[np.ndarray, np.ndarray]:
    """Signs [n] (+-1) and group ids [n] that agree with the pairwise correlations [n, n] (diagonal 1):
    maximum spanning trees over the |corr| of at least ``min_corr``, each sign set by its tree parent.
    Maps linked to no other get a group of their own (sign +1)."""
    n = len(corr)
    strength = np.abs(corr) - 2 * np.eye(n)  # no self edges
    signs, group = np.zeros(n), np.full(n, -1)
    for g in range(n):
        free = group < 0
        if not free.any():
            break
        root = int(np.argmax(np.where(free, strength.max(1), -np.inf)))
        signs[root], group[root] = 1.0, g
        while True:
            cand = np.where((group == g)[:, None] & (group < 0)[None, :], strength, -np.inf)
            a, b = np.unravel_index(np.argmax(cand), cand.shape)
            if cand[a, b] < min_corr:
                break
            signs[b], group[b] = signs[a] * np.sign(corr[a, b]), g
    return signs, group


def static_parallax(
    store: FlowStore, mask: np.ndarray, static: np.ndarray, cfg: dict | None = None, seed: int = 1234
) -> np.ndarray:
    """gamma float32 [T, H, W] in [0, 1] of the static pixels (``static`` bool [T, H, W]); 0 elsewhere
    and where no pair measures it (module docstring)."""
    from omnitrack.interp import flow_targets

    cfg = {**DEFAULTS, **(cfg or {})}
    rng = np.random.default_rng(seed)
    t, h, w = static.shape
    frame_maps: list[np.ndarray | None] = []
    frame_votes: list[float] = []
    for i in range(t):
        maps, votes = [], []
        for j in [i + s * g for g in cfg["gaps"] for s in (-1, 1)]:
            k = store.index.get((i, j))
            if k is None:
                continue
            flow = store.get(i, j)
            inside = flow_targets(flow)[2]
            got = pair_rho(flow, static[i] & ((np.asarray(mask[k]) & 1) > 0) & inside, cfg, rng)
            if got is not None:
                maps.append(_standard(got[0]))
                votes.append(got[1])
        # the pairs of one frame measure one map: the largest group that agrees, signs aligned, median
        keep = []
        if maps:
            signs, group = agree(np.array([[_corr(a, b) for b in maps] for a in maps]))
            keep = [(sg, m, v) for sg, g, m, v in zip(signs, group, maps, votes) if g == np.bincount(group).argmax()]
        frame_maps.append(_median([sg * m for sg, m, _ in keep]))
        frame_votes.append(float(sum(sg * v for sg, _, v in keep)))
    # the frames' signs made to agree through the reliable flows to the next two frames
    corr = np.eye(t)
    for i in range(t):
        for j in (i + 1, i + 2):
            k = store.index.get((i, j))
            if k is None or frame_maps[i] is None or frame_maps[j] is None:
                continue
            row, col, inside = flow_targets(store.get(i, j))
            ok = ((np.asarray(mask[k]) & 1) > 0) & inside
            there = np.full((h, w), np.nan)
            there[ok] = frame_maps[j][row[ok], col[ok]]
            corr[i, j] = corr[j, i] = _corr(frame_maps[i], there)
    # each group of frames that agree is oriented by its pairs' votes (step 3)
    signs, group = agree(corr)
    out = np.zeros((t, h, w), np.float32)
    for g in np.unique(group):
        members = [i for i in np.flatnonzero(group == g) if frame_maps[i] is not None]
        vote = sum(signs[i] * frame_votes[i] for i in members)
        if abs(vote) < MIN_CORR:
            continue
        for i in members:
            gamma = orient(frame_maps[i], signs[i] * np.sign(vote), cfg["quantile"])
            if gamma is not None:
                out[i] = np.clip(np.nan_to_num(gamma, nan=0.0), 0, 1)
    return out


def _median(maps: list[np.ndarray]) -> np.ndarray | None:
    """Pixel-wise median of the maps (NaN where none is finite); None for no maps."""
    if not maps:
        return None
    stack = np.stack(maps)
    out = np.full(stack.shape[1:], np.nan)
    some = np.isfinite(stack).any(0)
    out[some] = np.nanmedian(stack[:, some], axis=0)
    return out
