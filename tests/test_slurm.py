"""The workflow on a real one-node SLURM started by tests/slurm/cluster.sh (root, Debian slurm-wlm).

One module-scoped cluster; every Snakemake run goes through the shipped profiles/slurm plus a small
overlay for the test cluster, under `timeout -s KILL` (Snakemake can hang ignoring SIGTERM when SLURM
status queries fail). The first run doubles as the retry test: OMNITRACK_FAIL_ONCE makes the first
`FAIL_RULE` job fail, and the resubmission must ask for twice the memory and runtime.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from omnitrack.workflow.faults import ENV_VAR, MARKER_DIR, InjectedFault, fail_once
from tests.workflow_utils import REPO, TINY, make_workdir, snakemake

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIG = {**TINY, "nvp": {"preset": "cpu", "steps": 300}}  # a fit long enough to scancel mid-run
LONGEST_RULE = "optimise"  # scancel'ed while it runs
CANCEL_TARGET = "results/synthetic/predictions/nvp/{video}.first.npz"  # needs one LONGEST_RULE job
FAIL_RULE = "track_nvp"  # not grouped; its rule scales mem_mb and runtime with `attempt`
CPU_GROUP = "video"  # rules frames..track_chain of one video run as one SLURM job
RUN_TIMEOUT = 600  # seconds, per Snakemake run (SIGKILL); a quiet 2-core machine needs about 3 minutes

OVERLAY = {  # the test cluster: no accounting daemon, no accounts, partitions cpu and gpu
    "slurm-no-account": True,
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 2,
    "slurm-keep-successful-logs": True,
    "latency-wait": 5,
    "jobs": 4,
    "default-resources": {"slurm_partition": "cpu", "mem_mb": 500, "runtime": 10},
}
# rule jobs log under rule_<rule>/, group jobs under group_<group>_<its rules, truncated>.../
SUBMITTED = re.compile(
    r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: .*?/(rule_\w+|group_[A-Za-z0-9]+)[^/]*/"
)


def submissions(text: str) -> list[tuple[str, str, str]]:
    """(snakemake job, SLURM job id, rule or group name) of every submission in a Snakemake log."""
    return [(job, slurm_id, tag.split("_", 1)[1]) for job, slurm_id, tag in SUBMITTED.findall(text)]


def test_fail_once_fails_only_the_first_job_of_a_named_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, "matches,flow")
    fail_once("masks")
    with pytest.raises(InjectedFault, match=r"'matches': its first job fails on purpose"):
        fail_once("matches")
    fail_once("matches")
    assert (tmp_path / MARKER_DIR / "matches").exists() and not (tmp_path / MARKER_DIR / "masks").exists()
    monkeypatch.delenv(ENV_VAR)
    fail_once("flow")


def cluster(cmd: str, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNITRACK_SLURM_DIR": str(state)}
    return subprocess.run(["bash", str(CLUSTER), cmd], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running one-node SLURM; always stopped afterwards, whatever happened."""
    why = None
    if os.geteuid() != 0:
        why = "the test cluster needs root"
    elif shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        why = "no slurmctld and no apt-get to install it"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    state = tmp_path_factory.mktemp("slurm")
    try:
        started = cluster("start", state)
        if started.returncode != 0:
            pytest.fail(f"cluster.sh start failed:\n{started.stdout}\n{started.stderr}")
        yield state
    finally:
        stopped = cluster("stop", state)
        assert stopped.returncode == 0, stopped.stderr


def slurm_workdir(tmp: Path) -> Path:
    work = make_workdir(tmp, CONFIG)
    (work / "profiles" / "slurm-test").mkdir()
    (work / "profiles" / "slurm-test" / "config.yaml").write_text(yaml.safe_dump(OVERLAY))
    return work


def slurm_cmd(*args: str) -> list[str]:
    return [
        "timeout",
        "-s",
        "KILL",
        str(RUN_TIMEOUT),
        SNAKEMAKE,
        "--cores",
        "2",
        "--profile",
        "profiles/slurm",
        "--profile",
        "profiles/slurm-test",
        *args,
    ]


