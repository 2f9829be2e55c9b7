"""A two-layer synthetic video with exact flows, masks and matches (tests and benchmarks).

A textured background translates by ``v_back`` px/frame; a textured square (side ``side``) translates
by ``v_front`` px/frame in front of it. For every pair (i, j) within ``window`` frames the flow of a
pixel is its layer's exact displacement; the mask has bit 1 where the correspondence is visible in
frame j (inside the image and not covered by the square) and bit 2 where a background point is
covered by the square in frame j (inside the image, |i - j| < 3): "occluded but reliable", as the
masks stage marks it. Files follow docs/formats.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnitrack.flow.store import FlowWriter, window_pairs
from omnitrack.interp import pixel_centres
from omnitrack.io import save_npz


@dataclass
class Synthetic:
    num_frames: int
    height: int
    width: int
    side: float
    corner0: np.ndarray  # (x, y) of the square's top-left corner in frame 0
    v_front: np.ndarray  # (vx, vy) px / frame
    v_back: np.ndarray

    def square(self, t) -> tuple[np.ndarray, np.ndarray]:
        """Top-left and bottom-right corners of the square at frame(s) t -> [..., 2] each."""
        lo = self.corner0 + np.multiply.outer(np.asarray(t, np.float64), self.v_front)
        return lo, lo + self.side

    def in_front(self, t, xy: np.ndarray) -> np.ndarray:
        """Is point xy [..., 2] inside the square at frame t (broadcast)?"""
        lo, hi = self.square(t)
        return ((xy >= lo) & (xy < hi)).all(-1)

    def track(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth of queries [N, 3] (t, y, x) -> tracks [N, T, 2], occluded [N, T]."""
        t0 = queries[:, 0].astype(np.int64)
        xy0 = queries[:, [2, 1]]
        front = self.in_front(t0, xy0)
        v = np.where(front[:, None], self.v_front, self.v_back)
        dt = np.arange(self.num_frames)[None, :] - t0[:, None]
        tracks = xy0[:, None, :] + dt[..., None] * v[:, None, :]
        lo, hi = self.square(np.arange(self.num_frames))
        covered = ((tracks >= lo[None]) & (tracks < hi[None])).all(-1) & ~front[:, None]
        outside = ((tracks < 0) | (tracks > [self.width, self.height])).any(-1)
        return tracks.astype(np.float32), covered | outside

    def render(self, seed: int = 0) -> np.ndarray:
        """uint8 [T, H, W, 3]: smooth random textures, nearest sampling."""
        rng = np.random.default_rng(seed)
        big = 4 * max(self.height, self.width)
        tex_b = _texture(rng, big)
        tex_f = _texture(rng, int(self.side) + 2)
        xy = pixel_centres(self.height, self.width)
        out = np.empty((self.num_frames, self.height, self.width, 3), np.uint8)
        for t in range(self.num_frames):
            b = np.floor(xy - t * self.v_back).astype(np.int64) % big
            img = tex_b[b[..., 1], b[..., 0]]
            lo, _ = self.square(t)
            f = np.clip(np.floor(xy - lo).astype(np.int64), 0, tex_f.shape[0] - 1)
            out[t] = np.where(self.in_front(t, xy)[..., None], tex_f[f[..., 1], f[..., 0]], img)
        return out


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (n // 8 + 2, n // 8 + 2, 3)).astype(np.float32)
    fine = np.kron(coarse, np.ones((8, 8, 1)))[:n, :n]
    return np.clip(fine * 0.7 + rng.integers(0, 77, (n, n, 3)), 0, 255).astype(np.uint8)


def make_video(
    num_frames: int = 24,
    height: int = 160,
    width: int = 160,
    side: float | None = None,
    v_front=(1.5, 0.5),
    v_back=(-0.5, 0.25),
    corner0=None,
) -> Synthetic:
    side = float(side if side is not None else 0.35 * min(height, width))
    corner0 = np.asarray(corner0 if corner0 is not None else (0.15 * width, 0.3 * height), np.float64)
    return Synthetic(
        num_frames, height, width, side, corner0, np.asarray(v_front, np.float64), np.asarray(v_back, np.float64)
    )


def write_inputs(video: Synthetic, out_dir: str | Path, window: int = 12, num_matches: int = 0, seed: int = 0) -> dict:
    """Write frames (npz array), masks dir and (optionally) matches npz under ``out_dir``.

    -> {"frames": uint8 array, "masks_dir": Path, "matches_path": Path | None}
    """
    out_dir = Path(out_dir)
    t_count, h, w = video.num_frames, video.height, video.width
    frames = video.render(seed)
    pairs = window_pairs(t_count, window)
    xy = pixel_centres(h, w)
    masks = np.zeros((len(pairs), h, w), np.uint8)
    counts = np.zeros((t_count, h, w), np.uint16)
    masks_dir = out_dir / "masks"
    with FlowWriter(masks_dir, pairs, t_count, h, w, meta={"masks": {"exact": True}}) as writer:
        for k, (i, j) in enumerate(pairs):
            front = video.in_front(i, xy)
            flow = np.where(front[..., None], video.v_front, video.v_back) * (j - i)
            target = xy + flow
            inside = ((target >= 0) & (target <= [w, h])).all(-1)
            covered = video.in_front(j, target) & ~front
            masks[k] = np.where(inside & ~covered, 1, np.where(inside & covered & (abs(i - j) < 3), 2, 0))
            counts[i] += masks[k] != 0
            writer.put(k, flow)
    np.save(masks_dir / "mask.npy", masks)
    np.save(masks_dir / "counts.npy", counts)
    matches_path = None
    if num_matches:
        matches_path = out_dir / "matches.npz"
        _write_matches(video, matches_path, num_matches, seed)
    return {"frames": frames, "masks_dir": masks_dir, "matches_path": matches_path}


def _write_matches(video: Synthetic, path: Path, per_pair: int, seed: int) -> None:
    """Exact visible correspondences for every pair (a, b), b >= a + 10."""
    rng = np.random.default_rng(seed + 1)
    fr, pts = [], []
    for a in range(video.num_frames):
        for b in range(a + 10, video.num_frames):
            q = np.stack(
                [
                    np.full(per_pair * 4, a),
                    rng.uniform(0, video.height, per_pair * 4),
                    rng.uniform(0, video.width, per_pair * 4),
                ],
                1,
            )
            tracks, occ = video.track(q)
            ok = np.nonzero(~occ[:, b])[0][:per_pair]
            fr.append(np.tile([a, b], (ok.size, 1)))
            pts.append(np.concatenate([tracks[ok, a], tracks[ok, b]], 1))
    frames = np.concatenate(fr).astype(np.int32) if fr else np.zeros((0, 2), np.int32)
    points = np.concatenate(pts).astype(np.float32) if pts else np.zeros((0, 4), np.float32)
    save_npz(path, frames=frames, points=points, score=np.ones(len(frames), np.float32))
