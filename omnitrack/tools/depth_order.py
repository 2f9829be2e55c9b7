"""Depth order of the depth starts against the synthetic renderer's true layer map, per video.

    python -m omnitrack.tools.depth_order results/synthetic
    python -m omnitrack.tools.depth_order results/synthetic --configfile my.yaml --reach 2 --csv order.csv

For every video of a synthetic workspace (a ``results/<dataset>`` directory with frames and masks),
the depth starts are computed from the run's masks with the configuration's ``depth`` settings
(config.yaml merged with ``--configfile``): ``layers`` and ``motion`` (the former fit start,
``depth.motion.sep``), plus the workspace's own depth file (``depth/<video>.npz``) when there is one,
and scored with :func:`omnitrack.depth.order.order_accuracy` against ``DenseTruth(...).front``: the
share of pixel pairs ``--reach`` px apart across a true layer boundary whose depth order is right
(ties, e.g. a constant depth, count as wrong; their share is printed too). For a dataset rendered
with ``parallax`` also ``layers`` without it (``depth.layers.parallax: 0``) and, per method, the
order inside the static scene (:func:`omnitrack.depth.order.relief_accuracy`: pixel pairs
``--relief-reach`` px apart whose true inverse depths differ by more than 0.05). Prints a markdown
table (right / ties per method). Nothing in the workspace is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

METHODS = ("layers", "motion")


def video_scores(workspace: Path, video: str, spec: dict, depth_cfg: dict, reach: int, relief_reach: int = 8) -> dict:
    """{method: order_accuracy(...)} of one video (methods of METHODS, "workspace" when a depth file
    exists); with parallax also "layers, flat" and {method + " relief": relief_accuracy(...)}."""
    from omnitrack.data.frames import load_frames
    from omnitrack.depth.file import load_depth_file
    from omnitrack.depth.order import order_accuracy, relief_accuracy
    from omnitrack.depth.stage import compute_depth
    from omnitrack.flow.consistency import load_masks
    from omnitrack.tools.flow_quality import synthetic_truth

    frames_path = workspace / "frames" / f"{video}.npz"
    truth = synthetic_truth(spec, video, frames_path)
    frames, _ = load_frames(frames_path)
    store, mask, _ = load_masks(workspace / "masks" / video)
    relief = None
    variants = {m: {**depth_cfg, "method": m} for m in METHODS}
    if spec.get("parallax", 0) > 0:
        relief = truth.inverse_depths()
        flat = {**(depth_cfg.get("layers") or {}), "parallax": 0.0}
        variants["layers, flat"] = {**depth_cfg, "method": "layers", "layers": flat}
    depths = {name: compute_depth(frames, cfg, masks=(store, mask), progress=False) for name, cfg in variants.items()}
    path = workspace / "depth" / f"{video}.npz"
    if path.exists():
        depth, meta = load_depth_file(path)
        depths[f"workspace ({meta.get('method')})"] = depth
    scores = {name: order_accuracy(depth, truth.front, reach) for name, depth in depths.items()}
    if relief is not None:
        for name, depth in depths.items():
            scores[f"{name} relief"] = relief_accuracy(depth, relief, relief_reach)
    return scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.depth_order", description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path, help="results/<dataset> of a synthetic dataset (frames and masks)")
    ap.add_argument("--configfile", type=Path, nargs="*", default=[], help="merged over config.yaml, as the run")
    ap.add_argument("--videos", nargs="*", help="default: every video of the workspace")
    ap.add_argument("--reach", type=int, default=2, help="px between the two pixels of a boundary pair")
    ap.add_argument("--relief-reach", type=int, default=8, help="px between the two pixels of a static pair")
    ap.add_argument("--csv", type=Path, help="also write the table here")
    args = ap.parse_args(argv)

    from omnitrack.errors import InputError
    from omnitrack.io import read_json
    from omnitrack.workflow.config import run_config

    manifest_path = args.workspace / "manifest.json"
    manifest = read_json(manifest_path)
    if manifest.get("kind") != "synthetic":
        raise InputError(
            manifest_path, f"is a {manifest.get('kind')} dataset; the true layer map exists only for synthetic datasets"
        )
    config = run_config(args.workspace, args.configfile)
    spec = (config.get("datasets") or {}).get(manifest["dataset"])
    if spec is None:
        raise InputError(
            manifest_path,
            f"dataset {manifest['dataset']!r} is not in the configuration",
            "pass the --configfile the run used",
        )
    depth_cfg = dict(config.get("depth") or {})
    rows = []
    for video in args.videos or manifest["videos"]:
        scores = video_scores(args.workspace, video, spec, depth_cfg, args.reach, args.relief_reach)
        row = {"video": video, "pairs": next(iter(scores.values()))["pairs"]}
        for method, s in scores.items():
            row[f"{method} right"], row[f"{method} ties"] = round(s["correct"], 3), round(s["ties"], 3)
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    mean = {"video": "**mean**", "pairs": sum(r["pairs"] for r in rows)}
    for c in columns[2:]:
        values = [r[c] for r in rows if c in r]
        mean[c] = round(sum(values) / len(values), 3)
    rows.append(mean)
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "–")) for c in columns) + " |")
    if args.csv is not None:
        from omnitrack.io import write_csv

        write_csv(args.csv, rows, columns)
    return 0


if __name__ == "__main__":
    from omnitrack.errors import run_command

    run_command(main)
