"""Kill-and-resume harness: SIGKILL the workflow mid-job, resume it, and compare with an uninterrupted run.

    python -m omnitrack.workflow.kill_resume --workdir DIR [--configfile a.yaml ...] \\
        [--kill-at flow,matches,optimise,summarise] [--cores 2] [--delay 0.5] [--target results/summary.csv]

In ``DIR/reference`` the workflow runs uninterrupted. Then, for every kill point (a rule name), a fresh
copy ``DIR/kill-<rule>`` runs ``snakemake --cores N`` in its own process group; as soon as a job of that
rule has started (its ``rule <name>:`` line was printed and its log file exists; for ``optimise`` also
its first ``.pt.partial`` checkpoint), and ``--delay`` seconds later, the whole group gets SIGKILL. The
run is then resumed with the documented command (docs/reliability.md)::

    snakemake --unlock && snakemake --cores N --rerun-incomplete

(the harness first tries ``--rerun-incomplete`` alone and reports whether the stale lock left by the
kill blocked it), and ``results/summary.csv``, ``results/<dataset>/summary.csv`` (all but the
``seconds_*`` timing columns), every metrics JSON and every prediction array are compared with the
reference run: they must be identical. Without ``--configfile`` the run uses :data:`HARNESS_CONFIG`, the
smallest configuration that still runs every stage (plus a short nvp fit when ``optimise`` is a kill
point). Exit status 0 when every kill point was killed mid-job and resumed to identical results.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_FILES = ["Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "envs", "report", "config.yaml"]
KILL_POINTS = ("flow", "matches", "optimise", "summarise")
RESUME = ("--rerun-incomplete",)
# Seconds between a job's script starting and the kill: summarise finishes ~50 ms after its log appears;
# optimise is killed as soon as its first checkpoint exists.
DELAYS = {"summarise": 0.0, "optimise": 0.0}
RULE_LINE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
FIELD_LINE = re.compile(r"^\s+(output|log): (.+)$")

HARNESS_CONFIG = {
    "datasets": {"synthetic": {"kind": "synthetic", "num_videos": 2, "num_frames": 10, "size": [64, 64], "seed": 0}},
    "run_datasets": ["synthetic"],
    "methods": ["chain"],
    "query_modes": ["first"],
    "device": "cpu",
    "flow": {"method": "dis", "window": 3},
    "features": {"cell": 8},
    "visualise": {"max_videos": 1},
}
# A short nvp fit that still writes several .partial checkpoints (added when `optimise` is a kill point);
# partner_window must not exceed flow.window.
HARNESS_NVP = {
    "steps": 60,
    "checkpoint_every": 5,
    "num_pairs": 4,
    "num_points": 256,
    "partner_window": 3,
    "tensorboard": False,
}


@dataclass
class KillResult:
    """What happened at one kill point."""

    rule: str
    killed: bool = False
    mid_job: bool = False
    job: str = ""  # the output of the job that was in flight
    kill_after_s: float = 0.0  # seconds from start to SIGKILL
    lock_blocked: bool = False  # did the bare --rerun-incomplete fail on the stale lock?
    resume_s: float = 0.0
    resume_rc: int | None = None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.killed and self.mid_job and self.resume_rc == 0 and not self.differences


def snakemake_exe() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    return str(exe) if exe.exists() else "snakemake"


def harness_config(kill_at) -> dict:
    cfg = copy.deepcopy(HARNESS_CONFIG)
    if "optimise" in kill_at:
        cfg["methods"] = ["chain", "nvp"]
        cfg["nvp"] = dict(HARNESS_NVP)
    return cfg


def make_run_dir(root: Path, name: str, config: dict | None) -> Path:
    """A fresh copy of the workflow in ``root/name``; ``config`` (if given) replaces config.yaml."""
    work = root / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in WORKFLOW_FILES:
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    if config is not None:
        (work / "config.yaml").write_text(yaml.safe_dump(config))
    shared = REPO.parent / "shared"
    if shared.exists() and not (root / "shared").exists():
        (root / "shared").symlink_to(shared)  # configs refer to ../shared/data
    return work


def run_snakemake(work: Path, args, extra, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([snakemake_exe(), *args, *extra], cwd=work, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - start


class _Watcher(threading.Thread):
    """Reads snakemake's merged output; records the first job block of ``rule``: its output and log."""

    def __init__(self, stream, rule: str, transcript: Path):
        super().__init__(daemon=True)
        self.stream, self.rule, self.transcript = stream, rule, transcript
        self.found = threading.Event()
        self.job: dict[str, str] = {}

    def run(self) -> None:
        current = None
        with open(self.transcript, "w") as out:
            for line in self.stream:
                out.write(line)
                m = RULE_LINE.match(line)
                if m:
                    current = m.group(1) if not self.found.is_set() else None
                    continue
                f = FIELD_LINE.match(line)
                if f and current == self.rule:
                    self.job[f.group(1)] = f.group(2).split(", ")[0].strip()
                    if "log" in self.job and "output" in self.job:
                        self.found.set()
                        current = None


