"""Video identifiers: every video name (a file name, a frame folder, a TAP-Vid key) maps to a safe id.

The id names the video's files (``results/<dataset>/frames/<id>.npz`` ...), its Snakemake wildcard
and its rows in the summaries; the manifest keeps the original name beside it (``names``), and the
per-video summary has both (columns ``video`` = id and ``name``).

Rules (docs/formats.md, "Video names and ids"):

- a name made only of letters, digits (any script), ``_`` and ``-`` is its own id: ``bear``,
  ``motocross-jump``, ``0003_0017_0001``, ``café``;
- any other run of characters (a dot, a space, a slash, ...) becomes one ``_``: ``clip.v2`` ->
  ``clip_v2``, ``my clip`` -> ``my_clip``;
- bytes that are not UTF-8 (a file name from another system's encoding) are first written as
  ``\\xNN`` escapes, so ``caf\\xe9`` (Latin-1 "café") -> ``caf_xe9``;
- two names of one dataset that map to one id are an error naming both (rename one).

An id depends only on its own name, never on the other videos of the dataset, so adding or removing a
video never renames another (and never recomputes it).
"""

from __future__ import annotations

import os
import re

_UNSAFE = re.compile(r"[^\w-]+")


def display_name(name: str) -> str:
    """A printable form of a name: bytes that were not UTF-8 (surrogate escapes) become ``\\xNN``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def video_id(name: str) -> str:
    """The safe id of a video name (see the module docstring)."""
    vid = _UNSAFE.sub("_", display_name(str(name)))
    return vid or "_"


def is_video_id(text: str) -> bool:
    return bool(text) and _UNSAFE.search(text) is None
