"""Logging for pipeline stages: everything a stage prints goes to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from omnitrack.workflow.faults import fail_once


@contextlib.contextmanager
def stage_log(path: str | Path | None, stage: str) -> Iterator[logging.Logger]:
    """Send stdout, stderr (tqdm bars included) and the ``omnitrack`` logger to ``path``.

    An exception is logged with its traceback and re-raised, so Snakemake marks the job failed
    and ``--show-failed-logs`` prints the message that names the bad file.
    """
    log = logging.getLogger("omnitrack")
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        yield log
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1, encoding="utf-8", errors="backslashreplace") as f:
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").addHandler(handler)
        start = time.perf_counter()
        log.info("%s: start", stage)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                fail_once(stage)
                yield log
        except BaseException as e:
            log.error("%s failed: %s\n%s", stage, e, traceback.format_exc())
            raise
        finally:
            log.info("%s: %.1f s", stage, time.perf_counter() - start)
            log.removeHandler(handler)
            logging.getLogger("py.warnings").removeHandler(handler)


def configure_threads(threads: int) -> None:
    """Use the rule's thread count for torch's intra-op pool (Snakemake sets OMP_NUM_THREADS too)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
