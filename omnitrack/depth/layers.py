"""A weight-free layered depth from motion segmentation and occlusion ordering (``depth.method: layers``).

Input: the masks stage's flow store and masks (bit 1: cycle-consistent, bit 2: occluded but reliable).
Output: float32 [T, H, W] in the nvp fit's depth units: the farthest layer at ``far`` (1.0, the fit's
``depth_init``), nearer layers evenly spaced down to ``near`` (default 0.7).

1. **Segmentation** (per frame): the homography test of :mod:`omnitrack.model.motion_init`
   (``independence``: the share of the partners t +- 1, t +- 2 whose flow misses a RANSAC homography
   of the reliable flow by more than ``thresh`` px per frame of gap; with ``follow``, frame t's
   homographies are fitted to the pixels that were static in frame t - 1, so that the static scene
   stays the background where an object fills most of a frame). Pixels with a share > 0.5 are
   "moving"; a 3x3 opening removes speckle; connected components smaller than ``min_area`` (share of
   the frame) are dropped. Everything else is the static scene (one layer, the dominant motion).
2. **Layers through time**: a component of frame t is linked to the component of frame t + 1 that
   its pixels reach through the reliable flow t -> t + 1 (when they carry >= 30 % of the smaller
   component); linked components are one layer of the video (union-find), so every layer keeps one
   depth in every frame.
3. **Order from occlusion**: at a boundary between layers A and B of frame t, the side that disappears
   is behind. For each partner j = t +- g (g in ``gaps``), in the band of ``band`` x g px on each side
   of the A/B boundary, e_A is the share of A's pixels whose flow lands (inside frame j) on layer B
   in frame j (they went behind B), e_B the converse; w = min(|band_A|, |band_B|) pixels vote
   (e_A - e_B) for "A behind B". Summed over the video, a pair whose mean vote exceeds ``margin`` is
   ordered by it; otherwise a moving layer is put in front of the static scene (the motion start's
   assumption) and two moving layers stay unordered. The static scene is one layer and the backdrop:
   a moving layer voted behind it takes its level instead of lifting the whole scene nearer (on the
   DAVIS dev videos such votes came from blips of a few hundred pixels in one or two frames, which put
   the static scene of three of the four videos in front of their moving objects; BENCHMARKS.md §7d).
   Contradictions (cycles) are resolved by keeping the strongest votes first. (``EVIDENCE = "mask"``
   votes with the masks' unreliable share instead: not cycle-consistent, mask bit 1 unset. On the
   synthetic set's DIS flows that vote came out strongly reversed, -0.2 on average: the flow of the
   covered background follows the occluder and passes the cycle test, while mixed flow at the
   object's own edge fails it. The label vote is weak there, |mean| <= 0.13 with mixed signs, hence
   the margin 0.15: the prior decides; BENCHMARKS.md §7.)
4. **Depth**: level = the longest chain of layers behind a layer (0: farthest); depth =
   far - (far - near) * level / max_level. Then a temporal median through the reliable flows: frame
   t's depth is the median of its own map and the maps of frames t +- 1 .. t +- ``temporal`` sampled
   where frame t's pixels land through reliable flow (a frame where a layer was missed takes its
   neighbours' depth; with an even number of values frame t's own counts twice, so the result is
   always one of the values, a layer's depth without the relief of step 5).

5. **The static scene's relief** (``parallax`` > 0): where the camera translates, the static
   pixels' relative inverse depth from plane plus parallax (:mod:`omnitrack.depth.parallax`, gaps
   ``parallax_gaps``), gamma in [0, 1] (0: the farthest static surface), brings them nearer by
   ``parallax`` x gamma (before the temporal median; with the defaults, near 0.7 and parallax 0.15,
   the static scene stays behind a single moving layer); frames without measurable parallax keep
   the static scene at its layer's depth.
"""

from __future__ import annotations

import numpy as np

from omnitrack.flow.store import FlowStore
from omnitrack.interp import flow_targets

DEFAULTS = {
    "near": 0.7,
    "thresh": 1.0,
    "follow": True,
    "samples": 2000,
    "min_area": 0.002,
    "band": 2,
    "gaps": [1, 2, 4],
    "margin": 0.15,
    "temporal": 2,
    "parallax": 0.15,
    "parallax_gaps": [4, 8],
}
LINK_SHARE = 0.3
MIN_BAND = 5
EVIDENCE = "labels"


