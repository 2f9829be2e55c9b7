"""Inference with a fitted scene: tracks and occlusion of query points in every frame.

A query (t, y, x) in working-resolution pixels is lifted with frame t's optimised depth, mapped to
the canonical space at t and back into every frame j. It is occluded in frame j when it projects
outside the image ([0, W] x [0, H], the tracks' own pixel system), lies behind the camera, or frame
j's depth at the projected location is nearer than its depth by more than ``occlusion_margin``. The
query frame's prediction is the query itself, visible.

With ``surface_margin`` > 0 (not upstream) it is also occluded where frame j's depth there is farther
than its depth by more than that margin. Such a point would be the surface seen at that pixel, yet the
depth map shows another one behind it: the model has placed it where it is not. The depth test alone
calls it visible. On TAP-Vid DAVIS these are mostly points that leave the view and whose track the
fit, unsupervised in those frames, keeps inside it (BENCHMARKS.md §5f).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from omnitrack.errors import InputError
from omnitrack.model.checkpoint import check_identity, read_checkpoint, write_checkpoint
from omnitrack.model.config import device_of
from omnitrack.model.scene import Scene


class Tracker:
    def __init__(self, scene: Scene, config: dict, identity: dict, history: list[dict] | None = None):
        self.scene = scene.eval()
        self.config = config
        self.identity = identity
        self.history = list(history or [])  # loss values of the fit: {"step", "total", <term>...}

    @property
    def num_frames(self) -> int:
        return self.scene.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the working resolution."""
        return self.scene.width, self.scene.height

    @torch.no_grad()
    def track(self, query_points) -> tuple[np.ndarray, np.ndarray]:
        """query_points float [N, 3] (t, y, x) pixels -> tracks float32 [N, T, 2] (x, y), occluded bool [N, T]."""
        q = np.asarray(query_points, np.float64).reshape(-1, 3)
        t_count = self.num_frames
        frames = np.rint(q[:, 0]).astype(np.int64)
        if q.shape[0] and (frames.min() < 0 or frames.max() >= t_count or not np.isfinite(q).all()):
            raise InputError("query_points", f"query frames must lie in [0, {t_count - 1}] and coordinates be finite")
        scene = self.scene
        dev = scene.centre.device
        prep = scene.deformer.prepare()
        tracks = np.empty((q.shape[0], t_count, 2), np.float32)
        occluded = np.empty((q.shape[0], t_count), bool)
        chunk = max(1, int(self.config["track_batch"]) // t_count)
        targets = torch.arange(t_count, device=dev)
        for s in range(0, q.shape[0], chunk):
            qf = torch.from_numpy(frames[s : s + chunk]).to(dev)
            n = qf.shape[0]
            x = torch.from_numpy(q[s : s + chunk, 2]).float().to(dev).view(n, 1)
            y = torch.from_numpy(q[s : s + chunk, 1]).float().to(dev).view(n, 1)
            d = scene.depth.lookup(scene.depth.cells(qf, x, y))
            canon = scene.deformer(scene.lift(x, y, d, qf), qf, prep)
            canon = [c.view(1, n).expand(t_count, n).contiguous() for c in canon]
            x2, y2, z2 = scene.unlift(scene.deformer.inverse(canon, targets, prep), targets)
            seen = scene.depth.lookup(scene.depth.cells(targets, x2, y2))
            occ = (
                (seen <= z2 - self.config["occlusion_margin"])
                | ~scene.camera.inside(x2, y2)
                | (z2 < self.config["min_depth"])
            )
            surface = self.config.get("surface_margin", 0.0)  # (absent from models saved before it: off)
            if surface > 0:
                occ |= seen > z2 + surface
            cols = torch.arange(n, device=dev)
            x2[qf, cols], y2[qf, cols] = x.view(-1), y.view(-1)
            occ[qf, cols] = False
            tracks[s : s + n] = torch.stack([x2, y2], -1).transpose(0, 1).cpu().numpy()
            occluded[s : s + n] = occ.transpose(0, 1).cpu().numpy()
        return tracks, occluded

    def track_grid(self, frame: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Track the pixel centres of ``frame`` every ``stride`` pixels.

        -> tracks float32 [h, w, T, 2] (x, y), occluded bool [h, w, T] with h = ceil(H / stride).
        """
        width, height = self.size
        ys = np.arange(0, height, stride) + 0.5
        xs = np.arange(0, width, stride) + 0.5
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        q = np.stack([np.full(yy.size, frame, np.float64), yy.ravel(), xx.ravel()], 1)
        tracks, occ = self.track(q)
        return tracks.reshape(len(ys), len(xs), -1, 2), occ.reshape(len(ys), len(xs), -1)

    def state(self) -> dict:
        t, h, w = self.scene.num_frames, self.scene.height, self.scene.width
        return {
            "identity": self.identity,
            "config": self.config,
            "shape": [t, h, w],
            "history": self.history,
            "scene": {k: v.detach().cpu() for k, v in self.scene.state_dict().items()},
        }

    def save(self, path: str | Path) -> None:
        """Write the fitted model (atomically)."""
        write_checkpoint(path, {**self.state(), "complete": True})

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, frames: np.ndarray | None = None) -> Tracker:
        """Load a saved model (or a training checkpoint); with ``frames``, check it belongs to that video."""
        ck = read_checkpoint(path)
        if frames is not None:
            check_identity(path, ck, frames)
        return cls.from_state(ck, device)

    @classmethod
    def from_state(cls, ck: dict, device: str | None = None) -> Tracker:
        cfg = dict(ck["config"])
        if device is not None:
            cfg["device"] = device
        t, h, w = ck["shape"]
        state = dict(ck["scene"])
        state.setdefault("shift", torch.zeros(t, 2))  # models from before frame_shift: no shift
        scene = Scene(t, h, w, state["depth.initial"], cfg, state["shift"], state.get("linear"))
        scene.load_state_dict(state)
        return cls(scene.to(device_of(cfg)), cfg, ck["identity"], ck.get("history"))
