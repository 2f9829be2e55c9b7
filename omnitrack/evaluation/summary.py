"""Summary tables: one row per video (per dataset), one row per (dataset, method, query_mode)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from omnitrack.io import atomic_path, read_json

THRESHOLDS = (1, 2, 4, 8, 16)
METRICS = (["average_jaccard", "average_pts_within_thresh", "occlusion_accuracy", "temporal_coherence"]
           + [f"jaccard_{d}" for d in THRESHOLDS] + [f"pts_within_{d}" for d in THRESHOLDS])


def benchmark_seconds(path: str | Path) -> float:
    """Wall-clock seconds recorded by a Snakemake ``benchmark:`` file."""
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0])


def video_rows(dataset: str, rows: list[dict], settings: dict) -> pd.DataFrame:
    """One row per (video, method, mode) from its metrics JSON and its stage benchmark files.

    rows: dicts with keys video, method, mode, metrics (path or None), benchmarks ({stage: path}).
    settings: columns repeated on every row (e.g. which flow and feature methods produced it).
    """
    out = []
    for row in rows:
        rec = {"dataset": dataset, "video": row["video"], "method": row["method"], "query_mode": row["mode"],
               **settings}
        if row.get("metrics"):
            metrics = read_json(row["metrics"])
            rec["num_queries"] = metrics["num_queries"]
            rec.update({k: metrics[k] for k in METRICS})
        seconds = {f"seconds_{stage}": benchmark_seconds(p) for stage, p in sorted(row["benchmarks"].items())}
        rec.update(seconds)
        rec["seconds_total"] = sum(seconds.values())
        out.append(rec)
    return pd.DataFrame(out).sort_values(["method", "query_mode", "video"], kind="stable").reset_index(drop=True)


def dataset_means(per_video: pd.DataFrame) -> pd.DataFrame:
    """Mean over videos per (dataset, method, query_mode); seconds are per video."""
    keys = ["dataset", "method", "query_mode"]
    rest = [c for c in per_video.columns if c not in keys + ["video"]]
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
    """The top-level table from the per-dataset ones."""
    frames = [pd.read_csv(p) for p in dataset_csvs]
    return pd.concat([dataset_means(f) for f in frames if len(f)], ignore_index=True)