def _started(work: Path, rule: str, job: dict, deadline: float, proc) -> bool:
    """Wait until the job's script is running (its log file exists; optimise: a checkpoint is written)."""
    wanted = [work / job["log"]]
    if rule == "optimise":
        wanted.append(work / (job["output"] + ".partial"))
    while time.monotonic() < deadline and proc.poll() is None:
        if all(p.exists() for p in wanted):
            return True
        time.sleep(0.005)
    return False


def kill_during(work: Path, rule: str, extra, cores: int, delay: float, timeout: float) -> KillResult:
    """Start the workflow, SIGKILL its process group while a ``rule`` job runs (see module doc).

    If the run stopped before a job of the rule started (e.g. another process signalled it), it is
    continued once. If the job finished before the kill (a job shorter than the polling), the rule is
    run again with ``--forcerun <rule>`` and killed as soon as Snakemake launches it.
    """
    res = _kill_once(work, rule, extra, cores, delay, timeout, on_launch=False)
    if not res.killed:
        run_snakemake(work, ["--unlock"], extra, timeout)
        retry = _kill_once(work, rule, extra, cores, delay, timeout, on_launch=False)
        retry.notes[:0] = [f"first attempt: {n}; continued the run once" for n in res.notes]
        res = retry
    if res.killed and not res.mid_job:
        run_snakemake(work, ["--unlock"], extra, timeout)
        retry = _kill_once(work, rule, [*extra, "--forcerun", rule], cores, delay, timeout, on_launch=True)
        retry.notes.insert(
            0,
            f"the first kill came after the job had finished ({res.kill_after_s:.1f} s); "
            f"killed again at the launch of `--forcerun {rule}`",
        )
        res = retry
    return res


def _kill_once(work: Path, rule: str, extra, cores: int, delay: float, timeout: float, on_launch: bool) -> KillResult:
    res = KillResult(rule)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [snakemake_exe(), "--cores", str(cores), *extra],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watcher = _Watcher(proc.stdout, rule, work / "harness-killed-run.txt")
    watcher.start()
    deadline = time.monotonic() + timeout
    try:
        while not watcher.found.wait(0.01):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        ready = watcher.found.is_set() and (on_launch or _started(work, rule, watcher.job, deadline, proc))
        if ready and not on_launch:
            time.sleep(DELAYS.get(rule, delay))
        if ready and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            res.killed = True
            res.kill_after_s = time.perf_counter() - start
    finally:
        if proc.poll() is None and not res.killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        watcher.join(5)
    res.job = watcher.job.get("output", "")
    tail = " | ".join(watcher.transcript.read_text().strip().splitlines()[-3:]) if not res.killed else ""
    if not watcher.found.is_set():
        res.notes.append(f"no '{rule}' job ran before snakemake exited (rc {proc.returncode}: {tail})")
    elif not res.killed:
        res.notes.append(f"snakemake exited (rc {proc.returncode}: {tail}) before the '{rule}' job could be killed")
    else:
        res.mid_job = not (work / res.job).exists()
        if rule == "optimise":
            partial = work / (res.job + ".partial")
            res.notes.append(f"checkpoint at kill: {partial.name} ({'present' if partial.exists() else 'absent'})")
    return res


