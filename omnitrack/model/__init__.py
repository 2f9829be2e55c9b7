"""The nvp method: per-video optimisation of the CaDeX++ invertible deformation (OmniTrackFast).

Library API::

    tracker = fit(frames_or_path, config=None, masks_dir=..., matches_path=None, depth=None,
                  checkpoint_path=None)            # reports to the "omnitrack" logger
    tracks, occluded = tracker.track(query_points)        # [N, 3] (t, y, x) -> [N, T, 2], [N, T]
    tracker.save(path); Tracker.load(path)
    default_config("cpu" | "paper")

Workflow entry points: :func:`fit_video` and :func:`predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omnitrack.model.config import default_config, resolve

if TYPE_CHECKING:
    from omnitrack.model.tracker import Tracker

__all__ = ["default_config", "resolve", "fit", "fit_video", "predict", "Tracker", "TrainingError"]


def __getattr__(name: str):
    """Import torch-based parts on first use, so config checks at Snakefile parse time stay light."""
    if name in ("fit", "TrainingError"):
        from omnitrack.model import training

        return getattr(training, name)
    if name == "Tracker":
        from omnitrack.model.tracker import Tracker

        return Tracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit_video(
    frames_path, masks_dir, matches_path, checkpoint_path, config: dict | None, loss_path=None, depth_path=None
) -> Tracker:
    """Fit one video from the pipeline's files; the model goes to ``checkpoint_path`` (atomically).

    An interrupted fit resumes from ``<checkpoint_path>.partial``. With ``loss_path``, the loss
    history (columns step, loss and one per loss term) is written there as CSV. TensorBoard scalars go to
    ``<checkpoint_path>.tb/`` when tensorboard is installed and config "tensorboard" is true.
    """
    from omnitrack.model.training import fit

    checkpoint_path = Path(checkpoint_path)
    tracker = fit(
        frames_path,
        config,
        masks_dir=masks_dir,
        matches_path=matches_path,
        depth=depth_path,
        checkpoint_path=checkpoint_path,
        tensorboard_dir=checkpoint_path.with_name(checkpoint_path.name + ".tb"),
    )
    if loss_path is not None:
        import pandas as pd

        from omnitrack.io import atomic_path

        terms = sorted({k for row in tracker.history for k in row} - {"step", "total"})
        table = pd.DataFrame(tracker.history, columns=["step", "total", *terms]).rename(columns={"total": "loss"})
        with atomic_path(loss_path) as tmp:
            table.to_csv(tmp, index=False)
    return tracker


def predict(
    checkpoint_path, query_points, device: str | None = None, inference: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Track ``query_points`` float [N, 3] (t, y, x) with a fitted model -> tracks [N, T, 2], occluded [N, T].

    ``inference``: values of keys only inference reads (config.INFERENCE_KEYS) replacing the model's.
    """
    from omnitrack.model.config import INFERENCE_KEYS
    from omnitrack.model.tracker import Tracker

    unknown = sorted(set(inference or {}) - INFERENCE_KEYS)
    if unknown:
        raise ValueError(f"{unknown} are not inference keys ({sorted(INFERENCE_KEYS)})")
    tracker = Tracker.load(checkpoint_path, device=device)
    tracker.config.update(inference or {})
    return tracker.track(query_points)
