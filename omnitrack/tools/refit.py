"""Refit nvp on a workspace's cached inputs with other settings and score it beside chain (ablations).

    python -m omnitrack.tools.refit results/davis32 --configfile configs/davis.yaml \\
        --nvp '{"steps": 1000}' --videos dog motocross-jump --out ablations.jsonl

The nvp settings are the ``nvp`` section of the run's configuration (the ``config.yaml`` of the run's
directory, two levels above the workspace, merged with ``--configfile``, as the workflow merged them)
updated by the JSON of ``--nvp``. For each video of the workspace (a ``results/<dataset>``
directory of a finished run with ground truth) the model is fitted with :func:`omnitrack.model.fit`
on the run's frames, masks and matches, the benchmark queries of every mode are tracked, and both
this fit and the run's chain predictions are scored as the ``evaluate`` stage scores them (256x256
space). Nothing in the workspace is written: the workflow's cache stays valid. Prints one line per
video and mode, and appends a JSON line per video to ``--out``. With the workflow's own nvp settings
(and the same seed and depth) the scores equal the workflow's nvp rows: fits are deterministic on CPU.

The depth the fit starts from (``--depth``; the record's "depth" says which):

- ``workspace`` (default): the run's depth stage file ``depth/<video>.npz``;
- ``layers``, ``motion``, ``none``, ``depth_anything_v2``: computed now by that method from the run's
  frames and masks, with the ``depth`` settings of the run's configuration;
- ``layers-truth`` (synthetic workspaces only): the renderer's true layer map as depth (1.0, 0.85,
  0.70, 0.55 by layer: omnitrack.depth.order.layer_map_depth; with ``parallax``, the static scene
  from 1.0 to 0.85 by its true inverse depth), the upper bound for ``layers``;
- ``fit``: no depth file, the fit's own start (``nvp.motion_init_sep``, constant when 0): how refits
  ran before the depth stage.

``--depth-dir DIR`` instead reads ``DIR/<video>.npz`` (key ``depth``) or ``DIR/<video>.npy``.
Comparing starts on the synthetic set, e.g.::

    for d in fit layers layers-truth; do python -m omnitrack.tools.refit results/synthetic --depth $d \\
        --nvp '{"motion_init_sep": 0.3}' --out depth_$d.jsonl; done   # fit: the former motion start
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

KEYS = ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy")


DEPTHS = ("workspace", "layers", "motion", "none", "depth_anything_v2", "layers-truth", "fit")


def depth_start(workspace: Path, video: str, how: str, config: dict, depth_dir: Path | None = None):
    """The depth a refit of ``video`` starts from (see the module docstring) -> float32 [T, H, W] or
    None (``fit``: the fit's own start)."""
    import numpy as np

    from omnitrack.depth.file import load_depth_file
    from omnitrack.errors import InputError

    if depth_dir is not None:
        for path in (depth_dir / f"{video}.npz", depth_dir / f"{video}.npy"):
            if path.exists():
                return load_depth_file(path)[0] if path.suffix == ".npz" else np.load(path).astype(np.float32)
        raise InputError(depth_dir, f"has no depth file {video}.npz or {video}.npy")
    if how == "fit":
        return None
    if how == "workspace":
        path = workspace / "depth" / f"{video}.npz"
        if not path.exists():
            raise InputError(
                path,
                "does not exist (a run from before the depth stage?)",
                "pass --depth layers / motion / fit, or run the depth stage",
            )
        return load_depth_file(path)[0]
    from omnitrack.data.frames import load_frames

    frames_path = workspace / "frames" / f"{video}.npz"
    if how == "layers-truth":
        from omnitrack.depth.order import layer_map_depth
        from omnitrack.io import read_json
        from omnitrack.tools.flow_quality import synthetic_truth

        manifest = read_json(workspace / "manifest.json")
        spec = (config.get("datasets") or {}).get(manifest["dataset"])
        if manifest.get("kind") != "synthetic" or spec is None:
            raise InputError(
                workspace / "manifest.json",
                "--depth layers-truth needs a synthetic dataset of the "
                "run's configuration (its config.yaml merged with --configfile)",
            )
        truth = synthetic_truth(spec, video, frames_path)
        return layer_map_depth(truth.front, inverse_depth=truth.inverse_depths())  # no relief: k = 1
    from omnitrack.depth.stage import NEEDS_MASKS, compute_depth
    from omnitrack.flow.consistency import load_masks

    frames, _ = load_frames(frames_path)
    masks = load_masks(workspace / "masks" / video)[:2] if how in NEEDS_MASKS else None
    return compute_depth(frames, {**(config.get("depth") or {}), "method": how}, masks=masks, progress=False)


def refit_video(
    workspace: Path,
    video: str,
    source: Path,
    nvp: dict,
    modes: list[str],
    depth=None,
    depth_label: str = "fit",
    models: Path | None = None,
) -> dict:
    """Fit one video with ``nvp`` from ``depth`` (float [T, H, W] or None: the fit's own start) and score
    it and the run's chain predictions against its ground truth ``source`` -> a JSON-able record. With
    ``models``, the fitted model is kept as ``models/<video>.pt`` (a complete one with these settings is
    reused, an interrupted one resumed)."""
    from omnitrack.evaluation.metrics import score
    from omnitrack.model import fit
    from omnitrack.prediction import load_prediction
    from omnitrack.queries import benchmark_queries

    start = time.perf_counter()
    tracker = fit(
        workspace / "frames" / f"{video}.npz",
        nvp,
        masks_dir=workspace / "masks" / video,
        matches_path=workspace / "matches" / f"{video}.npz",
        depth=depth,
        checkpoint_path=None if models is None else models / f"{video}.pt",
    )
    record = {"video": video, "nvp": nvp, "depth": depth_label, "fit_seconds": round(time.perf_counter() - start, 1)}
    width, height = tracker.size
    for mode in modes:
        truth = benchmark_queries(source, mode, width, height)
        tracks, occluded = tracker.track(truth[0])
        chain = load_prediction(workspace / "predictions" / "chain" / f"{video}.{mode}.npz")
        record[mode] = {
            "nvp": score(tracks, occluded, truth, mode, width, height),
            "chain": score(chain["tracks"], chain["occluded"], truth, mode, width, height),
        }
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.refit", description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path, help="results/<dataset> of a finished run with ground truth")
    ap.add_argument(
        "--configfile", type=Path, help="merged over the run's config.yaml, as the run did (e.g. configs/davis.yaml)"
    )
    ap.add_argument("--nvp", default="{}", help="JSON object of nvp keys that override it")
    ap.add_argument("--videos", nargs="*", help="default: every video of the workspace")
    ap.add_argument("--modes", nargs="*", default=["strided", "first"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    ap.add_argument("--out", type=Path, help="append one JSON line per video here")
    ap.add_argument("--depth", choices=DEPTHS, default="workspace", help="the depth the fit starts from")
    ap.add_argument("--depth-dir", type=Path, help="read the start from DIR/<video>.npz (key depth) or .npy")
    ap.add_argument("--models", type=Path, help="keep the fitted models as DIR/<video>.pt (for inspection)")
    args = ap.parse_args(argv)

    from omnitrack.errors import InputError
    from omnitrack.io import read_json
    from omnitrack.workflow.config import run_config, video_source

    manifest_path = args.workspace / "manifest.json"
    manifest = read_json(manifest_path)
    if not manifest.get("has_gt"):
        raise InputError(manifest_path, "the dataset has no ground truth to score a refit against")
    unknown = sorted(set(args.videos or []) - set(manifest["sources"]))
    if unknown:
        raise InputError(manifest_path, f"has no videos {unknown}", f"its videos: {sorted(manifest['sources'])}")
    config = run_config(args.workspace, [args.configfile] if args.configfile else [])
    nvp = dict(config.get("nvp") or {})
    nvp.update(json.loads(args.nvp))
    nvp.update(threads=args.threads, progress=False, tensorboard=False)
    label = f"dir:{args.depth_dir}" if args.depth_dir is not None else args.depth
    videos = args.videos or sorted(manifest["sources"])
    for video in videos:
        source = video_source(args.workspace, manifest, video)
        depth = depth_start(args.workspace, video, args.depth, config, args.depth_dir)
        if args.models is not None:
            args.models.mkdir(parents=True, exist_ok=True)
        record = refit_video(args.workspace, video, source, nvp, args.modes, depth, label, args.models)
        for mode in args.modes:
            row = record[mode]
            print(
                f"{video} {mode}: nvp "
                + " / ".join(f"{row['nvp'][k]:.3f}" for k in KEYS)
                + " | chain "
                + " / ".join(f"{row['chain'][k]:.3f}" for k in KEYS)
                + f" (AJ / delta / OA; depth {label}; fit {record['fit_seconds']} s)",
                flush=True,
            )
        if args.out is not None:
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    from omnitrack.errors import run_command

    run_command(main)
