"""Errors that name the file at fault and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class OmnitrackError(Exception):
    """Base class of every error omnitrack raises on purpose."""


class InputError(OmnitrackError, ValueError):
    """A user-supplied file (video, pickle, weights, config) is missing or malformed.

    The message always starts with the path, then says what is wrong, then (optionally)
    how to fix it.
    """

    def __init__(self, path: str | Path, problem: str, hint: str | None = None):
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class CacheError(InputError):
    """An intermediate file written by an earlier stage is truncated or does not match.

    The hint tells the user how to recompute it; the file is never consumed.
    """

    def __init__(self, path: str | Path, problem: str):
        super().__init__(
            path,
            problem,
            hint=f"delete it and rerun, e.g. `rm -r {path} && snakemake --cores N`, "
            f"or `snakemake --cores N --forcerun <rule>` for the rule that writes it",
        )
