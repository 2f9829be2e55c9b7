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


def cache_output(path: str | Path) -> Path:
    """The workflow output a cached file belongs to, i.e. what to delete to recompute it.

    Flow and masks stores are directories (docs/formats.md): their members (``*.npy``, ``meta.json``)
    are recomputed by deleting the store directory; any other file is its own output.
    """
    path = Path(path)
    return path.parent if path.suffix == ".npy" or path.name == "meta.json" else path


class CacheError(InputError):
    """An intermediate file written by an earlier stage is truncated or does not match.

    The message names the file and the command that recomputes it (delete the output holding it,
    then rerun); the file is never consumed.
    """

    def __init__(self, path: str | Path, problem: str):
        self.output = str(cache_output(path))
        super().__init__(
            path, problem, hint=f"not used; recompute it with `rm -r {self.output} && snakemake --cores N`"
        )


class OutOfMemory(OmnitrackError, MemoryError):
    """A stage ran out of host or GPU memory; the message names the setting that lowers its footprint."""

    def __init__(self, path: str | Path, stage: str, setting: str, cause: BaseException):
        self.path, self.stage, self.setting = str(path), stage, setting
        super().__init__(
            f"{self.path}: the {stage} stage ran out of memory ({type(cause).__name__}: "
            f"{str(cause).strip()[:300]}); lower {setting} and rerun"
        )


def run_command(main) -> None:
    """Exit with ``main()``'s return code; an :class:`OmnitrackError` exits with its message and no
    traceback (the ``python -m omnitrack...`` commands)."""
    import sys

    try:
        sys.exit(main())
    except OmnitrackError as e:
        sys.exit(f"error: {e}")