def segment(score: np.ndarray, min_area: float) -> np.ndarray:
    """Independence share [T, H, W] -> component labels int32 [T, H, W] (0: static scene; ids unique
    over the video)."""
    import cv2

    t, h, w = score.shape
    labels = np.zeros((t, h, w), np.int32)
    kernel = np.ones((3, 3), np.uint8)
    next_id = 1
    for i in range(t):
        moving = cv2.morphologyEx((score[i] > 0.5).astype(np.uint8), cv2.MORPH_OPEN, kernel)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
        for c in range(1, n):
            if stats[c, cv2.CC_STAT_AREA] >= max(1.0, min_area * h * w):
                labels[i][comp == c] = next_id
                next_id += 1
    return labels


def link_layers(labels: np.ndarray, store: FlowStore, mask: np.ndarray) -> np.ndarray:
    """Component labels -> video layer ids (0: static scene; 1..L), linked through the reliable flow t -> t+1."""
    count = int(labels.max()) + 1
    parent = np.arange(count)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    area = np.bincount(labels.ravel(), minlength=count)
    for i in range(labels.shape[0] - 1):
        k = store.index.get((i, i + 1))
        if k is None:
            continue
        row, col, inside = flow_targets(store.get(i, i + 1))
        src = labels[i]
        sel = (src > 0) & inside & ((np.asarray(mask[k]) & 1) > 0)
        dst = labels[i + 1][row[sel], col[sel]]
        a, b = src[sel][dst > 0], dst[dst > 0]
        if a.size == 0:
            continue
        pairs, n = np.unique(np.stack([a, b], 1), axis=0, return_counts=True)
        for (ca, cb), c in zip(pairs, n):
            if c >= LINK_SHARE * min(area[ca], area[cb]):
                parent[find(ca)] = find(cb)
    roots = np.array([find(a) for a in range(count)])
    roots[0] = 0
    _, layer = np.unique(roots, return_inverse=True)  # 0 stays 0: it is the smallest root
    return layer.astype(np.int32)[labels]


def occlusion_votes(layers: np.ndarray, store: FlowStore, mask: np.ndarray, band: int, gaps=(1, 2, 4)):
    """-> (votes [L, L], weights [L, L]): votes[a, b] = sum of w (e_a - e_b) over boundaries of a and b
    (positive: a is behind b); antisymmetric; weights symmetric. Partners j = i +- g for g in ``gaps``,
    with a band of ``band`` x g px (what disappears grows with the gap)."""
    import cv2

    t = layers.shape[0]
    n = int(layers.max()) + 1
    votes, weights = np.zeros((n, n)), np.zeros((n, n))
    for i in range(t):
        present = np.unique(layers[i])
        if present.size < 2:
            continue
        for j in [i + s * g for g in gaps for s in (-1, 1)]:
            k = store.index.get((i, j))
            if k is None:
                continue
            width = band * abs(i - j)
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
            grown = {a: cv2.dilate((layers[i] == a).astype(np.uint8), kernel) > 0 for a in present}
            row, col, inside = flow_targets(store.get(i, j))
            occluded = ((np.asarray(mask[k]) & 1) == 0) & inside
            landed = layers[j][row, col]
            for x, a in enumerate(present):
                for b in present[x + 1 :]:
                    band_a = grown[b] & (layers[i] == a) & inside
                    band_b = grown[a] & (layers[i] == b) & inside
                    na, nb = int(band_a.sum()), int(band_b.sum())
                    if min(na, nb) < MIN_BAND:
                        continue
                    w = min(na, nb)
                    if EVIDENCE == "mask":
                        v = w * (occluded[band_a].mean() - occluded[band_b].mean())
                    else:  # a's pixels that land on b in frame j went behind b
                        v = w * ((landed[band_a] == b).mean() - (landed[band_b] == a).mean())
                    votes[a, b] += v
                    votes[b, a] -= v
                    weights[a, b] += w
                    weights[b, a] += w
    return votes, weights


