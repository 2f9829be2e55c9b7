"""The workflow end to end on a tiny synthetic config: results, caching, selective reruns, errors."""

import pandas as pd
import pytest

from tests.workflow_utils import TINY, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("wf"), TINY)
    snakemake(work)
    return work


def test_demo_produces_the_summary(finished_run):
    summary = pd.read_csv(finished_run / "results/summary.csv")
    assert set(zip(summary.method, summary.query_mode)) == {
        (m, q) for m in ("chain", "nvp") for q in ("first", "strided")
    }
    assert (summary.videos == 2).all()
    assert summary.average_jaccard.between(0.05, 1).all()
    assert summary.occlusion_accuracy.between(0.5, 1).all()
    assert (summary.temporal_coherence > 0).all()  # mean acceleration error (px); no tracker is exact
    for stage in ["frames", "flow", "masks", "features", "matches"]:
        assert (summary[f"seconds_{stage}"] > 0).all()
    chain, nvp = summary[summary.method == "chain"], summary[summary.method == "nvp"]
    assert (chain.seconds_track_chain > 0).all() and chain.seconds_optimise.isna().all()
    assert (nvp.seconds_optimise > 0).all() and (nvp.seconds_track_nvp > 0).all()
    per_video = pd.read_csv(finished_run / "results/synthetic/summary.csv")
    assert len(per_video) == 8 and set(per_video.video) == {"synth_000", "synth_001"}
    assert set(per_video.match_features) == {"sift"} and set(per_video.flow) == {"dis"}


def test_flow_quality_tool_scores_the_training_flows(finished_run, tmp_path):
    """The flow-quality table of the run, against the renderer's dense truth: a row per gap of the
    window, and the confirmed masks keep long-gap flows on the moving objects right (the direct
    flows under the cycle test alone are not)."""
    from omnitrack.tools.flow_quality import main

    config = str(finished_run / "config.yaml")
    for stage in ("masks", "direct"):
        assert (
            main(
                [
                    str(finished_run / "results/synthetic"),
                    "--configfile",
                    config,
                    "--stage",
                    stage,
                    "--csv",
                    str(tmp_path / f"{stage}.csv"),
                ]
            )
            == 0
        )
    masks, direct = (pd.read_csv(tmp_path / f"{s}.csv").set_index("gap") for s in ("masks", "direct"))
    assert list(masks.index) == ["1", "2", "3", "4", "all"]
    assert (masks.background_p3 > 0.95).all() and (masks.objects_p3 > 0.9).all()
    assert masks.loc["all", "objects_p3"] > direct.loc["all", "objects_p3"] + 0.05
    assert (masks.objects_coverage.drop("all") > 0.2).all()


def test_depth_order_tool_scores_the_run_against_the_true_layers(finished_run, tmp_path):
    """The depth-order table of the run (one row per video and the mean): the depth stage's files score
    as the layers method recomputed with the run's settings (they are the same depth)."""
    from omnitrack.tools.depth_order import main

    csv = tmp_path / "order.csv"
    assert (
        main(
            [
                str(finished_run / "results/synthetic"),
                "--configfile",
                str(finished_run / "config.yaml"),
                "--csv",
                str(csv),
            ]
        )
        == 0
    )
    table = pd.read_csv(csv).set_index("video")
    assert list(table.index) == ["synth_000", "synth_001", "**mean**"]
    assert (table["workspace (layers) right"] == table["layers right"]).all()
    for method in ("layers", "motion"):
        assert table[f"{method} right"].between(0, 1).all() and table[f"{method} ties"].between(0, 1).all()
    assert (table["layers right"] + table["layers ties"] <= 1.0001).all()


def test_second_run_does_nothing(finished_run):
    out = snakemake(finished_run)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_a_matching_parameter_reruns_only_matches_and_downstream(finished_run):
    (finished_run / "override.yaml").write_text("matches: {min_gap: 9}\n")
    out = snakemake(finished_run, "-n", "--configfile", "config.yaml", "override.yaml")
    jobs = planned_jobs(out.stdout)
    downstream = {
        "matches": 2,
        "track_chain": 4,
        "optimise": 2,
        "track_nvp": 4,
        "evaluate": 8,
        "summarise_dataset": 1,
        "summarise": 1,
        "all": 1,
    }
    assert {rule: n for rule, n in jobs.items() if rule in downstream} == downstream, out.stdout
    assert set(jobs) - set(downstream) <= {"visualise", "plots", "plot_loss", "summary_page"}, out.stdout


def test_changing_the_occlusion_margin_reruns_tracking_not_the_fit(finished_run):
    (finished_run / "override.yaml").write_text("nvp: {preset: cpu, steps: 40, occlusion_margin: 0.2}\n")
    out = snakemake(finished_run, "-n", "--configfile", "config.yaml", "override.yaml")
    jobs = planned_jobs(out.stdout)
    assert jobs.get("track_nvp") == 4 and jobs.get("evaluate") == 4 and "optimise" not in jobs, out.stdout
    assert not {"flow", "masks", "matches", "track_chain", "depth"} & set(jobs), out.stdout


def test_bad_config_names_the_key(tmp_path):
    bad = {**TINY, "flow": {"method": "dis", "window": 0}, "colour": "blue"}
    work = make_workdir(tmp_path, bad)
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "flow.window: 0 is less than the minimum of 1" in text
    assert "Additional properties are not allowed ('colour' was unexpected)" in text


def test_missing_tapvid_pickle_is_named(tmp_path):
    cfg = {**TINY, "datasets": {"davis": {"kind": "tapvid", "path": "nowhere/davis.pkl"}}}
    work = make_workdir(tmp_path, cfg)
    out = snakemake(work, check=False)
    assert out.returncode != 0
    assert "nowhere/davis.pkl" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ({"flow": {"gaps": [2, 4]}}, "config: flow.gaps must include 1 (got [2, 4]): chaining steps by gap 1"),
        (
            {"flow": {"gaps": [1, 4]}, "masks": {"chain": False}},
            "config: flow.gaps needs masks.chain: true (the masks stage chains the gaps not computed)",
        ),
    ],
)
def test_flow_gaps_that_cannot_be_chained_fail_before_anything_runs(tmp_path, override, message):
    work = make_workdir(tmp_path, {**TINY, **override})
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr
