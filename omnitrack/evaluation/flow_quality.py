"""Precision and coverage of the training flows per gap, against ground-truth correspondences.

The masks stage hands the nvp fit a flow and a reliability mask for every pair (i, j) of the window;
what the fit learns can only be as right as the flows it marks reliable. For every gap g = |i - j|
this counts, over all pairs of that gap:

- coverage: the share of the pixels (or ground-truth points) of frame i whose flow is marked
  reliable (mask != 0: cycle-consistent, or occluded but reliable);
- precision at 1 px and 3 px: the share of the reliable flows that land within 1 px / 3 px of the
  true position of the same scene point in frame j (for an occluded-but-reliable flow, the position
  of the hidden point).

Two kinds of truth: dense (every pixel, synthetic videos: :class:`omnitrack.data.synthetic.DenseTruth`),
split into background (layer 0) and moving objects (layers > 0); sparse (TAP-Vid's annotated points
visible in both frames; the flow is sampled bilinearly at the point, the mask at its pixel), one class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from omnitrack.interp import bilinear, nearest, pixel_centres

THRESHOLDS = (1.0, 3.0)


@dataclass
class Tally:
    """Counts of one class over the pairs of one gap."""

    points: int = 0
    reliable: int = 0
    within: list[int] = field(default_factory=lambda: [0] * len(THRESHOLDS))

    def add(self, reliable: np.ndarray, error: np.ndarray) -> None:
        """reliable bool [N], error [N] (px, used where reliable)."""
        self.points += int(reliable.size)
        self.reliable += int(reliable.sum())
        for k, th in enumerate(THRESHOLDS):
            self.within[k] += int(np.count_nonzero(error[reliable] < th))

    @property
    def coverage(self) -> float:
        return self.reliable / self.points if self.points else float("nan")

    def precision(self, k: int) -> float:
        return self.within[k] / self.reliable if self.reliable else float("nan")

    def __iadd__(self, other: Tally) -> Tally:
        self.points += other.points
        self.reliable += other.reliable
        self.within = [a + b for a, b in zip(self.within, other.within)]
        return self


def dense_pair(flow: np.ndarray, mask: np.ndarray, target: np.ndarray, layer: np.ndarray) -> dict[str, Tally]:
    """One pair against dense truth: flow [H, W, 2] i->j, mask [H, W] (!= 0: reliable), target
    [H, W, 2] true positions in frame j of frame i's pixel centres, layer [H, W] (0: background).
    -> {"background": Tally, "objects": Tally}."""
    h, w = mask.shape
    error = np.linalg.norm(pixel_centres(h, w) + flow - target, axis=-1)
    out = {}
    for name, sel in (("background", layer == 0), ("objects", layer > 0)):
        out[name] = Tally()
        out[name].add(mask[sel] != 0, error[sel])
    return out


def sparse_pair(flow: np.ndarray, mask: np.ndarray, points_i: np.ndarray, points_j: np.ndarray) -> Tally:
    """One pair against sparse truth: the points [N, 2] (pixels) visible in frames i and j."""
    tally = Tally()
    if len(points_i):
        error = np.linalg.norm(points_i + bilinear(flow, points_i) - points_j, axis=1)
        tally.add(nearest(mask, points_i) != 0, error)
    return tally


def table(by_gap: dict[int, dict[str, Tally]]) -> list[dict]:
    """Rows {gap, <class>_coverage, <class>_p1, <class>_p3, <class>_reliable} per gap, then 'all'."""
    rows = []
    total: dict[str, Tally] = {}
    for gap in sorted(by_gap):
        row = {"gap": gap}
        for name, t in by_gap[gap].items():
            row.update(_cells(name, t))
            total.setdefault(name, Tally())
            total[name] += t
        rows.append(row)
    rows.append({"gap": "all", **{k: v for name, t in total.items() for k, v in _cells(name, t).items()}})
    return rows


def _cells(name: str, t: Tally) -> dict:
    return {
        f"{name}_coverage": t.coverage,
        f"{name}_p1": t.precision(0),
        f"{name}_p3": t.precision(1),
        f"{name}_reliable": t.reliable,
    }


def markdown(rows: list[dict], classes: list[str]) -> str:
    """The table as markdown: per class coverage, share within 1 px, share within 3 px."""
    head = "| gap | " + " | ".join(f"{c} coverage | {c} ≤1 px | {c} ≤3 px" for c in classes) + " |"
    lines = [head, "|" + "---|" * (1 + 3 * len(classes))]

    def pct(v):
        return "–" if v != v else f"{100 * v:.1f} %"

    for r in rows:
        cells = [str(r["gap"])]
        for c in classes:
            cells += [pct(r[f"{c}_coverage"]), pct(r[f"{c}_p1"]), pct(r[f"{c}_p3"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for telling ``positive`` (bool) from the rest
    (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    score, positive = np.asarray(score, np.float64), np.asarray(positive, bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average 1-based rank of each tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
