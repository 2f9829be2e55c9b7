"""Static checks of the workflow: --lint, the SLURM profile, and the plan of a DAVIS-sized run.

No cluster needed: `snakemake --profile profiles/slurm -n` parses the profile and evaluates every job's
resources without calling sbatch.
"""

import pickle
import re

import numpy as np
import pytest

from tests.workflow_utils import TINY, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

DAVIS_VIDEOS = 30
DAVIS = {
    **TINY,
    "datasets": {"davis": {"kind": "tapvid", "path": "stub_davis.pkl"}},
    "methods": ["chain", "nvp"],
    "query_modes": ["first", "strided"],
}


def write_stub_davis(path, videos=DAVIS_VIDEOS):
    """A TAP-Vid DAVIS-form pickle: {name: video uint8 [3,16,16,3], points [4,3,2], occluded [4,3]}."""
    rng = np.random.default_rng(0)
    data = {
        f"video{i:02d}": {
            "video": rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8),
            "points": rng.uniform(0, 1, (4, 3, 2)).astype(np.float32),
            "occluded": np.zeros((4, 3), bool),
        }
        for i in range(videos)
    }
    with open(path, "wb") as f:
        pickle.dump(data, f)


def job_blocks(output):
    """rule -> list of {resource: value} of its planned jobs (plus "threads"), from a dry run's listing."""
    blocks = {}
    # grouped jobs (the per-video CPU group) are listed indented inside their group job
    for m in re.finditer(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\n(.*?)(?=^\s*\[|^\S|\Z)", output, re.M | re.S):
        res = re.search(r"^\s+resources: (.*)$", m.group(2), re.M)
        items = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        threads = re.search(r"^\s+threads: (\d+)$", m.group(2), re.M)
        items["threads"] = threads.group(1) if threads else "1"
        blocks.setdefault(m.group(1), []).append(items)
    return blocks


def test_lint_is_clean(tmp_path):
    work = make_workdir(tmp_path, TINY)
    out = snakemake(work, "--lint", check=False)
    text = out.stdout + out.stderr
    lints = re.findall(r"^Lints for (.+?):?$\n\s+\* (.+?):?$", text, re.M)
    assert out.returncode == 0 and not lints, "\n".join(f"{where}: {what}" for where, what in lints) or text[-3000:]


def test_slurm_profile_parses_and_plans(tmp_path):
    work = make_workdir(tmp_path, TINY)
    out = snakemake(work, "--profile", "profiles/slurm", "-n")
    assert "This was a dry-run" in out.stdout
    assert planned_jobs(out.stdout)["render_synthetic"] == 1


def test_local_profile_limits_gpus(tmp_path):
    """The local profile provides gpu=1 (printed only by a real run: build just the synthetic pickle)."""
    work = make_workdir(tmp_path, TINY)
    out = snakemake(work, "--profile", "profiles/local", "results/synthetic/synthetic.pkl")
    text = out.stdout + out.stderr
    assert re.search(r"^Provided resources: .*\bgpu=(Resource\(\"gpu\", )?1\b", text, re.M), text[-2000:]
    assert re.search(r"^Provided cores: 2$", text, re.M), "a command-line --cores must win over the profile's"


@pytest.fixture(scope="module")
def davis_plan(tmp_path_factory):
    """Dry run of a 30-video TAP-Vid dataset under the SLURM profile, after the real prepare_dataset."""
    work = make_workdir(tmp_path_factory.mktemp("davis"), DAVIS)
    write_stub_davis(work / "stub_davis.pkl")
    snakemake(work, "results/davis/manifest.json")
    out = snakemake(work, "--profile", "profiles/slurm", "-n")
    return out.stdout


def test_davis_run_plans_the_expected_jobs_per_rule(davis_plan):
    n = DAVIS_VIDEOS
    modes = len(DAVIS["query_modes"])
    assert planned_jobs(davis_plan) == {
        "frames": n,
        "flow": n,
        "features": 2 * n,  # filter and match descriptors
        "masks": n,
        "depth": n,  # layers (the default): weight-free, in the per-video CPU group
        "matches": n,
        "track_chain": n * modes,
        "optimise": n,
        "track_nvp": n * modes,
        "evaluate": n * modes * len(DAVIS["methods"]),
        "visualise": 3 * modes * len(DAVIS["methods"]),  # the first visualise.max_videos videos
        "visualise_depth": 3,
        "plots": 1,
        "plot_loss": 1,
        "summary_page": 1,
        "summarise_dataset": 1,
        "summarise": 1,
        "all": 1,
    }, davis_plan[-3000:]


def test_slurm_profile_sends_only_optimise_to_the_gpu_partition(davis_plan):
    blocks = job_blocks(davis_plan)
    for res in blocks["optimise"]:
        assert res["slurm_partition"] == "gpu" and res["gpu"] == "1", res
        assert res["cpus_per_gpu"] == res["threads"], res
    for rule in ["frames", "flow", "features", "masks", "depth", "matches", "track_chain", "track_nvp"]:
        for res in blocks[rule]:
            assert res["slurm_partition"] == "cpu" and res.get("gpu", "0") == "0", (rule, res)