def order_levels(votes: np.ndarray, weights: np.ndarray, margin: float) -> np.ndarray:
    """Level per layer (0: farthest) from the occlusion votes. The static scene (layer 0) is the
    backdrop: a moving layer is in front of it (the votes or, undecided, the prior) or, voted behind
    it, at its level; moving layers are ordered among themselves by their votes."""
    n = len(votes)
    edges = []  # (strength, behind, front)
    for a in range(n):
        for b in range(a + 1, n):
            z = votes[a, b] / weights[a, b] if weights[a, b] > 0 else 0.0
            if a == 0:  # in front of the static scene by the votes or the prior; voted behind it: no edge
                if z >= -margin:
                    edges.append((max(z, 0.0), 0, b))
            elif abs(z) > margin:
                edges.append((abs(z), a, b) if z > 0 else (abs(z), b, a))
    front_of = [set() for _ in range(n)]  # front_of[x]: layers directly in front of x

    def reaches(src, dst):
        stack, seen = [src], {src}
        while stack:
            x = stack.pop()
            if x == dst:
                return True
            for y in front_of[x] - seen:
                seen.add(y)
                stack.append(y)
        return False

    for _, behind, front in sorted(edges, key=lambda e: -e[0]):
        if not reaches(front, behind):  # adding behind -> front keeps the graph acyclic
            front_of[behind].add(front)
    level = np.zeros(n, np.int64)
    for _ in range(n):  # longest path from the farthest layers (n rounds suffice in a DAG)
        for x in range(n):
            for y in front_of[x]:
                level[y] = max(level[y], level[x] + 1)
    return level


def temporal_median(depth: np.ndarray, store: FlowStore, mask: np.ndarray, reach: int) -> np.ndarray:
    """Median of frame t's depth and frames t +- 1..reach sampled through the reliable flow t -> k."""
    if reach <= 0:
        return depth
    t = depth.shape[0]
    out = np.empty_like(depth)
    for i in range(t):
        stack = [depth[i]]
        for k in range(max(0, i - reach), min(t, i + reach + 1)):
            p = store.index.get((i, k))
            if k == i or p is None:
                continue
            row, col, inside = flow_targets(store.get(i, k))
            sample = depth[k][row, col].astype(np.float32)
            sample[~(inside & ((np.asarray(mask[p]) & 1) > 0))] = np.nan
            stack.append(sample)
        count = np.sum([~np.isnan(a) for a in stack], axis=0)
        stack.append(np.where(count % 2 == 0, depth[i], np.nan))  # an odd count: the median is one of the values
        out[i] = np.nanmedian(np.stack(stack), axis=0)
    return out


def layered_depth(
    store: FlowStore,
    mask: np.ndarray,
    cfg: dict | None = None,
    seed: int = 1234,
    far: float = 1.0,
    details: bool = False,
):
    """The layered depth of a video (see the module docstring) -> float32 [T, H, W]; with ``details``,
    also {"layers": int32 [T, H, W], "levels": [L], "votes", "weights", "parallax": the static relief
    gamma float32 [T, H, W] (None with ``parallax`` 0)}."""
    from omnitrack.model.motion_init import independence

    cfg = {**DEFAULTS, **(cfg or {})}
    if not 0 < cfg["near"] <= far:
        raise ValueError(f"depth.layers.near must be in (0, {far}], got {cfg['near']}")
    score = independence(
        store,
        mask,
        {"motion_init_samples": cfg["samples"], "motion_init_thresh": cfg["thresh"]},
        np.random.default_rng(seed),
        follow=bool(cfg["follow"]),
    )
    layers = link_layers(segment(score, float(cfg["min_area"])), store, mask)
    votes, weights = occlusion_votes(layers, store, mask, int(cfg["band"]), tuple(cfg["gaps"]))
    level = order_levels(votes, weights, float(cfg["margin"]))
    top = max(int(level.max()), 1)
    value = (far - (far - float(cfg["near"])) * level / top).astype(np.float32)
    depth = value[layers]
    gamma = None
    if cfg["parallax"] > 0:
        from omnitrack.depth.parallax import static_parallax

        gamma = static_parallax(store, mask, layers == 0, {"gaps": list(cfg["parallax_gaps"])}, seed)
        depth = depth - np.float32(cfg["parallax"]) * gamma
    depth = temporal_median(depth, store, mask, int(cfg["temporal"])).astype(np.float32)
    if details:
        return depth, {"layers": layers, "levels": level, "votes": votes, "weights": weights, "parallax": gamma}
    return depth
