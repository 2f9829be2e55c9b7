"""Timing of the nvp optimisation step.

    python -m omnitrack.bench deformer --pairs 16 --points 1024 --frames 50 --steps 10
    python -m omnitrack.bench fit --pairs 16 --points 1024 --frames 24 --size 160 --steps 10
    python -m omnitrack.bench depth --weights depth_anything_v2_vits.pth --input-size 518 --size 256 --steps 5

``deformer``: one step of the deformation alone on random inputs (depth look-up and lift, forward
at t_i, inverse at t_j, projection, L1 to random targets, backward, Adam step), ours and the
upstream-style re-creation (:mod:`omnitrack.model.reference`, the same map from the same starting
parameters) on the same inputs, their steps interleaved; it prints both, then
``upstream_step_s=``, ``cpu_speedup=`` (the ratio of the CPU-time medians) and ``speedup=`` (of the
wall-clock medians, upstream-style / ours).
``fit``: the whole training step on a synthetic two-layer video (sampling from the memory-mapped
flow store, depth look-ups, every loss term including matches, backward, Adam, scheduler).
``depth``: Depth Anything V2 on one random ``--size`` x ``--size`` frame per step (preprocessing,
network at ``--input-size``, resize back: :func:`omnitrack.depth.infer_video`); the weights' values do
not change the time, so the shared random-weights file times the real model.
All time ``--steps`` steps after ``--warmup`` steps and print the per-step wall-clock median and
process CPU-time median (and the wall-clock minimum, robust to a loaded machine); the last line is ``step_s=<median seconds>``. ``fit`` also reports the peak
resident memory (max RSS) of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time


def _config(args) -> dict:
    from omnitrack.model.config import resolve

    return resolve(
        {
            "preset": args.preset,
            "num_pairs": args.pairs,
            "num_points": args.points,
            "match_pairs": args.pairs,
            "device": args.device,
            "progress": False,
        }
    )


def _time(step, warmup: int, steps: int) -> tuple[float, float, float]:
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), min(wall)


def _time_side_by_side(steps: dict, warmup: int, n: int) -> dict[str, tuple[float, float, float]]:
    """Like :func:`_time` for several step functions, interleaved (one step of each in turn, the order
    reversed every other round), so that a change of the machine's load affects them alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    wall = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    for i in range(n):
        for k, step in steps.items() if i % 2 == 0 else reversed(steps.items()):
            w0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k]), min(wall[k])) for k in steps}


def bench_deformer(args) -> float:
    import torch

    from omnitrack.model.depth import DepthMaps
    from omnitrack.model.reference import UpstreamDeformer
    from omnitrack.model.scene import Scene

    cfg = _config(args)
    torch.manual_seed(0)
    h = w = args.size
    dh, dw = max(1, int(cfg["depth_res"] * h)), max(1, int(cfg["depth_res"] * w))
    depth_init = 1 + torch.rand(args.frames, dh, dw)
    scene = Scene(args.frames, h, w, depth_init, cfg)
    ref = UpstreamDeformer.from_deformer(scene.deformer)
    ref_depth = DepthMaps(depth_init, h, w)
    opt = torch.optim.Adam(
        [{"params": scene.deformer.parameters(), "lr": 3e-3}, {"params": [scene.depth.maps], "lr": 5e-3}], fused=True
    )
    ref_opt = torch.optim.Adam(
        [{"params": ref.parameters(), "lr": 3e-3}, {"params": [ref_depth.maps], "lr": 5e-3}], fused=True
    )
    g = torch.Generator().manual_seed(1)
    p, q = args.pairs, args.points
    fi = torch.randint(0, args.frames, (p,), generator=g)
    fj = (fi + torch.randint(1, args.frames, (p,), generator=g)) % args.frames
    x, y = torch.rand(p, q, generator=g) * w, torch.rand(p, q, generator=g) * h
    target = torch.rand(p, q, 2, generator=g) * w

    def update(optimizer, x2, y2):
        loss = (torch.stack([x2, y2], -1) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def step():
        prep = scene.deformer.prepare()
        d = scene.depth.lookup(scene.depth.cells(fi, x, y))
        x2, y2, _ = scene.correspond(prep, fi, fj, x, y, d)
        update(opt, x2, y2)

    def upstream_step():
        d = ref_depth.lookup(ref_depth.cells(fi, x, y))
        canon = ref(torch.stack(scene.lift(x, y, d, fi), -1), fi)
        x2, y2, _ = scene.unlift(ref.inverse(canon, fj).unbind(-1), fj)
        update(ref_opt, x2, y2)

    times = _time_side_by_side({"ours": step, "upstream": upstream_step}, args.warmup, args.steps)
    head = f"deformer: {p} pairs x {q} points, {args.frames} frames, threads={torch.get_num_threads()}"
    for name, (wall, cpu, best) in times.items():
        print(f"{head}, {name}: wall median {wall:.4f} s (min {best:.4f} s), cpu median {cpu:.4f} s")
    print(f"upstream_step_s={times['upstream'][0]:.4f}")
    print(f"cpu_speedup={times['upstream'][1] / times['ours'][1]:.2f}")
    print(f"speedup={times['upstream'][0] / times['ours'][0]:.2f}")
    return times["ours"][0]


def bench_fit(args) -> float:
    import torch

    from omnitrack.model.synthetic import make_video, write_inputs
    from omnitrack.model.training import _build, _initial_depth

    cfg = _config(args)
    video = make_video(args.frames, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(video, tmp, window=cfg["partner_window"], num_matches=32)
        init = _initial_depth(inputs["frames"], cfg, inputs["masks_dir"], None)
        trainer = _build(inputs["frames"], cfg, inputs["masks_dir"], inputs["matches_path"], init)
        wall, cpu, best = _time(trainer.one_step, args.warmup, args.steps)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"fit: {args.pairs} pairs x {args.points} points (+ {cfg['match_pairs']} x {cfg['match_points']} matches), "
        f"{args.frames} frames of {args.size}x{args.size}, threads={torch.get_num_threads()}: "
        f"wall median {wall:.4f} s (min {best:.4f} s), cpu median {cpu:.4f} s, peak RSS {rss_mb:.0f} MB"
    )
    return wall


def bench_depth(args) -> float:
    import numpy as np
    import torch

    from omnitrack.depth import infer_video, load_depth_anything

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    model = load_depth_anything(args.weights, args.encoder, device)
    frame = np.random.default_rng(0).integers(0, 256, (1, args.size, args.size, 3), dtype=np.uint8)
    wall, cpu, best = _time(
        lambda: infer_video(model, frame, args.input_size, device, progress=False), args.warmup, args.steps
    )
    print(
        f"depth: Depth Anything V2 {args.encoder}, input_size {args.input_size}, one {args.size}x{args.size} "
        f"frame, threads={torch.get_num_threads()}: wall median {wall:.3f} s (min {best:.3f} s), "
        f"cpu median {cpu:.3f} s"
    )
    return wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["deformer", "fit", "depth"])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=160, help="frame height and width (pixels)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--preset", default="paper", choices=["paper", "cpu"], help="model sizes and loss weights")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--weights", help="depth: a Depth Anything V2 release file")
    ap.add_argument("--encoder", default="vits", choices=["vits", "vitb", "vitl"], help="depth: its encoder")
    ap.add_argument("--input-size", type=int, default=518, help="depth: the network's shorter side")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = {"deformer": bench_deformer, "fit": bench_fit, "depth": bench_depth}[args.what](args)
    print(f"step_s={seconds:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
