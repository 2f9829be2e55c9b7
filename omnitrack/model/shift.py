"""The image shift of each frame's dominant motion, removed before the lift (not upstream; ``frame_shift``).

CaDeX++ maps every frame into one canonical space with monotone couplings whose inner knots (input
and output) lie within +-2 normalised units, and the scene bound normalises the frame, not what the
camera sweeps over. A camera that pans across more than its own frame (motocross-jump: 272 x 266 px
of dominant motion on 256 x 256 frames, car-roundabout 160 px) asks the map for translations of
several units that the couplings cannot make: on motocross-jump the fit missed its own gap-1
training flows by 1.3 px (median over the video, 2-4 px from frame 11 on; BENCHMARKS.md §5e).

With ``frame_shift`` the pixel (x, y) of frame t is lifted at (x + s_t, y + r_t), where (s_t, r_t) =
minus the sum of the median reliable consecutive flows of frames 0 .. t-1: a point of a scene that
only pans keeps its shifted coordinates in every frame, the scene bound covers the whole panorama,
and the deformation is left with the residual motion. For small angles a pan moves the image by
the same amount at every depth, so the depth maps keep their meaning; projecting subtracts the target
frame's shift again, so tracks stay in frame pixels.

With ``frame_similarity`` each frame's dominant motion is a similarity about the image centre instead
(:func:`frame_similarity`): a camera that rolls about its axis moves the image the same way at every
depth too, and a zoom reads as a change of focal length, so the depth maps keep their meaning there as
well.
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import FlowStore

MIN_PIXELS = 64  # reliable pixels below which a pair's median uses its whole flow


def frame_shift(store: FlowStore, mask: np.ndarray) -> np.ndarray:
    """-> float32 [T, 2]: the (x, y) shift of each frame in pixels, frame 0 at (0, 0).

    store: a masks directory's flow store (every pair (i, i + 1)); mask: its uint8 [P, H, W] mask.
    """
    steps = np.zeros((store.num_frames, 2), np.float64)
    for i, flow, good in _consecutive(store, mask):
        steps[i + 1] = np.median(flow[good], 0)
    return (-np.cumsum(steps, 0)).astype(np.float32)


def _consecutive(store: FlowStore, mask: np.ndarray):
    """Yield (i, flow [H * W, 2], good bool [H * W]) for every stored pair (i, i + 1): good marks the
    cycle-consistent pixels, or every pixel when fewer than MIN_PIXELS are."""
    for i in range(store.num_frames - 1):
        k = store.index.get((i, i + 1))
        if k is None:
            continue
        flow = store.get(i, i + 1).reshape(-1, 2)
        good = np.asarray(mask[k]).reshape(-1) & 1 != 0
        yield i, flow, good if good.sum() >= MIN_PIXELS else np.ones_like(good)


MAX_STEP_SCALE = 1.25  # a consecutive pair's fitted scale beyond [1/x, x] is not trusted: shift only
MAX_SCALE = 2.0  # a frame's chained scale is held within [1/x, x] (a long video's drift stays bounded)
IRLS_ROUNDS = 5
INLIER_PX = 1.0


def _similarity(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust similarity q ~ M p + t of points p, q [N, 2] (M = [[a, -b], [b, a]]): least squares
    reweighted by 1 / max(residual, 1 px) (a few rounds, an L1-like fit), then plain least squares
    over the points it leaves within 1 px -> M [2, 2], t [2]."""
    n = len(p)
    a = np.zeros((2 * n, 4))
    a[0::2, 0], a[0::2, 1], a[0::2, 2] = p[:, 0], -p[:, 1], 1.0
    a[1::2, 0], a[1::2, 1], a[1::2, 3] = p[:, 1], p[:, 0], 1.0
    rhs = q.reshape(-1)
    weight = np.ones(n)
    for _ in range(IRLS_ROUNDS):
        sw = np.repeat(np.sqrt(weight), 2)
        x = np.linalg.lstsq(a * sw[:, None], rhs * sw, rcond=None)[0]
        residual = np.linalg.norm((a @ x - rhs).reshape(-1, 2), axis=1)
        weight = 1.0 / np.maximum(residual, 1.0)
    if np.count_nonzero(residual <= INLIER_PX) >= MIN_PIXELS:
        weight = (residual <= INLIER_PX).astype(np.float64)
        sw = np.repeat(weight, 2)
        x = np.linalg.lstsq(a * sw[:, None], rhs * sw, rcond=None)[0]
    return np.array([[x[0], -x[1]], [x[1], x[0]]]), x[2:]


def frame_similarity(store: FlowStore, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (shift float32 [T, 2], linear float32 [T, 2, 2]): frame t's pixel p maps to
    linear[t] @ (p - c) + c + shift[t] in frame 0's coordinates (c: the image centre); frame 0 at the
    identity.

    Like :func:`frame_shift` but each consecutive pair's dominant motion is a similarity (rotation,
    scale and shift about the image centre) fitted robustly to its reliable flow, so a camera that
    rolls or zooms (motocross-jump: 5-14 degrees per frame from frame 13) is also removed before the
    lift. Chained: G_{t+1} = G_t o F_t^-1 for the fitted map F_t of frame t to frame t + 1. A pair
    whose fitted scale is outside [1 / 1.25, 1.25] keeps only its shift (median flow, as frame_shift);
    a frame whose chained scale leaves [1 / 2, 2] is scaled back to that bound about its centre's
    place, so the deformation is left the rest of a long zoom rather than a frame squeezed to a dot.
    """
    t, h, w = store.num_frames, store.height, store.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    centred = np.stack([xs.ravel() - w / 2, ys.ravel() - h / 2], 1)
    linear = np.tile(np.eye(2), (t, 1, 1))
    shift = np.zeros((t, 2))
    maps = {}
    for i, flow, good in _consecutive(store, mask):
        flow = flow[good].astype(np.float64)
        m, step = _similarity(centred[good], centred[good] + flow)
        if not 1 / MAX_STEP_SCALE <= np.sqrt(abs(np.linalg.det(m))) <= MAX_STEP_SCALE:
            m, step = np.eye(2), np.median(flow, 0)
        maps[i] = m, step
    for i in range(t - 1):
        m, step = maps.get(i, (np.eye(2), np.zeros(2)))
        back = linear[i] @ np.linalg.inv(m)
        linear[i + 1] = back
        shift[i + 1] = shift[i] - back @ step
    scale = np.sqrt(np.abs(np.linalg.det(linear)))
    linear *= (np.clip(scale, 1 / MAX_SCALE, MAX_SCALE) / scale)[:, None, None]
    return shift.astype(np.float32), linear.astype(np.float32)