def resume(work: Path, res: KillResult, extra, cores: int, timeout: float) -> None:
    """The documented resume; records whether the bare --rerun-incomplete was blocked by the stale lock."""
    args = ["--cores", str(cores), *RESUME]
    proc, seconds = run_snakemake(work, args, extra, timeout)
    if proc.returncode != 0 and "LockException" in proc.stdout + proc.stderr:
        res.lock_blocked = True
        run_snakemake(work, ["--unlock"], extra, timeout)
        proc, seconds = run_snakemake(work, args, extra, timeout)
    res.resume_rc, res.resume_s = proc.returncode, seconds
    (work / "harness-resume.txt").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        res.differences.append(f"resume failed (rc {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    if res.rule == "optimise":
        found = re.findall(r"resuming at step (\d+)", _logs_text(work, "optimise"))
        res.notes.append(f"fit resumed at step {found[0]}" if found else "fit restarted from step 0")


def _logs_text(work: Path, rule: str) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((work / "logs").glob(f"*/{rule}/*.log")))


def _csv_rows(path: Path) -> tuple[list[str], dict[tuple, dict]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0]) if rows else []
    keys = [k for k in ("dataset", "video", "method", "query_mode") if k in header]
    return header, {tuple(r[k] for k in keys): r for r in rows}


def compare_csv(ref: Path, other: Path) -> list[str]:
    """Differences between two summary CSVs, ignoring the ``seconds_*`` timing columns."""
    if not other.exists():
        return [f"{other} is missing"]
    h1, r1 = _csv_rows(ref)
    h2, r2 = _csv_rows(other)
    if h1 != h2:
        return [f"{other}: columns differ: {h1} vs {h2}"]
    if set(r1) != set(r2):
        return [f"{other}: rows differ: {sorted(r1)} vs {sorted(r2)}"]
    diffs = []
    for key, row in r1.items():
        for col in h1:
            if not col.startswith("seconds_") and row[col] != r2[key][col]:
                diffs.append(f"{other} {key} {col}: {row[col]} vs {r2[key][col]}")
    return diffs


def compare_results(ref: Path, other: Path) -> tuple[list[str], dict[str, int]]:
    """Compare the summaries, metrics JSONs and predictions of two workdirs -> (differences, files compared)."""
    diffs: list[str] = []
    counts = {"summaries": 0, "metrics": 0, "predictions": 0}
    for csv_ref in [ref / "results/summary.csv", *sorted(ref.glob("results/*/summary.csv"))]:
        diffs += compare_csv(csv_ref, other / csv_ref.relative_to(ref))
        counts["summaries"] += 1
    for kind, pattern in (("metrics", "results/*/metrics/*/*.json"), ("predictions", "results/*/predictions/*/*.npz")):
        files_ref = {p.relative_to(ref) for p in ref.glob(pattern)}
        files_other = {p.relative_to(other) for p in other.glob(pattern)}
        if files_ref != files_other:
            diffs.append(
                f"{kind} files differ: only in reference {sorted(map(str, files_ref - files_other))}, "
                f"only in resumed {sorted(map(str, files_other - files_ref))}"
            )
        for rel in sorted(files_ref & files_other):
            counts[kind] += 1
            if kind == "metrics":
                a, b = json.loads((ref / rel).read_text()), json.loads((other / rel).read_text())
                diffs += [
                    f"{rel} {k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
                ]
            else:
                with np.load(ref / rel) as za, np.load(other / rel) as zb:
                    for k in sorted(set(za.files) | set(zb.files)):
                        if k not in za.files or k not in zb.files or not np.array_equal(za[k], zb[k], equal_nan=True):
                            diffs.append(f"{rel} array '{k}' differs")
    return diffs, counts


def leftover_temporaries(work: Path) -> list[str]:
    """Temporary siblings (``.<name>.tmp-<pid>-<id>``) that killed atomic writes left under results/."""
    return sorted(str(p.relative_to(work)) for p in (work / "results").rglob(".*.tmp-*"))


