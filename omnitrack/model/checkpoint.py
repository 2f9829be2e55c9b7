"""Checkpoint files of the nvp fit: written atomically, tied to the video they were fitted on.

A checkpoint is a ``torch.save`` dict: format, identity (frames shape + hash of a few frames, see
inputs.identity), config, shape [T, H, W], scene (state dict), step, complete; a training checkpoint
also holds optimizer, scheduler and the numpy/torch RNG states so a resumed run continues exactly.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from omnitrack.errors import CacheError, InputError
from omnitrack.io import atomic_path
from omnitrack.model.inputs import identity

FORMAT = "omnitrack.nvp/1"


def partial_path(path: str | Path) -> Path:
    """Where the in-progress checkpoint of a fit whose final output is ``path`` lives."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def write_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "checkpoint file is missing")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, OSError) as e:
        raise CacheError(
            path, f"is not a readable checkpoint, truncated or corrupt ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputError(
            path,
            f"is not an nvp checkpoint (format {ck.get('format') if isinstance(ck, dict) else None!r}, "
            f"expected {FORMAT!r})",
        )
    return ck


def check_identity(path: str | Path, ck: dict, frames: np.ndarray) -> None:
    """Raise InputError if the checkpoint was fitted on another video than ``frames``."""
    want = identity(frames)
    got = ck["identity"]
    if got != want:
        what = (
            f"frames shape {got['shape']} vs {want['shape']}"
            if got["shape"] != want["shape"]
            else "same shape but different frame content"
        )
        raise InputError(
            path, f"checkpoint belongs to another video ({what})", "delete it, or pass the video it was fitted on"
        )
