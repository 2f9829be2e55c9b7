"""The Snakemake HTML report of the tiny workflow, opened in headless Chromium: what a user sees."""

import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import pandas as pd
import pytest

from tests.browser import Browser, ensure_chromium
from tests.workflow_utils import REPO, TINY, make_workdir, snakemake

pytestmark = pytest.mark.workflow

# The masks stage's appearance filter is not what this test is about: skip it to keep the run short.
CONFIG = {**TINY, "features": {"cell": 8, "filter": {"method": "none"}}}
INCLUDE = 'include: "rules/report.smk"'


def report_workdir(tmp: Path) -> Path:
    """make_workdir plus the report captions; adds the report include/directive if the Snakefile lacks them."""
    work = make_workdir(tmp, CONFIG)
    if not (work / "report").exists():
        shutil.copytree(REPO / "report", work / "report")
    snakefile = work / "Snakefile"
    text = snakefile.read_text()
    if INCLUDE not in text:
        text += f"\n{INCLUDE}\n"
    if "\nreport:" not in text:
        text += '\n\nreport: "report/workflow.rst"\n'
    snakefile.write_text(text)
    return work


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = report_workdir(tmp_path_factory.mktemp("report"))
    # explicit targets: the report holds only results of the DAG of its targets (default: rule all)
    snakemake(work, "all", "report_assets")
    snakemake(work, "--report", "results/report.html", "all", "report_assets")
    return work


@pytest.fixture(scope="module")
def browser():
    try:
        ensure_chromium()
    except RuntimeError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))
    with Browser() as b:
        yield b


def test_track_videos_and_plots_are_written(built):
    vis = built / "results/synthetic/visualise/chain"
    names = sorted(p.name for p in vis.iterdir())
    assert names == [
        f"synth_00{i}.{m}.{ext}" for i in (0, 1) for m in ("first", "strided") for ext in ("html", "mp4", "webp")
    ]
    reader = imageio_ffmpeg.read_frames(str(vis / "synth_000.first.mp4"))
    meta = next(reader)
    assert sum(1 for _ in reader) == 12  # every frame of the tiny video
    # ground truth | prediction, each 96 px upscaled x4, a 4 px gap, an 18 px label bar
    assert tuple(meta["size"]) == (2 * 96 * 4 + 4, 96 * 4 + 18)
    assert len(list(iio.imiter(vis / "synth_000.first.webp"))) == 6
    for name in ("aj_per_video", "delta_curves"):
        assert iio.imread(built / f"results/synthetic/plots/{name}.png").std() > 10
    assert (built / "results/report.html").stat().st_size > 100_000


def open_result(b: Browser, report: Path, category: str, row: int = 1) -> None:
    """Open the report at its start page, go to ``category`` and press the eye button of result ``row``."""
    b.open(report)
    b.click(f"//a[.//span[text()='{category}']]")
    b.click(f"//table//tbody//tr[{row}]//a[@type='button'][1]")


def open_result_until(b: Browser, report: Path, category: str, script: str, tries: int = 3):
    """:func:`open_result`, then wait (20 s) for ``script`` to return something truthy -> that value.

    Once in CI (stop 14; 1 run of many, passing on its rerun) the plot never appeared after the eye
    button was pressed; the cause inside the report app was not found. The page is opened afresh up
    to ``tries`` times before the test fails.
    """
    for attempt in range(tries):
        open_result(b, report, category)
        try:
            return b.wait_for(script, 20)
        except TimeoutError:
            if attempt == tries - 1:
                raise


def visible_box(b: Browser, xpath: str) -> dict:
    return b.wait_for(
        """
        const el = document.evaluate(arguments[0], document, null, 9, null).singleNodeValue;
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return r.width > 50 && r.height > 50 ? {x: r.x, y: r.y, w: r.width, h: r.height} : null;""",
        30,
        xpath,
    )


def test_report_renders_summary_plots_and_previews(built, browser, tmp_path):
    report = built / "results/report.html"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    summary = pd.read_csv(built / "results/summary.csv")

    browser.open(report)
    menu = browser.wait_for("return Array.from(document.querySelectorAll('#app li a span'), s => s.textContent)")
    assert menu == ["Workflow", "Statistics", "About", "1. Summary", "2. Plots", "3. Track videos"]
    assert "omnitrack tracks every pixel" in browser.js("return document.body.innerText")  # report/workflow.rst
    browser.screenshot(shots / "start.png")

    # the summary page: rendered in an iframe, one table row per (dataset, method, query mode)
    open_result(browser, report, "1. Summary")
    frame = visible_box(browser, "//iframe")
    browser.screenshot(shots / "summary.png")
    browser.enter_frame("//iframe")
    rows = browser.wait_for("""
        const t = document.querySelector('#summary');
        return t && t.offsetHeight > 0 ? Array.from(t.tBodies[0].rows, r => Array.from(r.cells, c => c.innerText)) : null;""")
    browser.leave_frames()
    assert len(rows) == len(summary) == 4  # (chain, nvp) x (first, strided)
    for cells, (_, expected) in zip(rows, summary.iterrows()):
        assert cells[:3] == ["synthetic", expected.method, expected.query_mode]
        assert float(cells[5]) == pytest.approx(expected.average_jaccard, abs=1e-3)
    assert frame["w"] > 400 and frame["h"] > 200

    # its caption, under the result's info button
    browser.click("//table//tbody//tr[1]//a[@type='button'][2]")
    assert browser.wait_for("return document.body.innerText.includes('Mean over videos of the TAP-Vid metrics')")

    # a plot: an <img> the browser decoded
    size = open_result_until(
        browser,
        report,
        "2. Plots",
        """
        const img = document.querySelector('img[src^="data:image/png"]');
        return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;""",
    )
    assert size[0] > 400

    # a track preview: the animated webp inside the viewer page, decoded and on screen
    open_result(browser, report, "3. Track videos")
    frame = visible_box(browser, "//iframe")
    browser.enter_frame("//iframe")
    img = browser.wait_for("""
        const img = document.querySelector('img#preview');
        if (!img || !img.complete || img.naturalWidth === 0) return null;
        const r = img.getBoundingClientRect();
        return {w: img.naturalWidth, h: img.naturalHeight, x: r.x, y: r.y, bw: r.width, bh: r.height,
                video: !!document.querySelector('video#video')};""")
    browser.leave_frames()
    shot = iio.imread(browser.screenshot(shots / "preview.png"))
    preview = iio.imread(built / "results/synthetic/visualise/chain/synth_000.first.webp", index=0)
    assert (img["w"], img["h"]) == (preview.shape[1], preview.shape[0]) and img["video"]
    # the preview's pixels are on the screenshot: textured, not a blank or broken-image box
    x0, y0 = int(frame["x"] + img["x"]), int(frame["y"] + img["y"])
    region = shot[y0 + 20 : y0 + int(img["bh"]) - 5, x0 + 5 : x0 + int(img["bw"]) - 5, :3]
    assert region.size > 0 and region.std() > 15, (x0, y0, region.shape)
