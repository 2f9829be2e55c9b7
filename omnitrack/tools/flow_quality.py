"""Coverage and precision of a run's training flows per gap (omnitrack.evaluation.flow_quality).

    python -m omnitrack.tools.flow_quality results/synthetic
    python -m omnitrack.tools.flow_quality results/davis32 --configfile configs/davis.yaml --stage direct

``--stage masks`` (default) scores what the nvp fit trains on: the masks stage's flows (chained where
chaining is on) and its mask. ``--stage direct`` scores the flow stage's direct flows under the
forward-backward test alone (``masks.cycle_th``), to see what the confirmation removes. Truth: dense
from the renderer for synthetic datasets (background and moving objects apart; the dataset's settings
are read from the run's config.yaml, two levels above the workspace, merged with ``--configfile``,
and the rendered frames must equal the run's),
sparse TAP-Vid points otherwise. Prints a markdown table; ``--csv`` also writes it as CSV.
``--roc RAFT_WEIGHTS`` (synthetic only) prints instead how well each confirmation signal separates
right from wrong long-gap direct flows (ROC AUC). Nothing in the workspace is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _pairs(workspace: Path, video: str, stage: str, cycle_th: float):
    """Yield (i, j, flow [H, W, 2], mask [H, W]) for every pair of the video's stage."""
    from omnitrack.flow.consistency import direct_masks, load_masks
    from omnitrack.flow.store import FlowStore

    if stage == "masks":
        store, mask, _ = load_masks(workspace / "masks" / video)
        for k, (i, j) in enumerate(store.pairs):
            yield i, j, store.get(i, j), np.asarray(mask[k])
    else:
        store = FlowStore(workspace / "flow" / video)
        for i, j in store.pairs:
            f = store.get(i, j)
            cycle, occluded = direct_masks(f, store.get(j, i), abs(i - j), cycle_th)
            yield i, j, f, (cycle | occluded).astype(np.uint8)


def synthetic_truth(spec: dict, video: str, frames_path: Path):
    """The :class:`DenseTruth` of synthetic video ``video`` of a dataset made with ``spec``."""
    from omnitrack.data.frames import load_frames
    from omnitrack.data.synthetic import DenseTruth, video_seed
    from omnitrack.errors import InputError

    index = int(video.rsplit("_", 1)[1])
    truth = DenseTruth(
        video_seed(spec["seed"], index), spec["num_frames"], tuple(spec["size"]), parallax=spec.get("parallax", 0.0)
    )
    frames, _ = load_frames(frames_path)
    if frames.shape != truth.video.shape or not np.array_equal(frames, truth.video):
        raise InputError(
            frames_path,
            f"differs from synthetic video {video} rendered with {spec}",
            "pass the --configfile the run used",
        )
    return truth


def video_quality(
    workspace: Path, video: str, stage: str, cycle_th: float, spec: dict | None, source: Path | None
) -> dict:
    """{gap: {class: Tally}} of one video."""
    from omnitrack.data.frames import load_meta
    from omnitrack.evaluation.flow_quality import Tally, dense_pair, sparse_pair
    from omnitrack.queries import load_ground_truth

    frames_path = workspace / "frames" / f"{video}.npz"
    by_gap: dict = {}
    if spec is not None:
        truth = synthetic_truth(spec, video, frames_path)
        for i, j, flow, mask in _pairs(workspace, video, stage, cycle_th):
            target, _, layer = truth.dense(i, j)
            for name, t in dense_pair(flow, mask, target, layer).items():
                by_gap.setdefault(abs(i - j), {}).setdefault(name, Tally())
                by_gap[abs(i - j)][name] += t
        return by_gap
    meta = load_meta(frames_path)
    points, occluded = load_ground_truth(source, meta["width"], meta["height"])
    for i, j, flow, mask in _pairs(workspace, video, stage, cycle_th):
        vis = ~occluded[:, i] & ~occluded[:, j]
        t = sparse_pair(flow, mask, points[vis, i], points[vis, j])
        by_gap.setdefault(abs(i - j), {}).setdefault("points", Tally())
        by_gap[abs(i - j)]["points"] += t
    return by_gap


