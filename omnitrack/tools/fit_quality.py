"""How well fitted nvp models reproduce the flows they were trained on, everywhere and at the query points.

    python -m omnitrack.tools.fit_quality results/davis32
    python -m omnitrack.tools.fit_quality results/davis32 --models refits/ --videos dog --gaps 1 4 8

For each video, the model ``<models>/<video>.pt`` (default: the run's ``models/``; ``refit --models``
keeps refitted ones) maps points of frame i to frame j = i + gap for every pair of each gap, and is
compared with the masks stage's reliable flow (mask bit 1) of that pair:

- ``all``: up to ``--samples`` random reliable pixels per pair (seed 0);
- ``queries`` (datasets with ground truth): the true positions of the benchmark points visible in
  both frames, where the flow there is reliable.

Each cell is the median distance in px / the share within 1 px. A model that fits the background
but not the objects the queries sit on shows a low ``all`` and a high ``queries`` residual. The last
column is the range of the video's dominant motion (omnitrack.model.shift.frame_shift, x / y px),
which the couplings cannot make beyond a few frame widths without ``nvp.frame_shift``. Prints a
markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def residuals(tracker, store, mask, gap: int, points=None, samples: int = 2000) -> np.ndarray:
    """Distances (px) between the model's mapping and the reliable flow of every pair (i, i + gap).

    points: None (``samples`` random reliable pixels per pair, seed 0) or a function i, j -> float
    [N, 2] (x, y) of points of frame i to test (kept where the flow there is reliable) -> float [M].
    """
    import torch

    scene = tracker.scene
    prep = scene.deformer.prepare()
    rng = np.random.default_rng(0)
    h, w = store.height, store.width
    out = []
    for (i, j), k in sorted(store.index.items()):
        if j - i != gap:
            continue
        rel = np.asarray(mask[k]) & 1 != 0
        if points is None:
            rows, cols = np.nonzero(rel)
            pick = rng.choice(rows.size, min(samples, rows.size), replace=False)
            xy = np.stack([cols[pick] + 0.5, rows[pick] + 0.5], 1)
        else:
            xy = np.asarray(points(i, j), np.float64).reshape(-1, 2)
        cols = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, h - 1)
        keep = rel[rows, cols]
        if not keep.any():
            continue
        xy, rows, cols = xy[keep], rows[keep], cols[keep]
        target = xy + store.get(i, j)[rows, cols]
        dev = scene.centre.device
        x = torch.from_numpy(xy[:, 0]).float().to(dev).view(1, -1)
        y = torch.from_numpy(xy[:, 1]).float().to(dev).view(1, -1)
        fi, fj = torch.tensor([i], device=dev), torch.tensor([j], device=dev)
        with torch.no_grad():
            d = scene.depth.lookup(scene.depth.cells(fi, x, y))
            x2, y2, _ = scene.correspond(prep, fi, fj, x, y, d)
        pred = np.stack([x2.cpu().numpy()[0], y2.cpu().numpy()[0]], 1)
        out.append(np.linalg.norm(pred - target, axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def _visible_in_both(tracks: np.ndarray, occluded: np.ndarray):
    """Ground truth tracks [N, T, 2], occluded [N, T] -> points(i, j): the true positions in frame i of
    the points visible in frames i and j."""

    def points(i: int, j: int) -> np.ndarray:
        return tracks[~occluded[:, i] & ~occluded[:, j], i]

    return points


def _cell(r: np.ndarray) -> str:
    return f"{np.median(r):.2f} / {np.mean(r < 1) * 100:.0f} %" if r.size else "–"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.fit_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path, help="results/<dataset> of a finished run")
    ap.add_argument("--models", type=Path, help="directory of <video>.pt (default: the run's models/)")
    ap.add_argument("--videos", nargs="*", help="default: every video of the workspace with a model")
    ap.add_argument("--gaps", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--samples", type=int, default=2000, help="random reliable pixels per pair for 'all'")
    args = ap.parse_args(argv)

    from omnitrack.errors import InputError
    from omnitrack.flow.consistency import load_masks
    from omnitrack.io import read_json
    from omnitrack.model import Tracker
    from omnitrack.model.shift import frame_shift
    from omnitrack.queries import load_ground_truth
    from omnitrack.workflow.config import video_source

    manifest_path = args.workspace / "manifest.json"
    manifest = read_json(manifest_path)
    unknown = sorted(set(args.videos or []) - set(manifest["sources"]))
    if unknown:
        raise InputError(manifest_path, f"has no videos {unknown}", f"its videos: {sorted(manifest['sources'])}")
    models = args.models or args.workspace / "models"
    videos = args.videos or [v for v in manifest["videos"] if (models / f"{v}.pt").exists()]
    if not videos:
        raise InputError(models, "holds no fitted model <video>.pt of this workspace's videos")
    head = " | ".join(f"gap {g} all | gap {g} queries" for g in args.gaps)
    print(f"| video | {head} | dominant motion x / y |")
    print("|---" * (2 * len(args.gaps) + 2) + "|")
    for video in videos:
        path = models / f"{video}.pt"
        if not path.exists():
            raise InputError(path, "does not exist", "fit it (refit --models) or leave the video out")
        tracker = Tracker.load(path, device="cpu")
        store, mask, _ = load_masks(args.workspace / "masks" / video)
        gt = None
        if manifest.get("has_gt"):
            gt = load_ground_truth(video_source(args.workspace, manifest, video), *tracker.size)

        cells = []
        for gap in args.gaps:
            cells.append(_cell(residuals(tracker, store, mask, gap, samples=args.samples)))
            cells.append(_cell(residuals(tracker, store, mask, gap, _visible_in_both(*gt))) if gt is not None else "–")
        shift = frame_shift(store, mask)
        span = shift.max(0) - shift.min(0)
        print(f"| {video} | " + " | ".join(cells) + f" | {span[0]:.0f} / {span[1]:.0f} px |", flush=True)
    return 0


if __name__ == "__main__":
    from omnitrack.errors import run_command

    run_command(main)
