"""Test-only fault injection: make the first job of a stage fail, to exercise retries on a cluster.

``OMNITRACK_FAIL_ONCE=<stage>[,<stage>...]`` in the environment of ``snakemake`` (the SLURM plugin
submits with ``--export=ALL``, so cluster jobs see it too): the first job of each named stage that
starts in the working directory raises :class:`InjectedFault` after creating the marker file
``.omnitrack-faults/<stage>``; the resubmitted attempt, and every later job, finds the marker and runs
normally. Unset (the normal case), :func:`fail_once` does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "OMNITRACK_FAIL_ONCE"
MARKER_DIR = Path(".omnitrack-faults")


class InjectedFault(RuntimeError):
    """A deliberate failure requested through OMNITRACK_FAIL_ONCE."""


def fail_once(stage: str) -> None:
    """Raise InjectedFault the first time ``stage`` runs here if OMNITRACK_FAIL_ONCE names it."""
    stages = {s.strip() for s in os.environ.get(ENV_VAR, "").split(",") if s.strip()}
    if stage not in stages:
        return
    MARKER_DIR.mkdir(exist_ok=True)
    marker = MARKER_DIR / stage
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    raise InjectedFault(f"{ENV_VAR} names '{stage}': its first job fails on purpose (marker {marker.resolve()})")