def roc_samples(
    workspace: Path, video: str, truth, cycle_th: float, raft_weights: str, cell: int, stride: int = 2
) -> dict[str, np.ndarray]:
    """The direct flows with |i - j| >= 3 that pass the cycle test, on a lattice of every ``stride``-th
    pixel, with what could tell right from wrong: {"right" (within 3 px), "object", "sift", "raft"
    (descriptor cosines, as the masks stage computes them), "chain" (minus the distance to the chain
    of consecutive cycle-consistent flows; -inf where the chain broke)} of 1-D arrays."""
    from omnitrack.data.frames import load_frames
    from omnitrack.features.descriptors import compute_features
    from omnitrack.flow.consistency import _Features, _inside, _remap, direct_masks
    from omnitrack.flow.store import FlowStore
    from omnitrack.interp import pixel_centres

    frames, _ = load_frames(workspace / "frames" / f"{video}.npz")
    store = FlowStore(workspace / "flow" / video)
    t, h, w = store.num_frames, store.height, store.width
    centres = pixel_centres(h, w)
    feats = {}
    for method in ("sift", "raft"):
        desc, cellxy = compute_features(frames, method, weights=raft_weights, cell=cell, progress=False)
        feats[method] = _Features({"descriptors": desc, "cell": cellxy}, t, centres)
    cycle = {(i, j): direct_masks(store.get(i, j), store.get(j, i), abs(i - j), cycle_th)[0] for i, j in store.pairs}
    lattice = np.zeros((h, w), bool)
    lattice[::stride, ::stride] = True
    out: dict[str, list] = {k: [] for k in ("right", "object", "sift", "raft", "chain")}
    for i in range(t):
        for step in (1, -1):
            acc, ok = np.zeros((h, w, 2), np.float32), np.ones((h, w), bool)
            for gap in range(1, t):
                j, prev = i + step * gap, i + step * (gap - 1)
                if (prev, j) not in cycle or (i, j) not in cycle:
                    break
                pos = centres - 0.5 + acc
                ok &= _remap(cycle[(prev, j)].astype(np.float32), pos, outside=0.0) > 0.999
                acc = acc + _remap(store.get(prev, j), pos)
                ok &= _inside(centres - 0.5 + acc, h, w)
                if gap < 3:
                    continue
                sel = cycle[(i, j)] & lattice
                flat = np.flatnonzero(sel)
                f = store.get(i, j)
                target, _, layer = truth.dense(i, j)
                out["right"].append(np.linalg.norm(centres + f - target, axis=-1)[sel] < 3.0)
                out["object"].append(layer[sel] > 0)
                for method, fs in feats.items():
                    out[method].append(fs.cosine(i, flat, j, (centres + f).reshape(-1, 2)[flat]))
                out["chain"].append(np.where(ok, -np.linalg.norm(f - acc, axis=-1), -np.inf)[sel])
    return {k: np.concatenate(v) for k, v in out.items()}


def roc_table(samples: dict[str, np.ndarray]) -> str:
    """Markdown: the AUC of each score, on objects, background and all."""
    from omnitrack.evaluation.flow_quality import auc

    lines = [
        "| score | AUC objects | AUC background | AUC all | flows (objects / background) |",
        "|---|---|---|---|---|",
    ]
    obj = samples["object"]
    for name, label in (
        ("sift", "dense SIFT cosine"),
        ("raft", "RAFT feature-encoder cosine"),
        ("chain", "agreement with the chain of consecutive flows"),
    ):
        cells = [auc(samples[name][sel], samples["right"][sel]) for sel in (obj, ~obj, np.ones_like(obj))]
        lines.append(f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {obj.sum()} / {(~obj).sum()} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.flow_quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path, help="results/<dataset> of a finished run with ground truth")
    ap.add_argument(
        "--configfile",
        type=Path,
        nargs="*",
        default=[],
        help="merged over the run's config.yaml (two levels above the workspace), as the run",
    )
    ap.add_argument("--stage", choices=["masks", "direct"], default="masks")
    ap.add_argument("--videos", nargs="*", help="default: every video of the workspace")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    ap.add_argument(
        "--roc",
        metavar="RAFT_WEIGHTS",
        help="synthetic only: instead, the ROC AUC of the appearance checks (dense SIFT, the encoder of "
        "this RAFT checkpoint) and of chain agreement at telling right (<= 3 px) from wrong "
        "cycle-consistent direct flows with |i-j| >= 3",
    )
    args = ap.parse_args(argv)

    from omnitrack.errors import InputError
    from omnitrack.evaluation.flow_quality import Tally, markdown, table
    from omnitrack.io import read_json
    from omnitrack.workflow.config import run_config, video_source

    manifest_path = args.workspace / "manifest.json"
    manifest = read_json(manifest_path)
    if not manifest.get("has_gt"):
        raise InputError(manifest_path, "the dataset has no ground truth to score flows against")
    config = run_config(args.workspace, args.configfile)
    spec = None
    if manifest["kind"] == "synthetic":
        spec = (config.get("datasets") or {}).get(manifest["dataset"])
        if spec is None:
            raise InputError(
                manifest_path,
                f"dataset {manifest['dataset']!r} is not in the configuration",
                "pass the --configfile the run used",
            )
    cycle_th = float((config.get("masks") or {}).get("cycle_th", 3.0))
    if args.roc is not None:
        if spec is None:
            raise InputError(manifest_path, "--roc needs a synthetic dataset (dense ground truth)")
        parts = [
            roc_samples(
                args.workspace,
                v,
                synthetic_truth(spec, v, args.workspace / "frames" / f"{v}.npz"),
                cycle_th,
                args.roc,
                int((config.get("features") or {}).get("cell", 8)),
            )
            for v in args.videos or manifest["videos"]
        ]
        print(roc_table({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}))
        return 0
    total: dict = {}
    for video in args.videos or manifest["videos"]:
        source = video_source(args.workspace, manifest, video)
        for gap, classes in video_quality(args.workspace, video, args.stage, cycle_th, spec, source).items():
            for name, t in classes.items():
                total.setdefault(gap, {}).setdefault(name, Tally())
                total[gap][name] += t
    rows = table(total)
    classes = ["background", "objects"] if spec is not None else ["points"]
    print(markdown(rows, classes))
    if args.csv is not None:
        from omnitrack.io import write_csv

        write_csv(args.csv, rows, list(rows[0]))
    return 0


if __name__ == "__main__":
    from omnitrack.errors import run_command

    run_command(main)