def run_slurm(work: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(slurm_cmd(*args), cwd=work, capture_output=True, text=True, env={**os.environ, **(env or {})})
    proc.text = proc.stdout + proc.stderr
    return proc


def scontrol(jobid: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True, check=True)
    return dict(tok.split("=", 1) for tok in out.stdout.split() if "=" in tok)


def minutes(limit: str) -> int:
    """SLURM TimeLimit ([D-]HH:MM:SS) -> minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def metrics(work: Path) -> pd.DataFrame:
    """results/summary.csv without the timing columns, in a stable row order."""
    df = pd.read_csv(work / "results" / "summary.csv")
    df = df[[c for c in df.columns if not c.startswith("seconds_")]]
    return df.sort_values(["dataset", "method", "query_mode"]).reset_index(drop=True)


def assert_same_results(work: Path, reference: pd.DataFrame) -> None:
    got = metrics(work)
    assert list(got.columns) == list(reference.columns)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same config run locally with --cores 2, in a thread next to the SLURM run (mostly waiting)."""
    work = make_workdir(tmp_path_factory.mktemp("local"), CONFIG)
    with ThreadPoolExecutor(1) as pool:
        yield work, pool.submit(snakemake, work, timeout=RUN_TIMEOUT)


@pytest.fixture(scope="module")
def local_reference(local_run) -> pd.DataFrame:
    work, future = local_run
    future.result()
    return metrics(work)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, local_run, tmp_path_factory):
    """The whole workflow through SLURM, with the first FAIL_RULE job failing on purpose."""
    work = slurm_workdir(tmp_path_factory.mktemp("cluster"))
    proc = run_slurm(work, env={ENV_VAR: FAIL_RULE})
    assert proc.returncode == 0, proc.text[-6000:]
    return work, proc


@pytest.mark.slurm
def test_jobs_go_through_slurm_and_match_a_local_run(slurm_run, local_reference):
    work, proc = slurm_run
    submitted = submissions(proc.text)
    rules = {rule for _, _, rule in submitted}
    assert {"render_synthetic", CPU_GROUP, LONGEST_RULE, FAIL_RULE} <= rules, rules
    assert not rules & {"prepare_dataset", "evaluate", "summarise_dataset", "summarise"}, "local rules ran on SLURM"
    for _, slurm_id, rule in submitted:
        job = scontrol(slurm_id)
        assert job["Comment"].startswith(f"rule_{rule}"), job
        assert job["JobState"] in ("COMPLETED", "FAILED"), job
        gpu = rule == LONGEST_RULE
        assert job["Partition"] == ("gpu" if gpu else "cpu"), job
        assert ("gpu" in job.get("TresPerJob", "")) == gpu, job
    assert_same_results(work, local_reference)


@pytest.mark.slurm
def test_a_failed_job_is_resubmitted_with_twice_the_memory_and_runtime(slurm_run):
    work, proc = slurm_run
    by_job: dict[str, list[str]] = {}
    for job, slurm_id, rule in submissions(proc.text):
        if rule == FAIL_RULE:
            by_job.setdefault(job, []).append(slurm_id)
    retried = [ids for ids in by_job.values() if len(ids) == 2]
    assert len(retried) == 1 and all(len(ids) <= 2 for ids in by_job.values()), by_job
    first, second = (scontrol(i) for i in retried[0])
    assert first["JobState"] == "FAILED" and second["JobState"] == "COMPLETED", (first, second)
    assert f"SLURM-job '{retried[0][0]}' failed" in proc.text
    mem1, mem2 = (int(j["MinMemoryNode"].rstrip("M")) for j in (first, second))
    t1, t2 = (minutes(j["TimeLimit"]) for j in (first, second))
    assert mem2 in (2 * mem1, 2 * mem1 + 1) and t2 in (2 * t1, 2 * t1 + 1), (mem1, mem2, t1, t2)
    assert (work / MARKER_DIR / FAIL_RULE).exists()


def running_job(rule: str, deadline: float) -> str | None:
    """The id of a RUNNING SLURM job of ``rule`` (polls squeue until ``deadline``)."""
    while time.monotonic() < deadline:
        out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True)
        for line in out.stdout.splitlines():
            jobid, _, comment = line.partition(" ")
            if comment.startswith(f"rule_{rule}_"):
                return jobid
        time.sleep(0.5)
    return None


@pytest.mark.slurm
def test_a_cancelled_job_is_reported_and_a_rerun_completes(slurm_run, local_reference):
    """Force one video's LONGEST_RULE job again, scancel it while it runs, then rerun everything."""
    work, _ = slurm_run
    video = json.loads((work / "results/synthetic/manifest.json").read_text())["videos"][0]
    target = CANCEL_TARGET.format(video=video)
    proc = subprocess.Popen(
        slurm_cmd("--forcerun", LONGEST_RULE, "--retries", "0", target),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        jobid = running_job(LONGEST_RULE, time.monotonic() + RUN_TIMEOUT / 2)
        assert jobid, f"no {LONGEST_RULE} job ever ran"
        subprocess.run(["scancel", jobid], check=True)
        out, _ = proc.communicate(timeout=RUN_TIMEOUT + 10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode not in (0, 137), out[-4000:]  # 137: killed by `timeout`
    assert f"SLURM-job '{jobid}' failed, SLURM status is: 'CANCELLED'" in out, out[-4000:]
    assert scontrol(jobid)["JobState"] == "CANCELLED"
    rerun = run_slurm(work)
    assert rerun.returncode == 0, rerun.text[-6000:]
    # the cancelled job never replaced the earlier model (it is written atomically at the end of a fit),
    # so the rerun either refits that video or finds its complete model; either way the results agree
    assert_same_results(work, local_reference)
