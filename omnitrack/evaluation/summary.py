"""Summary tables: one row per video (per dataset), one row per (dataset, method, query_mode)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from omnitrack.io import atomic_path, read_json

THRESHOLDS = (1, 2, 4, 8, 16)
METRICS = (
    ["average_jaccard", "average_pts_within_thresh", "occlusion_accuracy", "temporal_coherence"]
    + [f"jaccard_{d}" for d in THRESHOLDS]
    + [f"pts_within_{d}" for d in THRESHOLDS]
)


def benchmark_seconds(path: str | Path) -> float:
    """Wall-clock seconds recorded by a Snakemake ``benchmark:`` file."""
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def prediction_queries(path: str | Path) -> int:
    """How many query points (= tracks) a prediction file holds."""
    from omnitrack.io import load_npz

    return int(load_npz(path, {"query_points": (2, "f")})["query_points"].shape[0])


def video_rows(dataset: str, rows: list[dict], settings: dict) -> pd.DataFrame:
    """One row per (video, method, mode) from its metrics JSON, prediction and stage benchmark files.

    rows: dicts with keys video (the id), name (the original name; default the id), method, mode,
    prediction (path, or None), metrics (path or None), benchmarks ({stage: path}).
    settings: columns repeated on every row (e.g. which flow and feature methods produced it).
    Every row has ``num_queries`` (the tracks of its prediction; with ground truth, the queries scored);
    metrics that are undefined (a mode without queries) are empty.
    """
    out = []
    for row in rows:
        rec = {
            "dataset": dataset,
            "video": row["video"],
            "name": row.get("name", row["video"]),
            "method": row["method"],
            "query_mode": row["mode"],
            **settings,
        }
        if row.get("prediction"):
            rec["num_queries"] = prediction_queries(row["prediction"])
        if row.get("metrics"):
            metrics = read_json(row["metrics"])
            rec["num_queries"] = metrics["num_queries"]
            rec.update({k: (float("nan") if metrics[k] is None else metrics[k]) for k in METRICS})
        seconds = {f"seconds_{stage}": benchmark_seconds(p) for stage, p in sorted(row["benchmarks"].items())}
        rec.update(seconds)
        rec["seconds_total"] = sum(seconds.values())
        out.append(rec)
    return pd.DataFrame(out).sort_values(["method", "query_mode", "video"], kind="stable").reset_index(drop=True)


def dataset_means(per_video: pd.DataFrame) -> pd.DataFrame:
    """Mean over videos per (dataset, method, query_mode); seconds are per video."""
    keys = ["dataset", "method", "query_mode"]
    rest = [c for c in per_video.columns if c not in keys + ["video", "name"]]
    numeric = [c for c in rest if c in METRICS or c == "num_queries" or c.startswith("seconds_")]
    settings = [c for c in rest if c not in numeric]
    grouped = per_video.groupby(keys, sort=True)
    table = grouped[numeric].mean()
    table.insert(0, "videos", grouped.size())
    if "num_queries" in table:
        table["num_queries"] = grouped["num_queries"].sum()
    for c in settings:
        table[c] = grouped[c].first()
    return table.reset_index()


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def combine(dataset_csvs: list[str | Path]) -> pd.DataFrame:
    """The top-level table from the per-dataset ones (every dataset given: see rules/common.smk,
    ``summary_datasets``, for which ones the workflow gathers)."""
    frames = [pd.read_csv(p) for p in dataset_csvs]
    return pd.concat([dataset_means(f) for f in frames if len(f)], ignore_index=True)
