"""The depth stage in the workflow: Depth Anything V2 end to end on a tiny video (the shared random-weights
file: meaningless depths, real plumbing), selective reruns on depth keys, and its errors."""

import json

import numpy as np
import pytest

from tests.shared import shared_file
from tests.workflow_utils import TINY, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow

WEIGHTS = "depth/depth_anything_v2_vits_random.pth"
DEPTH_RUN = {
    **TINY,
    "datasets": {"synthetic": {"kind": "synthetic", "num_videos": 1, "num_frames": 8, "size": [64, 64], "seed": 0}},
    "methods": ["nvp"],
    "query_modes": ["first"],
    "nvp": {"preset": "cpu", "steps": 20},
    "features": {"cell": 8, "filter": {"method": "none"}},
    "depth": {"method": "depth_anything_v2", "weights": "../shared/data/" + WEIGHTS, "input_size": 70},
}


@pytest.fixture(scope="module")
def da_run(tmp_path_factory, shared_data):
    shared_file(shared_data, WEIGHTS)  # fails under CI=true when the file is absent
    work = make_workdir(tmp_path_factory.mktemp("depth"), DEPTH_RUN)
    snakemake(work)
    return work


def test_depth_anything_runs_end_to_end_and_feeds_the_fit(da_run):
    from omnitrack.depth.file import load_depth_file

    depth, meta = load_depth_file(da_run / "results/synthetic/depth/synth_000.npz")
    assert depth.shape == (8, 64, 64) and depth.dtype == np.float32
    assert 0.5 - 1e-6 <= depth.min() < depth.max() <= 1.0  # fit_depth's range: far 1.0, max_ratio 2
    assert meta["method"] == "depth_anything_v2" and meta["settings"]["input_size"] == 70
    assert meta["settings"]["weights"].endswith(WEIGHTS)
    log = (da_run / "logs/synthetic/depth/synth_000.log").read_text()
    assert "depth by depth_anything_v2" in log
    assert (da_run / "benchmarks/synthetic/depth/synth_000.tsv").exists()
    # the fit started from it: the model's initial depth maps are the file's, averaged per depth cell
    # (the averaging itself: tests/test_model_inputs.py)
    import torch

    from omnitrack.interp import resize_area

    ck = torch.load(da_run / "results/synthetic/models/synth_000.pt", weights_only=False)
    init = ck["scene"]["depth.initial"].numpy()
    np.testing.assert_array_equal(init, resize_area(depth, *init.shape[1:]))
    # the depth video, and its preview inside the track viewer; the summary says which depth
    assert (da_run / "results/synthetic/visualise/depth/synth_000.mp4").stat().st_size > 1000
    viewer = (da_run / "results/synthetic/visualise/nvp/synth_000.first.html").read_text()
    assert "<img id='depth'" in viewer
    import pandas as pd

    assert set(pd.read_csv(da_run / "results/summary.csv").depth) == {"depth_anything_v2"}


def test_changing_only_depth_keys_reruns_only_depth_and_downstream(da_run):
    (da_run / "override.yaml").write_text("depth: {input_size: 84}\n")
    out = snakemake(da_run, "-n", "--configfile", "config.yaml", "override.yaml")
    jobs = planned_jobs(out.stdout)
    downstream = {
        "depth": 1,
        "optimise": 1,
        "track_nvp": 1,
        "evaluate": 1,
        "summarise_dataset": 1,
        "summarise": 1,
        "all": 1,
    }
    assert {rule: n for rule, n in jobs.items() if rule in downstream} == downstream, out.stdout
    assert set(jobs) - set(downstream) <= {"visualise", "visualise_depth", "plots", "plot_loss", "summary_page"}, (
        out.stdout
    )
    # keys of another method than the chosen one change nothing
    (da_run / "override.yaml").write_text("depth: {layers: {near: 0.5}, motion: {sep: 0.2}}\n")
    out = snakemake(da_run, "-n", "--configfile", "config.yaml", "override.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_missing_depth_weights_fail_at_the_depth_rule(tmp_path):
    cfg = {**DEPTH_RUN, "depth": {"method": "depth_anything_v2", "weights": "nowhere/depth_anything_v2_vits.pth"}}
    work = make_workdir(tmp_path, cfg)
    out = snakemake(work, "results/synthetic/depth/synth_000.npz", check=False)
    assert out.returncode != 0
    assert "Error in rule depth" in out.stdout + out.stderr
    log = (work / "logs/synthetic/depth/synth_000.log").read_text()
    assert (
        "nowhere/depth_anything_v2_vits.pth: Depth Anything V2 vits weights file not found (download "
        "depth_anything_v2_vits.pth from https://huggingface.co/depth-anything/Depth-Anything-V2-Small"
    ) in log
    assert not (work / "results/synthetic/depth/synth_000.npz").exists()


def test_nvp_motion_init_sep_in_the_workflow_config_is_an_error(tmp_path):
    work = make_workdir(tmp_path, {**TINY, "nvp": {"preset": "cpu", "motion_init_sep": 0.3}})
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    assert (
        "config: nvp.motion_init_sep has no effect in the workflow: the depth stage gives the fit its start "
        "(use `depth: {method: motion, motion: {sep: <value>}}`"
    ) in out.stdout + out.stderr


def test_depth_file_meta_is_json(da_run):
    with np.load(da_run / "results/synthetic/depth/synth_000.npz") as z:
        assert sorted(z.files) == ["depth", "meta"]
        assert json.loads(str(z["meta"]))["units"].startswith("nvp fit depth")