def run_harness(
    root: str | Path,
    configfiles=(),
    kill_at=KILL_POINTS,
    cores: int = 2,
    delay: float = 0.5,
    timeout: float = 900,
    targets=(),
    log=print,
) -> tuple[list[KillResult], float]:
    """Reference run, then one kill-and-resume per rule of ``kill_at`` -> (results, reference seconds).

    targets: Snakemake targets of every run (default: the workflow's default target, ``all``).
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    config = None if configfiles else harness_config(kill_at)
    # targets first: --configfile takes every value after it
    extra = [*targets, *(["--configfile", *[str(Path(c).resolve()) for c in configfiles]] if configfiles else [])]
    ref = make_run_dir(root, "reference", config)
    log(f"reference run in {ref} ...")
    proc, ref_s = run_snakemake(ref, ["--cores", str(cores)], extra, timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed in {ref}:\n{(proc.stdout + proc.stderr)[-4000:]}")
    log(f"reference run: {ref_s:.1f} s")
    results = []
    for rule in kill_at:
        work = make_run_dir(root, f"kill-{rule}", config)
        res = kill_during(work, rule, extra, cores, delay, timeout)
        log(f"kill during {rule}: killed={res.killed} mid_job={res.mid_job} job={res.job or '-'}")
        if res.killed:
            temps = leftover_temporaries(work)
            if temps:
                res.notes.append(
                    f"{len(temps)} temporary file(s) of killed writes left beside outputs (never read), e.g. {temps[0]}"
                )
            resume(work, res, extra, cores, timeout)
            diffs, counts = compare_results(ref, work)
            res.differences += diffs
            res.notes.append("compared " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        results.append(res)
    return results, ref_s


def format_report(results: list[KillResult], ref_s: float, cores: int) -> str:
    lines = [
        f"kill-and-resume report (snakemake --cores {cores}; reference run {ref_s:.1f} s; "
        f"timings are wall-clock on a shared machine)",
        "",
        f"{'kill point':<11} {'killed':<7} {'mid-job':<8} {'kill at':>8} {'stale lock':<11} {'resume':>8}  comparison",
        "-" * 92,
    ]
    for r in results:
        comparison = "identical" if r.ok else f"{len(r.differences)} difference(s)" if r.differences else "not compared"
        lines.append(
            f"{r.rule:<11} {'yes' if r.killed else 'no':<7} {'yes' if r.mid_job else 'no':<8} "
            f"{r.kill_after_s:>7.1f}s {'yes' if r.lock_blocked else 'no':<11} {r.resume_s:>7.1f}s  {comparison}"
        )
        if r.job:
            lines.append(f"    job in flight: {r.job}")
        lines += [f"    {n}" for n in r.notes]
        lines += [f"    DIFF {d}" for d in r.differences[:20]]
    verdict = "PASS" if results and all(r.ok for r in results) else "FAIL"
    lines += ["", f"{verdict}: {sum(r.ok for r in results)}/{len(results)} kill points resumed to identical results"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m omnitrack.workflow.kill_resume", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="scratch directory for the runs (created)")
    p.add_argument(
        "--configfile",
        nargs="+",
        default=[],
        help="config files merged over the repository's config.yaml (default: the built-in tiny config)",
    )
    p.add_argument("--kill-at", default=",".join(KILL_POINTS), help="comma-separated rule names")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--delay", type=float, default=0.5, help="seconds between the job starting and the kill")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per snakemake invocation")
    p.add_argument("--target", nargs="+", default=[], help="Snakemake targets (default: the workflow's `all`)")
    args = p.parse_args(argv)
    kill_at = [k.strip() for k in args.kill_at.split(",") if k.strip()]
    results, ref_s = run_harness(
        args.workdir, args.configfile, kill_at, args.cores, args.delay, args.timeout, args.target
    )
    report = format_report(results, ref_s, args.cores)
    print(report)
    (Path(args.workdir) / "report.txt").write_text(report + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
