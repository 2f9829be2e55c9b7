"""Refit nvp on a workspace's cached inputs with other settings and score it beside chain (ablations).

    python -m omnitrack.tools.refit results/davis32 --configfile configs/davis.yaml \\
        --nvp '{"steps": 1000}' --videos dog motocross-jump --out ablations.jsonl

The nvp settings are the ``nvp`` section of ``--configfile`` (default: none, i.e. the cpu preset)
updated by the JSON of ``--nvp``. For each video of the workspace (a ``results/<dataset>``
directory of a finished run with ground truth) the model is fitted with :func:`omnitrack.model.fit`
on the run's frames, masks and matches, the benchmark queries of every mode are tracked, and both
this fit and the run's chain predictions are scored as the ``evaluate`` stage scores them (256x256
space). Nothing in the workspace is written: the workflow's cache stays valid. Prints one line per
video and mode, and appends a JSON line per video to ``--out``. With the workflow's own nvp settings
(and the same seed) the scores equal the workflow's nvp rows: fits are deterministic on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

KEYS = ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy")


def refit_video(workspace: Path, video: str, source: Path, nvp: dict, modes: list[str]) -> dict:
    """Fit one video with ``nvp`` and score it and the run's chain predictions against its ground
    truth ``source`` -> a JSON-able record."""
    from omnitrack.model import fit
    from omnitrack.pipeline import load_prediction, score
    from omnitrack.queries import benchmark_queries

    start = time.perf_counter()
    tracker = fit(workspace / "frames" / f"{video}.npz", nvp, masks_dir=workspace / "masks" / video,
                  matches_path=workspace / "matches" / f"{video}.npz", log=lambda message: None)
    record = {"video": video, "nvp": nvp, "fit_seconds": round(time.perf_counter() - start, 1)}
    width, height = tracker.size
    for mode in modes:
        truth = benchmark_queries(source, mode, width, height)
        tracks, occluded = tracker.track(truth[0])
        chain = load_prediction(workspace / "predictions" / "chain" / f"{video}.{mode}.npz")
        record[mode] = {"nvp": score(tracks, occluded, truth, mode, width, height),
                        "chain": score(chain["tracks"], chain["occluded"], truth, mode, width, height)}
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m omnitrack.tools.refit", description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path, help="results/<dataset> of a finished run with ground truth")
    ap.add_argument("--configfile", type=Path, help="take the nvp section of this config (e.g. configs/davis.yaml)")
    ap.add_argument("--nvp", default="{}", help="JSON object of nvp keys that override it")
    ap.add_argument("--videos", nargs="*", help="default: every video of the workspace")
    ap.add_argument("--modes", nargs="*", default=["strided", "first"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    ap.add_argument("--out", type=Path, help="append one JSON line per video here")
    args = ap.parse_args(argv)

    import yaml

    from omnitrack.errors import InputError
    from omnitrack.io import read_json

    manifest_path = args.workspace / "manifest.json"
    manifest = read_json(manifest_path)
    if not manifest.get("has_gt"):
        raise InputError(manifest_path, "the dataset has no ground truth to score a refit against")
    unknown = sorted(set(args.videos or []) - set(manifest["sources"]))
    if unknown:
        raise InputError(manifest_path, f"has no videos {unknown}", f"its videos: {sorted(manifest['sources'])}")
    nvp = {}
    if args.configfile is not None:
        nvp = dict((yaml.safe_load(args.configfile.read_text()) or {}).get("nvp") or {})
    nvp.update(json.loads(args.nvp))
    nvp.update(threads=args.threads, progress=False, tensorboard=False)
    videos = args.videos or sorted(manifest["sources"])
    for video in videos:
        source = Path(manifest["sources"][video])
        if not source.is_absolute():  # written relative to the run's directory, two levels above results/<dataset>
            source = args.workspace.resolve().parent.parent / source
        record = refit_video(args.workspace, video, source, nvp, args.modes)
        for mode in args.modes:
            row = record[mode]
            print(f"{video} {mode}: nvp " + " / ".join(f"{row['nvp'][k]:.3f}" for k in KEYS)
                  + " | chain " + " / ".join(f"{row['chain'][k]:.3f}" for k in KEYS)
                  + f" (AJ / delta / OA; fit {record['fit_seconds']} s)", flush=True)
        if args.out is not None:
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    from omnitrack.errors import OmnitrackError

    try:
        sys.exit(main())
    except OmnitrackError as e:
        sys.exit(f"error: {e}")
