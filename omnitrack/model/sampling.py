"""Training batches: flow pairs and pixels from the masked flows, and long-term match pairs.

Flow pairs (upstream's 'simple' dataset, without its preloading): each step draws ``num_pairs``
first frames i uniformly from a centred curriculum window (``curriculum_start`` frames, widened by
``curriculum_inc`` every ``curriculum_every`` steps) and a partner j within +-``partner_window`` with
probability ~ Normal pdf(max(|i-j|, partner_flat) / partner_sigma), among the pairs of the store
with enough reliable pixels. Pixels of a pair are drawn (with replacement) with probability
proportional to 1/sqrt(count_i + 1) over reliable mask pixels (bit 1 or 2); with ``error_sampling``
(not upstream: OmniMotion's error-driven sampling, online) that weight is multiplied by the recent
flow error of the pixel's ``error_cell`` x ``error_cell`` cell in frame i plus ``error_floor`` px, an
exponential moving average of the per-point errors the trainer feeds back (:meth:`update`), so the
pixels the model does not fit yet (small independently moving objects) are drawn more often. Only the drawn pairs'
mask rows and the drawn pixels' flows are read from the memory-mapped store, so host memory does
not grow with the number of frames or pairs. The pair weight is cos((|i-j| - 1) / window * angle).

Matches (upstream's 'long' dataset with a fixed per-pair count instead of the global minimum):
``match_pairs`` frame pairs with at least ``match_min`` matches, each with ``match_points`` matches
drawn with replacement, the direction swapped with probability 1/2.

All randomness comes from one numpy Generator, whose state the checkpoints save.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from omnitrack.errors import InputError
from omnitrack.flow.store import SCALE, FlowStore


@dataclass
class FlowBatch:
    fi: np.ndarray  # int64 [B]
    fj: np.ndarray  # int64 [B]
    p1: np.ndarray  # float32 [B, Q, 2] source pixel centres (x, y)
    p2: np.ndarray  # float32 [B, Q, 2] flow targets (x, y)
    occluded: np.ndarray  # bool [B, Q]: occluded-but-reliable correspondence (mask bit 2 only)
    weight: np.ndarray  # float32 [B] pair weight


@dataclass
class MatchBatch:
    fi: np.ndarray  # int64 [B]
    fj: np.ndarray  # int64 [B]
    p1: np.ndarray  # float32 [B, Q, 2]
    p2: np.ndarray  # float32 [B, Q, 2]


class FlowSampler:
    def __init__(self, store: FlowStore, mask: np.ndarray, counts: np.ndarray, cfg: dict):
        self.store, self.mask, self.counts = store, mask, counts
        self.cfg = cfg
        t, h, w = store.num_frames, store.height, store.width
        self.num_frames = t
        # partners lie within partner_window, or within the flow window when the store's is smaller
        # (a store missing pairs of its own window is an error)
        window = min(int(cfg["partner_window"]), max(abs(i - j) for i, j in store.pairs))
        store.check_window(min(window, t - 1))
        min_valid = max(1, int(cfg["min_valid_fraction"] * h * w))
        self.pair_index = np.full((t, t), -1, np.int64)
        prob = np.zeros((t, t))
        for (i, j), k in store.index.items():
            gap = abs(i - j)
            if 0 < gap <= window and np.count_nonzero(mask[k] & 3) >= min_valid:
                self.pair_index[i, j] = k
                prob[i, j] = math.exp(-0.5 * (max(gap, cfg["partner_flat"]) / cfg["partner_sigma"]) ** 2)
        total = prob.sum(1, keepdims=True)
        self.has_partner = total[:, 0] > 0
        if not self.has_partner.any():
            raise InputError(
                store.path,
                f"no flow pair within +-{window} frames has at least {min_valid} reliable "
                f"mask pixels; the masks are empty or the video is too short",
            )
        self.cdf = np.cumsum(prob / np.maximum(total, 1e-300), 1)
        self.cdf[self.has_partner, -1] = 1.0
        self.error = None  # error map [T, cells] (px; -1 = not seen yet), with error_sampling only
        if cfg["error_sampling"]:
            cell = int(cfg["error_cell"])
            self.cells_x = -(-w // cell)
            rows, cols = np.divmod(np.arange(h * w), w)
            self.pixel_cell = (rows // cell) * self.cells_x + cols // cell
            self.error = np.full((t, self.pixel_cell.max() + 1), -1.0)

    def error_weight(self, frame: int) -> np.ndarray:
        """Pixel weight factor [H * W] of ``frame``: its cell's error (unseen cells: the frame's
        largest, 1 px if none is seen) + ``error_floor``."""
        e = self.error[frame]
        seen = e >= 0
        e = np.where(seen, e, e[seen].max() if seen.any() else 1.0)
        return np.take(e + self.cfg["error_floor"], self.pixel_cell)

    def update(self, fi: np.ndarray, p1: np.ndarray, error: np.ndarray) -> None:
        """Feed back per-point flow errors [B, Q] of a batch (fi [B], p1 [B, Q, 2]) into the error map:
        each touched cell moves to its batch mean by the fraction ``error_ema`` (a first sighting sets it)."""
        if self.error is None:
            return
        cell = int(self.cfg["error_cell"])
        col = (p1[..., 0] // cell).astype(np.int64)
        row = (p1[..., 1] // cell).astype(np.int64)
        key = (np.broadcast_to(fi[:, None], row.shape) * self.error.shape[1] + row * self.cells_x + col).ravel()
        sums = np.bincount(key, error.ravel().astype(np.float64), self.error.size)
        counts = np.bincount(key, minlength=self.error.size)
        flat = self.error.reshape(-1)
        hit = counts > 0
        mean = sums[hit] / counts[hit]
        old = flat[hit]
        a = float(self.cfg["error_ema"])
        flat[hit] = np.where(old < 0, mean, (1 - a) * old + a * mean)

    def window(self, step: int) -> tuple[int, int]:
        """Curriculum: the frames [lo, hi) from which first frames are drawn at ``step``."""
        cfg, t = self.cfg, self.num_frames
        size = min(t, cfg["curriculum_start"] + cfg["curriculum_inc"] * (step // cfg["curriculum_every"]))
        lo = min(max(0, t // 2 - size // 2), t - size)
        return lo, lo + size

    def sample(self, step: int, rng: np.random.Generator) -> FlowBatch:
        cfg = self.cfg
        b, q = int(cfg["num_pairs"]), int(cfg["num_points"])
        lo, hi = self.window(step)
        frames = np.nonzero(self.has_partner[lo:hi])[0] + lo
        if frames.size == 0:
            frames = np.nonzero(self.has_partner)[0]
        fi = frames[rng.integers(0, frames.size, b)]
        fj = (self.cdf[fi] <= rng.random(b)[:, None]).sum(1)
        ks = self.pair_index[fi, fj]
        h, w = self.store.height, self.store.width
        flat = np.empty((b, q), np.int64)
        codes = np.empty((b, q), np.uint8)
        for n in range(b):
            m = np.asarray(self.mask[ks[n]]).reshape(-1)
            weight = (m & 3 != 0) / np.sqrt(np.asarray(self.counts[fi[n]], np.float32).reshape(-1) + 1)
            if self.error is not None:
                weight = weight * self.error_weight(fi[n])
            # torch's cumsum adds in order as numpy's does (the same float64 sums), 3.5x faster
            cdf = torch.cumsum(torch.from_numpy(weight.astype(np.float64, copy=False)), 0).numpy()
            flat[n] = np.minimum(np.searchsorted(cdf, rng.random(q) * cdf[-1], side="right"), h * w - 1)
            codes[n] = m[flat[n]]
        rows, cols = flat // w, flat % w
        flow = self.store.raw()[ks[:, None], rows, cols].astype(np.float32) / SCALE
        p1 = np.stack([cols + 0.5, rows + 0.5], -1).astype(np.float32)
        gap = np.abs(fi - fj)
        angle = math.radians(cfg["pair_weight_angle_deg"])
        weight = np.cos((gap - 1) / cfg["partner_window"] * angle).astype(np.float32)
        occluded = (codes & 2 != 0) & (codes & 1 == 0)
        return FlowBatch(fi, fj, p1, p1 + flow, occluded, weight)


class MatchSampler:
    def __init__(self, frames: np.ndarray, points: np.ndarray, num_frames: int, cfg: dict):
        """frames int [M, 2] (a, b), points float [M, 4] (x_a, y_a, x_b, y_b)."""
        self.cfg = cfg
        keep = frames[:, 0] != frames[:, 1]
        frames, points = frames[keep], points[keep]
        key = frames[:, 0] * num_frames + frames[:, 1]
        order = np.argsort(key, kind="stable")
        self.frames, self.points = frames[order], points[order]
        _, starts, sizes = np.unique(key[order], return_index=True, return_counts=True)
        ok = sizes >= cfg["match_min"]
        self.starts, self.sizes = starts[ok], sizes[ok]

    def __len__(self) -> int:
        return len(self.starts)

    def sample(self, rng: np.random.Generator) -> MatchBatch:
        b, q = int(self.cfg["match_pairs"]), int(self.cfg["match_points"])
        pick = rng.integers(0, len(self.starts), b)
        idx = self.starts[pick, None] + (rng.random((b, q)) * self.sizes[pick, None]).astype(np.int64)
        swap = rng.random(b) < 0.5
        fr = self.frames[idx[:, 0]]
        pts = self.points[idx]
        fi = np.where(swap, fr[:, 1], fr[:, 0])
        fj = np.where(swap, fr[:, 0], fr[:, 1])
        p1 = np.where(swap[:, None, None], pts[..., 2:], pts[..., :2])
        p2 = np.where(swap[:, None, None], pts[..., :2], pts[..., 2:])
        return MatchBatch(fi, fj, p1.astype(np.float32), p2.astype(np.float32))
