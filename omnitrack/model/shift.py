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
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import FlowStore

MIN_PIXELS = 64  # reliable pixels below which a pair's median uses its whole flow


def frame_shift(store: FlowStore, mask: np.ndarray) -> np.ndarray:
    """-> float32 [T, 2]: the (x, y) shift of each frame in pixels, frame 0 at (0, 0).

    store: a masks directory's flow store (every pair (i, i + 1)); mask: its uint8 [P, H, W] mask.
    """
    t = store.num_frames
    steps = np.zeros((t, 2), np.float64)
    for i in range(t - 1):
        k = store.index.get((i, i + 1))
        if k is None:
            continue
        flow = store.get(i, i + 1).reshape(-1, 2)
        good = np.asarray(mask[k]).reshape(-1) & 1 != 0
        steps[i + 1] = np.median(flow[good] if good.sum() >= MIN_PIXELS else flow, 0)
    return (-np.cumsum(steps, 0)).astype(np.float32)
