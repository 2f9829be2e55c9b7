"""Accuracy and speed of a flow setting against TAP-Vid ground truth (the table in BENCHMARKS.md §4).

    python -m omnitrack.tools.flow_accuracy ../shared/data/tapvid/davis32_dev.pkl --method raft \\
        --weights ../shared/data/weights/raft-sintel.pth --iters 8 --threads 1

For every video of the pickle, flows from the first frame to the next ``--max-gap`` frames and from
the last frame back as far; each GT point visible in both frames of a pair is moved by the flow
(bilinear) and compared with its GT position in the other frame, in pixels of the working size
(the pickle's frame size). Prints seconds per pair, mean end-point error, the share of points within
1 and 4 px, and the mean error per gap band.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def sweep_pairs(num_frames: int, max_gap: int) -> list[tuple[int, int]]:
    """(0, 1..g) and (T-1, T-2..T-1-g), g = min(max_gap, T - 1)."""
    g = min(max_gap, num_frames - 1)
    last = num_frames - 1
    return [(0, d) for d in range(1, g + 1)] + [(last, last - d) for d in range(1, g + 1)]


def endpoint_errors(flow: np.ndarray, points: np.ndarray, occluded: np.ndarray, i: int, j: int) -> np.ndarray:
    """flow [H, W, 2] i->j; points [N, T, 2] pixels (x, y); occluded [N, T] -> errors [M] of the points
    visible in i and j."""
    from omnitrack.interp import bilinear

    vis = ~occluded[:, i] & ~occluded[:, j]
    return np.linalg.norm(points[vis, i] + bilinear(flow, points[vis, i]) - points[vis, j], axis=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.flow_accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("pickle", help="a TAP-Vid pickle (e.g. ../shared/data/tapvid/davis32_dev.pkl)")
    ap.add_argument("--method", choices=["raft", "dis"], default="raft")
    ap.add_argument("--weights", help="RAFT checkpoint (original format) or 'torchvision'")
    ap.add_argument("--small", action="store_true", help="the checkpoint is RAFT-small")
    ap.add_argument("--iters", type=int, default=12)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="RAFT under bfloat16 autocast")
    ap.add_argument("--max-gap", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch / OpenCV threads (0: default)")
    args = ap.parse_args(argv)

    import torch

    from omnitrack.data.tapvid import load_tapvid

    if args.threads:
        torch.set_num_threads(args.threads)
    videos = load_tapvid(args.pickle)
    if args.method == "raft":
        from omnitrack.flow.raft import load_raft, raft_pair_flows

        model = load_raft(args.weights, small=args.small)

        def flows(frames, pairs):
            return dict(raft_pair_flows(model, frames, pairs, iters=args.iters, batch_size=4, precision=args.precision))
    else:
        from omnitrack.flow.dis import dis_flow, make_dis

        dis = make_dis("medium")

        def flows(frames, pairs):
            return {k: dis_flow(frames[i], frames[j], dis) for k, (i, j) in enumerate(pairs)}

    by_gap: dict[int, list[np.ndarray]] = {}
    seconds = count = 0
    for v in videos.values():
        frames, (h, w) = v["video"], v["video"].shape[1:3]
        points = v["points"] * np.array([w, h], np.float32)
        pairs = sweep_pairs(len(frames), args.max_gap)
        start = time.perf_counter()
        out = flows(frames, pairs)
        seconds += time.perf_counter() - start
        count += len(pairs)
        for k, (i, j) in enumerate(pairs):
            by_gap.setdefault(abs(i - j), []).append(endpoint_errors(out[k], points, v["occluded"], i, j))
    err = {g: np.concatenate(e) for g, e in sorted(by_gap.items())}
    every = np.concatenate(list(err.values()))
    bands = [(1, 4), (5, 8), (9, args.max_gap)]
    band = " ".join(
        f"gaps {a}-{b} {np.concatenate([err[g] for g in err if a <= g <= b]).mean():.2f}"
        for a, b in bands
        if any(a <= g <= b for g in err)
    )
    setting = f"{args.method}" + (
        f" ({'small' if args.small else 'large'}, {args.iters} iters, {args.precision})"
        if args.method == "raft"
        else ""
    )
    print(
        f"{setting}: {len(videos)} videos, {count} pairs, {seconds / count:.3f} s/pair; EPE {every.mean():.2f} px, "
        f"<1 px {np.mean(every < 1):.3f}, <4 px {np.mean(every < 4):.3f}; {band}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
