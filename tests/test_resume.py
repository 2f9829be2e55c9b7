"""Kill-and-resume: SIGKILL the workflow mid-job, resume with the documented command, get identical results.

Runs omnitrack.workflow.kill_resume (the harness users run) on its tiny built-in config: ~3-4 min for the
chain stages and ~2 min for the nvp fit on 2 cores.
"""

import pytest

from omnitrack.workflow.kill_resume import format_report, run_harness

pytestmark = pytest.mark.workflow


def _check(results, ref_s, kill_at):
    report = format_report(results, ref_s, 2)
    print(report)
    assert [r.rule for r in results] == kill_at
    for r in results:
        assert r.killed and r.mid_job, report  # the job was in flight: its output did not exist
        assert r.resume_rc == 0, report
        assert r.differences == [], report  # summaries, metrics and predictions identical
        assert "compared 2 summaries, " in " ".join(r.notes), report
    return report


def test_killed_stages_resume_to_identical_results(tmp_path):
    kill_at = ["flow", "matches", "summarise"]
    results, ref_s = run_harness(tmp_path, kill_at=kill_at, cores=2, timeout=600)
    report = _check(results, ref_s, kill_at)
    assert "compared 2 summaries, 2 metrics, 2 predictions" in report
    # SIGKILL leaves Snakemake's lock behind: the bare --rerun-incomplete refuses to run until --unlock
    assert all(r.lock_blocked for r in results), report


def test_killed_nvp_fit_resumes_from_its_checkpoint(tmp_path):
    # target the summary: the comparison covers it, and the report's plots are not needed here
    results, ref_s = run_harness(tmp_path, kill_at=["optimise"], cores=2, timeout=600, targets=["results/summary.csv"])
    report = _check(results, ref_s, ["optimise"])
    notes = " ".join(results[0].notes)
    assert ".pt.partial (present)" in notes, report
    assert "fit resumed at step" in notes and "step 0" not in notes, report
