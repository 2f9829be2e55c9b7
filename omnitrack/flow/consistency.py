"""Reliability masks of the pairwise flows, chaining, and per-frame count maps (upstream §2.3-2.4).

For every pair (i, j) of a flow store, with f = flow i->j and b = flow j->i, at pixel x of frame i:

- cycle-consistent: ||f(x) + b(x + f(x))|| < cycle_th, and for |i - j| >= 3 (with features) the
  cosine of the bilinearly upsampled descriptors of x in frame i and x + f(x) in frame j
  > appearance_th;
- occluded but reliable (|i - j| < 3 only): the first cycle fails by more than 1.5 cycle_th, the
  second one, from x' = x + f(x) + b(x + f(x)), passes: ||x' + f(x') - (x + f(x))|| < cycle_th, and
  x + f(x) lies inside frame j (x is hidden in frame j behind something that moves consistently).

Chaining (``chain=True``) densifies long pairs: along each sweep i -> i±1 -> i±2 ..., flows of
consecutive frames are composed; a composed correspondence stays reliable while every step lands
on a cycle-consistent pixel (all four bilinear neighbours), inside the image, with descriptor cosine
> chain_appearance_th (when features are given) and RGB distance < chain_rgb_th (RGB in [0, 1]) to
frame i. Where the direct flow is cycle-consistent or occluded-but-reliable, it replaces the
composed flow; the chained reliable mask is forced True where the direct cycle mask is True and
False where the direct occlusion mask is True.

A flow store may hold direct flows of some gaps only (the flow stage's ``gaps``, to save flow time):
with chaining, the masks directory still has every pair of the window, and a pair without a direct
flow carries the chained flow and its reliability alone.

Confirmation (``confirm_th`` px, not upstream; None: upstream's rule above). For |i - j| >= 2 a
cycle-consistent direct flow is trusted only where the chain reached the pixel and the two agree
within ``confirm_th``; where both exist and disagree, one of them is wrong and the pixel is
dropped (also from the rest of the sweep). Why: with flow methods that fail alike in both
directions (DIS on moving objects, RAFT on fast ones), many long-gap direct flows pass the cycle test
and are wrong: on the synthetic set 43 % of the reliable object flows were more than 3 px off
(98 % at gap 16); with confirmation and RAFT-encoder appearance at 0.6, at most 4.6 % at any gap
(BENCHMARKS.md, "Flow quality"). Upstream relies on DINO's appearance check for this.

Output directory (atomic): a flow store (flow.npy, meta.json: the chained flow when chaining) plus
``mask.npy`` uint8 [P, H, W] (1: cycle-consistent / reliable, 2: occluded but reliable, 0: neither)
and ``counts.npy`` uint16 [T, H, W] (number of pairs (t, j) with a non-zero mask at each pixel of t).

Memory: one source frame at a time; flows are read from the memory-mapped store.
Pixel convention (docs/formats.md): the flow at array index (r, c) moves point (c + 0.5, r + 0.5),
so the target's array index coordinate is (c + dx, r + dy), which is what cv2.remap takes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError, InputError
from omnitrack.flow.store import SCALE, FlowStore, encode, window_pairs
from omnitrack.interp import bilinear_corners
from omnitrack.io import NpyRows, atomic_path, open_npy, write_json

RELIABLE, OCCLUDED = 1, 2
APPEARANCE_MIN_GAP = 3
CONFIRM_MIN_GAP = 2
_STORE_KEYS = ("num_frames", "height", "width", "pairs", "scale")


def _remap(arr: np.ndarray, map_xy: np.ndarray, outside: float | None = None) -> np.ndarray:
    """Bilinear sample of ``arr`` [H, W(, C)] at array-index coordinates ``map_xy`` [H, W, 2].

    outside=None replicates the border; a number is used for samples off the image.
    """
    import cv2

    border = cv2.BORDER_REPLICATE if outside is None else cv2.BORDER_CONSTANT
    mx, my = (np.ascontiguousarray(map_xy[..., c], np.float32) for c in (0, 1))
    return cv2.remap(
        np.ascontiguousarray(arr, np.float32),
        mx,
        my,
        cv2.INTER_LINEAR,
        borderMode=border,
        borderValue=0.0 if outside is None else float(outside),
    )


def _inside(map_xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """Is the point at array-index coordinate map_xy inside the image (pixel coords [0, W) x [0, H))?"""
    x, y = map_xy[..., 0] + 0.5, map_xy[..., 1] + 0.5
    return (x >= 0) & (x < w) & (y >= 0) & (y < h)


class _Features:
    """Descriptor cosine between the pixel centres of a source frame and points of another frame.

    Descriptors are sampled bilinearly in the descriptor grid (border replicated), so a sampled
    descriptor is a weighted sum of 4 cells and the dot product of two samples is a weighted sum of 16
    cell-to-cell dot products. Those come from the Gram matrix of the two frames' cells ([M, M], M cells
    per frame, one matrix product per frame pair), so no [C, H*W] descriptor map is ever interpolated:
    with RAFT's 256-d encoder on 256x256 frames this is ~15x faster than sampling and summing. Grids
    whose Gram matrix would exceed ``gram_bytes`` interpolate the descriptors of the points instead
    (same result). Gram matrices of recent frame pairs are kept up to ``8 * gram_bytes`` in all.
    """

    def __init__(self, features: dict, num_frames: int, centres: np.ndarray, gram_bytes: int = 64 << 20):
        """centres [H, W, 2]: the (x, y) pixel centres of a frame."""
        import torch

        desc = features["descriptors"]
        cell = np.asarray(features["cell"], np.float64).reshape(-1)
        if desc.ndim != 4 or desc.shape[0] != num_frames or cell.shape != (2,):
            raise ValueError(
                f"features must hold descriptors [T={num_frames}, h, w, C] and cell [2], "
                f"got {desc.shape} and {cell.shape}"
            )
        self.grid = desc.shape[1:3]
        self.cell = cell
        self.desc = torch.from_numpy(np.asarray(desc, np.float32).reshape(num_frames, -1, desc.shape[-1]))
        self.centre_idx, self.centre_w = self._corners(centres.reshape(-1, 2))
        cells = self.desc.shape[1]
        self._gram_max = 8 if cells * cells * 4 <= gram_bytes else 0  # Gram matrices kept; 0: none made
        self._gram: dict[tuple[int, int], object] = {}
        # dot products within each cell's 2x2 block (the cells a sample whose first corner it is mixes)
        row, col = np.divmod(np.arange(cells), self.grid[1])
        right, down = (col < self.grid[1] - 1).astype(np.int64), (row < self.grid[0] - 1) * self.grid[1]
        block = torch.from_numpy(
            np.stack([np.zeros_like(row), right, down, down + right], 1) + np.arange(cells)[:, None]
        )
        self._block_gram = torch.stack(
            [torch.einsum("mac,mbc->mab", d[block], d[block]).reshape(cells, 16) for d in self.desc]
        )
        self._source = (None, None)  # frame, norms of its descriptors at all pixel centres [H*W]

    def _corners(self, xy: np.ndarray):
        """Cells (row-major, the first the 2x2 block's top-left) and bilinear weights of points xy [N, 2]
        (pixels; border replicated, as ``omnitrack.interp.bilinear``) -> (int64 [4, N], float32 [4, N]), one
        contiguous row per corner."""
        import torch

        w = self.grid[1]
        (y0, x0, y1, x1), (fx, fy) = bilinear_corners(xy / self.cell, *self.grid)
        idx = np.stack([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
        wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]).astype(np.float32)
        return torch.from_numpy(idx), torch.from_numpy(wts)

    def _dots(self, i: int, j: int, idx_a, w_a, idx_b, w_b):
        """[N]: dot products of frame i's samples (cells idx_a, weights w_a) with frame j's (idx_b, w_b)."""
        import torch

        n = idx_a.shape[1]
        if not self._gram_max:  # interpolate, in chunks that keep the [n, 4, C] gathers small
            out = torch.empty(n)
            for s in range(0, n, 16384):
                a = (self.desc[i][idx_a[:, s : s + 16384].t()] * w_a[:, s : s + 16384].t()[:, :, None]).sum(1)
                b = (self.desc[j][idx_b[:, s : s + 16384].t()] * w_b[:, s : s + 16384].t()[:, :, None]).sum(1)
                out[s : s + 16384] = (a * b).sum(1)
            return out
        key = (i, j)
        if key not in self._gram:
            if len(self._gram) >= self._gram_max:
                del self._gram[next(iter(self._gram))]
            self._gram[key] = (self.desc[i] @ self.desc[j].T).reshape(-1)
        gram, m = self._gram[key], self.desc.shape[1]
        rows_a = idx_a * m
        out = torch.zeros(n)
        for a in range(4):
            for b in range(4):
                # (contiguous corner rows and take: together 1.8x faster than [N, 4] columns and indexing)
                out += gram.take(rows_a[a] + idx_b[b]) * (w_a[a] * w_b[b])
        return out

    def _norms(self, t: int, idx, wts):
        """[N]: norms of frame t's samples (cells idx, weights wts from ``_corners``)."""
        pairs = (wts[:, None] * wts[None]).reshape(16, -1).t()  # [N, 16]: corner a's weight times corner b's
        sq = (self._block_gram[t].index_select(0, idx[0]) * pairs).sum(1)
        return sq.clamp_min_(0).sqrt_()

    def cosine(self, i: int, flat: np.ndarray, j: int, xy_j: np.ndarray) -> np.ndarray:
        """float32 [N]: cosine of frame i's descriptor at its pixel centres ``flat`` [N] (row-major
        pixel indices) and frame j's at points xy_j [N, 2]."""
        import torch

        if self._source[0] != i:
            self._source = (i, self._norms(i, self.centre_idx, self.centre_w))
        idx = torch.from_numpy(np.asarray(flat, np.int64))
        a, wa = self.centre_idx.index_select(1, idx), self.centre_w.index_select(1, idx)
        b, wb = self._corners(np.asarray(xy_j, np.float64))
        norms = (self._source[1].take(idx) * self._norms(j, b, wb)).clamp_min(1e-12)
        return (self._dots(i, j, a, wa, b, wb) / norms).numpy()


def _appearance_ok(
    feats: _Features, i: int, j: int, target_xy: np.ndarray, candidates: np.ndarray, threshold: float
) -> np.ndarray:
    """bool [H, W]: candidates whose descriptor cosine between frame i (at their pixel centres) and
    frame j (at target_xy [H, W, 2], pixel coordinates) > threshold."""
    ok = np.zeros_like(candidates)
    flat = np.flatnonzero(candidates)
    if flat.size:
        ok.reshape(-1)[flat] = feats.cosine(i, flat, j, target_xy.reshape(-1, 2)[flat]) > threshold
    return ok


def direct_masks(f: np.ndarray, b: np.ndarray, gap: int, cycle_th: float) -> tuple[np.ndarray, np.ndarray]:
    """Cycle-consistent and occluded-but-reliable masks (bool [H, W] each) of one pair.

    f: flow i->j, b: flow j->i, float32 [H, W, 2]; gap = |i - j|. No appearance check here.
    """
    h, w = f.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    target = grid + f  # index coordinates of x + f(x) in frame j
    back = _remap(b, target)  # b(x + f(x))
    err = np.linalg.norm(f + back, axis=-1)
    cycle = err < cycle_th
    if gap >= APPEARANCE_MIN_GAP:
        return cycle, np.zeros_like(cycle)
    second = target + back  # x' (index coordinates in frame i)
    err2 = np.linalg.norm(back + _remap(f, second), axis=-1)
    occluded = (err > 1.5 * cycle_th) & (err2 < cycle_th) & _inside(target, h, w)
    return cycle, occluded


def compute_masks(
    frames: np.ndarray,
    flow_store: FlowStore,
    out_dir: str | Path,
    features: dict | None = None,
    cycle_th: float = 3.0,
    appearance_th: float = 0.0,
    chain: bool = True,
    chain_appearance_th: float = 0.5,
    chain_rgb_th: float = 0.3,
    confirm_th: float | None = 2.0,
    progress: bool = True,
) -> None:
    """Write the masks directory ``out_dir`` for ``flow_store`` (see the module docstring).

    frames: uint8 [T, H, W, 3] (RGB check of chaining). features: None (appearance checks skipped)
    or {"descriptors": float [T, h, w, C] L2-normalised, "cell": [cx, cy] pixels per cell}.
    """
    from tqdm import tqdm

    t, h, w = flow_store.num_frames, flow_store.height, flow_store.width
    if tuple(frames.shape) != (t, h, w, 3):
        raise ValueError(f"frames {frames.shape} do not match the flow store {flow_store.path} ({t}x{h}x{w})")
    gaps = sorted({abs(i - j) for i, j in flow_store.pairs})
    window = max(gaps[-1], int(flow_store.meta.get("window", 0)))  # the flow stage's window, whatever its gaps
    if not chain and len(gaps) < window:
        raise InputError(
            flow_store.path,
            f"holds direct flows of gaps {gaps} only, and without chaining every gap 1..{window} needs one",
            hint="set masks.chain: true, or flow.gaps: null",
        )
    flow_store.check_window(window if not chain else 1)  # chaining steps by gap 1 and chains the rest
    pairs = window_pairs(t, window)
    index = {p: k for k, p in enumerate(pairs)}
    centres = np.stack(np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5), -1).astype(np.float32)
    feats = None if features is None else _Features(features, t, centres)
    params = {
        "cycle_th": cycle_th,
        "appearance_th": appearance_th,
        "appearance": feats is not None,
        "chain": chain,
        "chain_appearance_th": chain_appearance_th,
        "chain_rgb_th": chain_rgb_th,
        "confirm_th": confirm_th if chain else None,
    }
    meta = {
        **{k: v for k, v in flow_store.meta.items() if k not in _STORE_KEYS},
        "num_frames": t,
        "height": h,
        "width": w,
        "pairs": [list(p) for p in pairs],
        "scale": SCALE,
        "window": window,
        "direct_gaps": gaps,
        "masks": params,
    }
    by_source: dict[int, list[int]] = {}
    for k, (i, _) in enumerate(pairs):
        by_source.setdefault(i, []).append(k)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        flow_out = NpyRows(tmp / "flow.npy", (len(pairs), h, w, 2), np.int16)
        mask = NpyRows(tmp / "mask.npy", (len(pairs), h, w), np.uint8)
        counts = NpyRows(tmp / "counts.npy", (t, h, w), np.uint16)
        bar = dict(file=sys.stderr, disable=not progress, unit="frame")
        for i in tqdm(range(t), desc=f"masks {Path(out_dir).name}", **bar):
            for k in by_source.get(i, []):
                j = pairs[k][1]
                if (i, j) not in flow_store.index:
                    mask[k] = 0
                    continue
                f = flow_store.get(i, j)
                cycle, occluded = direct_masks(f, flow_store.get(j, i), abs(i - j), cycle_th)
                if feats is not None and abs(i - j) >= APPEARANCE_MIN_GAP:
                    cycle = _appearance_ok(feats, i, j, centres + f, cycle, appearance_th)
                mask[k] = cycle * RELIABLE + occluded * OCCLUDED
        # Chaining reads only the masks of consecutive pairs, which it leaves unchanged.
        for i in tqdm(range(t), desc=f"{'chain' if chain else 'count'} {Path(out_dir).name}", **bar):
            ks = by_source.get(i, [])
            if chain:
                _chain_source(
                    i,
                    frames,
                    flow_store,
                    index,
                    mask,
                    flow_out,
                    feats,
                    centres,
                    window,
                    chain_appearance_th,
                    chain_rgb_th,
                    confirm_th,
                )
            else:
                for k in ks:
                    flow_out[k] = encode(flow_store.get(*pairs[k]))
            counts[i] = np.sum([mask[k] != 0 for k in ks], axis=0, dtype=np.uint16) if ks else 0
        for a in (flow_out, mask, counts):
            a.close()
        write_json(tmp / "meta.json", meta)


