"""Run the Snakemake workflow in a scratch copy of the repository (CLI, as users do)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.shared import REPO

WORKFLOW_FILES = ["Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "envs", "report"]

TINY = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())  # `snakemake --cores 2 --directory .test`


def make_workdir(tmp: Path, config: dict) -> Path:
    """A copy of the workflow with ``config`` as its config.yaml; shared/ is reachable as ../shared."""
    work = tmp / "work"
    work.mkdir()
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    shared = REPO.parent / "shared"
    if shared.exists() and not (tmp / "shared").exists():
        (tmp / "shared").symlink_to(shared)
    return work


def snakemake(work: Path, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table Snakemake prints."""
    table = output.split("Job stats:")[-1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs
