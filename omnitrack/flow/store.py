"""On-disk store of the flows of all frame pairs of one video.

A store is a directory::

    meta.json   {"num_frames": T, "height": H, "width": W, "pairs": [[i, j], ...], "scale": 32, ...}
    flow.npy    int16 [P, H, W, 2]   flow of pair k = pairs[k] in units of 1/scale pixel

Flow of pair (i, j) at pixel row r, column c is the displacement (dx, dy) in pixels of the pixel
centre (c + 0.5, r + 0.5) of frame i to its position in frame j.

Why int16 fixed point: half the size of float32, and uniform steps of 1/32 px (error <= 1/64 px)
over ±1023 px; float16 (same size) has steps of 0.125 px at 128-256 px displacements and 0.25 px above.
Memory: the writer puts each pair into the file with ``os.pwrite`` (:class:`omnitrack.io.NpyRows`) and
:meth:`FlowStore.get` reads one pair with ``os.pread``, so neither keeps pages of the (multi-GB) file mapped into the process: peak
RSS stays at a few pairs, not the file size. :meth:`FlowStore.raw` memory-maps it for gathers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from omnitrack.errors import CacheError
from omnitrack.io import NpyRows, atomic_path, open_npy, pread_row, read_json, write_json

SCALE = 32
LIMIT = np.iinfo(np.int16).max / SCALE


def window_pairs(num_frames: int, window: int, gaps=None) -> list[tuple[int, int]]:
    """All ordered pairs (i, j), 0 < |i - j| <= window (and |i - j| in ``gaps`` unless it is None),
    sorted by i then j."""
    return [
        (i, j)
        for i in range(num_frames)
        for j in range(max(0, i - window), min(num_frames, i + window + 1))
        if j != i and (gaps is None or abs(i - j) in gaps)
    ]


def encode(flow: np.ndarray) -> np.ndarray:
    """float [..., 2] pixels -> int16 fixed point (values beyond ±1023 px are clipped)."""
    return np.clip(np.rint(np.asarray(flow, np.float32) * SCALE), -32767, 32767).astype(np.int16)


def decode(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / SCALE


class FlowWriter:
    """Writes a store pair by pair, atomically: the directory appears only when all pairs are in.

    Use as a context manager::

        with FlowWriter(out_dir, pairs, H, W, meta={...}) as w:
            for k, (i, j) in enumerate(pairs):
                w.put(k, flow_ij)
    """

    def __init__(
        self,
        path: str | Path,
        pairs: Sequence[tuple[int, int]],
        num_frames: int,
        height: int,
        width: int,
        meta: dict | None = None,
    ):
        self.path = Path(path)
        self.pairs = [tuple(map(int, p)) for p in pairs]
        self.meta = {
            "num_frames": int(num_frames),
            "height": int(height),
            "width": int(width),
            "pairs": [list(p) for p in self.pairs],
            "scale": SCALE,
            **(meta or {}),
        }
        self._done: set[int] = set()

    def __enter__(self) -> FlowWriter:
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._tmp.mkdir()
        self._pair_shape = (self.meta["height"], self.meta["width"], 2)
        self._rows = NpyRows(self._tmp / "flow.npy", (len(self.pairs), *self._pair_shape), np.int16)
        return self

    def put(self, k: int, flow: np.ndarray) -> None:
        """flow: float [H, W, 2] pixels for pair k."""
        if not 0 <= k < len(self.pairs) or tuple(np.shape(flow)) != self._pair_shape:
            raise ValueError(
                f"{self.path}: pair {k} of {len(self.pairs)} with flow {np.shape(flow)}, expected {self._pair_shape}"
            )
        self._rows[k] = encode(flow)
        self._done.add(k)

    def __exit__(self, exc_type, exc, tb):
        self._rows.close()
        if exc_type is None and len(self._done) != len(self.pairs):
            missing = [self.pairs[k] for k in range(len(self.pairs)) if k not in self._done]
            exc = RuntimeError(f"{self.path}: no flow was written for pairs {missing[:5]}")
            self._ctx.__exit__(RuntimeError, exc, None)
            raise exc
        if exc_type is None:
            write_json(self._tmp / "meta.json", self.meta)
        return self._ctx.__exit__(exc_type, exc, tb)


class FlowStore:
    """Read access to a flow store (memory-mapped)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CacheError(self.path, "flow store is missing (expected a directory with meta.json and flow.npy)")
        self.meta = read_json(self.path / "meta.json")
        try:
            self.num_frames = int(self.meta["num_frames"])
            self.height = int(self.meta["height"])
            self.width = int(self.meta["width"])
            self.pairs = [tuple(p) for p in self.meta["pairs"]]
            scale = self.meta["scale"]
        except KeyError as e:
            raise CacheError(self.path / "meta.json", f"has no key {e}") from None
        if scale != SCALE:
            raise CacheError(self.path / "meta.json", f"scale {scale} differs from this version's {SCALE}")
        self.index = {p: k for k, p in enumerate(self.pairs)}
        self._flow = open_npy(self.path / "flow.npy", (len(self.pairs), self.height, self.width, 2), np.int16)

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return tuple(pair) in self.index

    def __len__(self) -> int:
        return len(self.pairs)

    def get(self, i: int, j: int) -> np.ndarray:
        """float32 [H, W, 2]: flow from frame i to frame j."""
        k = self.index.get((int(i), int(j)))
        if k is None:
            raise CacheError(self.path, f"has no flow for pair ({i}, {j}); it holds {len(self.pairs)} pairs")
        return decode(self._read(k))

    def _read(self, k: int) -> np.ndarray:
        """int16 [H, W, 2] of pair k, read with pread (no page of the file stays mapped)."""
        path = self.path / "flow.npy"
        fd = os.open(path, os.O_RDONLY)
        try:
            return pread_row(fd, path, self._flow.offset, k, (self.height, self.width, 2), "<i2")
        finally:
            os.close(fd)

    def raw(self, ks: Iterable[int] | slice = slice(None)) -> np.ndarray:
        """The int16 fixed-point array (memory-mapped) for pair indices ``ks``."""
        return self._flow[ks]

    def check_window(self, window: int) -> None:
        """Raise if a pair of the window is missing (e.g. a store computed with a smaller window)."""
        missing = [p for p in window_pairs(self.num_frames, window) if p not in self.index]
        if missing:
            raise CacheError(self.path, f"lacks {len(missing)} pairs of window {window}, e.g. {missing[:3]}")
