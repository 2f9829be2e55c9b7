"""Figures of a dataset's results (matplotlib, Agg backend, no display needed).

- :func:`aj_per_video`: bar chart of Average Jaccard per video, one bar per method, a panel per query mode
  (from ``results/<dataset>/summary.csv``).
- :func:`delta_curves`: fraction of points within δ px (δ^x) and Jaccard at δ, against δ = 1..16, one line
  per (method, query mode), averaged over videos.
- :func:`loss_curves`: the optimisation loss of the ``nvp`` method per video (CSV files with columns
  ``step, loss``).

- :func:`summary_table`: the top-level summary as a self-contained HTML page (the Snakemake report shows
  HTML inline, but offers CSV files only as downloads).

Every function writes one file atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from omnitrack.errors import InputError
from omnitrack.evaluation.summary import THRESHOLDS
from omnitrack.io import atomic_path

log = logging.getLogger("omnitrack")
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str | Path) -> None:
    plt = _pyplot()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def read_summary(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """A per-video summary CSV; InputError naming the file if it lacks ``columns`` or has no rows."""
    df = pd.read_csv(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            path,
            f"has no column(s) {missing} (found {list(df.columns)})",
            hint="plots need a benchmark dataset (with ground truth) summary",
        )
    if df.empty:
        raise InputError(path, "has no rows")
    return df


def aj_per_video(summary_csv: str | Path, out_png: str | Path, title: str | None = None) -> pd.DataFrame:
    """Bar chart of average_jaccard per video and method, one panel per query mode.

    -> the plotted table (index video, columns (mode, method)).
    """
    plt = _pyplot()
    df = read_summary(summary_csv, ["video", "method", "query_mode", "average_jaccard"])
    table = df.pivot_table(index="video", columns=["query_mode", "method"], values="average_jaccard")
    modes = sorted(df.query_mode.unique())
    methods = sorted(df.method.unique())
    videos = list(table.index)
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(
        1,
        len(modes),
        figsize=(max(4.0, 0.6 * len(videos) * len(methods) + 2) * len(modes), 3.6),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    x = np.arange(len(videos))
    for ax, mode in zip(axes[0], modes):
        for k, method in enumerate(methods):
            values = table[(mode, method)] if (mode, method) in table else pd.Series(np.nan, index=videos)
            bars = ax.bar(x + (k - (len(methods) - 1) / 2) * width, values.values, width, label=method)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks(x, videos, rotation=30 if len(videos) > 4 else 0, ha="right" if len(videos) > 4 else "center")
        ax.set_title(f"query mode: {mode}")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("Average Jaccard (AJ)")
    axes[0][-1].legend(title="method", fontsize=8)
    fig.suptitle(title or f"AJ per video ({Path(summary_csv).parent.name})")
    _save(fig, out_png)
    return table


def delta_curves(summary_csv: str | Path, out_png: str | Path, title: str | None = None) -> pd.DataFrame:
    """δ^x (fraction of visible points within δ px) and Jaccard at δ against δ (log2 axis), one line per
    (method, query mode), mean over videos. -> the plotted means (rows (method, query_mode))."""
    plt = _pyplot()
    pts = [f"pts_within_{d}" for d in THRESHOLDS]
    jac = [f"jaccard_{d}" for d in THRESHOLDS]
    df = read_summary(summary_csv, ["method", "query_mode", *pts, *jac])
    means = df.groupby(["method", "query_mode"])[pts + jac].mean()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for (method, mode), row in means.iterrows():
        style = "-" if mode == "first" else "--"
        for ax, cols in zip(axes, (pts, jac)):
            ax.plot(THRESHOLDS, row[cols].values, style, marker="o", label=f"{method} / {mode}")
    for ax, name in zip(axes, ("points within δ (δ$^x$)", "Jaccard at δ")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(THRESHOLDS, [str(d) for d in THRESHOLDS])
        ax.set_xlabel("threshold δ (px, 256×256 space)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].legend(title="method / query mode", fontsize=8)
    fig.suptitle(title or f"Accuracy per threshold ({Path(summary_csv).parent.name}, mean over videos)")
    _save(fig, out_png)
    return means


def read_loss(path: str | Path) -> pd.DataFrame:
    """A loss CSV (columns step, loss) -> DataFrame sorted by step; InputError naming the file if malformed."""
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise InputError(path, f"is not a readable CSV ({e})") from None
    missing = [c for c in ("step", "loss") if c not in df.columns]
    if missing:
        raise InputError(
            path,
            f"has no column(s) {missing} (found {list(df.columns)})",
            hint="the nvp optimisation writes columns step, loss",
        )
    return df.sort_values("step")


def loss_curves(loss_csvs: list[str | Path], out_png: str | Path, title: str = "nvp optimisation loss") -> int:
    """Loss against step, one line per CSV (labelled by video: the name before ``.loss.csv``), log y-axis.

    With no CSV, the figure says so instead of plotting (and a warning is logged). -> number of curves.
    """
    plt = _pyplot()
    curves = {}
    for path in loss_csvs:
        df = read_loss(path)
        if df.empty:
            log.warning("%s has no rows: skipped", path)
            continue
        curves[Path(path).name.removesuffix(".loss.csv")] = df
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    if not curves:
        log.warning("no loss curves to plot (%d files given)", len(loss_csvs))
        ax.text(
            0.5,
            0.5,
            "no nvp loss curves: the nvp method was not run\n(or wrote no optimisation steps)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:
        for video, df in curves.items():
            ax.plot(df["step"], df["loss"], lw=1.2, label=video)
        if all((df["loss"] > 0).all() for df in curves.values()):
            ax.set_yscale("log")
        ax.set_xlabel("optimisation step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if len(curves) <= 12:
            ax.legend(title="video", fontsize=8)
    ax.set_title(title)
    _save(fig, out_png)
    return len(curves)


TABLE_COLUMNS = {
    "dataset": "dataset",
    "method": "method",
    "query_mode": "query mode",
    "videos": "videos",
    "num_queries": "queries",
    "average_jaccard": "AJ",
    "average_pts_within_thresh": "δ avg",
    "occlusion_accuracy": "OA",
    "temporal_coherence": "TC",
    "seconds_total": "s / video",
    "flow": "flow",
    "match_features": "match features",
}
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1em;color:#111}"
    "table{border-collapse:collapse;font-size:13px;margin-bottom:1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eef}"
    "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}h3{margin:0.6em 0 0.3em}"
)


def summary_table(summary_csv: str | Path, out_html: str | Path, title: str = "omnitrack summary") -> pd.DataFrame:
    """Write the top-level summary (one row per dataset, method, query mode) as an HTML page.

    Two tables: ``#summary`` with the headline columns (AJ, δ avg, OA, time per video, …) and
    ``#summary-full`` with every column of the CSV. -> the headline table.
    """
    import html

    df = read_summary(summary_csv, ["dataset", "method", "query_mode"])
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    head = df[cols].rename(columns=TABLE_COLUMNS)
    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False, "border": 0, "na_rep": "–"}
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h2>{html.escape(title)}</h2>"
        + f"<p id='datasets'>Datasets in this table: {html.escape(', '.join(sorted(df.dataset.astype(str).unique())))} "
        + "(every configured dataset that has results, from this run or an earlier one)</p>"
        + "<h3>Mean over videos</h3>"
        + head.to_html(table_id="summary", **fmt)
        + f"<h3>All columns of {html.escape(Path(summary_csv).name)}</h3>"
        + df.to_html(table_id="summary-full", **fmt)
        + "</body></html>\n"
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return head