def _chain_source(
    i, frames, store: FlowStore, index, mask, flow_out, feats, centres, window, app_th, rgb_th, confirm_th
) -> None:
    """Chained flows and masks of every pair (i, j) of the window (row ``index[(i, j)]`` of mask and
    flow_out), written in place (see module doc). Pairs without a direct flow in ``store`` are chained only."""
    t, h, w = store.num_frames, store.height, store.width
    grid = centres - 0.5
    rgb_i = frames[i].astype(np.float32) / 255
    for step in (1, -1):
        acc = np.zeros((h, w, 2), np.float32)
        ok = np.ones((h, w), bool)
        for gap in range(1, window + 1):
            j, prev = i + step * gap, i + step * (gap - 1)
            if not 0 <= j < t:
                break
            pos = grid + acc  # index coordinates in frame prev
            k_step = index[(prev, j)]
            step_reliable = _remap((mask[k_step] & RELIABLE).astype(np.float32), pos, outside=0.0) > 0.999
            acc = acc + _remap(store.get(prev, j), pos)
            target = grid + acc
            ok &= step_reliable & _inside(target, h, w)
            rgb_j = _remap(frames[j].astype(np.float32) / 255, target)
            ok &= np.linalg.norm(rgb_j - rgb_i, axis=-1) < rgb_th
            if feats is not None:
                ok = _appearance_ok(feats, i, j, target + 0.5, ok, app_th)
            k = index[(i, j)]
            if (i, j) not in store.index:
                flow_out[k] = encode(acc)
                mask[k] = ok * RELIABLE
                continue
            direct = mask[k]
            reliable, occluded = (direct & RELIABLE) > 0, (direct & OCCLUDED) > 0
            flow = store.get(i, j)
            if confirm_th is not None and gap >= CONFIRM_MIN_GAP:
                # a direct flow is trusted only where the chain reached it and agrees; where they
                # disagree one of them is wrong and neither is kept (nor chained further)
                agree = np.linalg.norm(flow - acc, axis=-1) < confirm_th
                ok &= ~reliable | agree
                reliable &= ok
            use_direct = reliable | occluded
            acc[use_direct] = flow[use_direct]
            ok = (ok | reliable) & ~occluded
            flow_out[k] = encode(acc)
            mask[k] = ok * RELIABLE + occluded * OCCLUDED


def load_masks(path: str | Path) -> tuple[FlowStore, np.ndarray, np.ndarray]:
    """-> (flow store of the training flow, mask uint8 [P, H, W] memmap, counts uint16 [T, H, W] memmap)."""
    path = Path(path)
    store = FlowStore(path)
    if "masks" not in store.meta:
        raise CacheError(path / "meta.json", "is a plain flow store, not a masks directory (no 'masks' entry)")
    mask = open_npy(path / "mask.npy", (len(store), store.height, store.width), np.uint8)
    counts = open_npy(path / "counts.npy", (store.num_frames, store.height, store.width), np.uint16)
    return store, mask, counts
