"""Real users' datasets in the workflow: per-video caching, odd names, config files and settings.

One tiny run (a `videos` folder and a TAP-Vid pickle subset, chain only, DIS flow, 4 frames of 32x32)
then a video added (and the subset widened), then removed: the jobs Snakemake ran are read from its
log. Config checks run `snakemake -n` only.
"""

import os
import pickle
import re
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.workflow_utils import TINY, make_workdir, snakemake

pytestmark = pytest.mark.workflow

PER_VIDEO = {"frames", "flow", "features", "masks", "matches", "track_chain", "evaluate", "visualise"}
CFG = {
    **TINY,
    "datasets": {
        "mine": {"kind": "videos", "path": "my_videos", "max_side": 32},
        "bench": {"kind": "tapvid", "path": "bench.pkl", "videos": ["a.v1"], "size": [32, 32]},
    },
    "methods": ["chain"],
    "query_modes": ["first"],
    "flow": {"method": "dis", "window": 2},
    "visualise": {"max_videos": 0},
    "grid": {"frame": 0, "spacing": 8},
}


def _frames(seed, t=4, size=32):
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (size, size + 2 * t, 3)).astype(np.uint8), (5, 5), 1.5)
    return np.stack([base[:, i : i + size] for i in range(t)])


def _frame_folder(path, seed):
    os.makedirs(path)
    for i, f in enumerate(_frames(seed)):
        ok, buf = cv2.imencode(".png", f)
        with open(os.path.join(path, b"%05d.png" % i if isinstance(path, bytes) else f"{i:05d}.png"), "wb") as fh:
            fh.write(buf.tobytes())


def _video_file(path, seed):
    frames = _frames(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for f in frames:
        writer.write(f)
    writer.release()


def _bench_pickle(path):
    rng = np.random.default_rng(1)
    data = {
        name: {
            "video": _frames(i + 10),
            "points": rng.uniform(0.2, 0.8, (3, 4, 2)).astype(np.float32),
            "occluded": np.zeros((3, 4), bool),
        }
        for i, name in enumerate(["a.v1", "b c", "plain"])
    }
    path.write_bytes(pickle.dumps(data))


def jobs_run(proc) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a Snakemake run started, from its log."""
    text = proc.stdout + proc.stderr
    out = []
    for m in re.finditer(r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n)*)", text, re.M):
        wc = re.search(r"^\s+wildcards: (.*)$", m.group(2), re.M)
        out.append((m.group(1), dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}))
    return out


def per_video(jobs):
    return {(rule, wc["dataset"], wc["video"]) for rule, wc in jobs if rule in PER_VIDEO}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("user"), CFG)
    videos = work / "my_videos"
    videos.mkdir()
    _frame_folder(str(videos / "plain"), 1)
    _frame_folder(os.fsencode(videos) + b"/caf\xe9", 2)  # a name that is not UTF-8 (Latin-1 "café")
    _bench_pickle(work / "bench.pkl")
    snakemake(work)
    return work


def test_odd_names_map_to_ids_and_back(work):
    per_video = pd.read_csv(work / "results/mine/summary.csv")
    assert dict(zip(per_video.video, per_video.name)) == {"caf_xe9": "caf\\xe9", "plain": "plain"}
    assert (per_video.num_queries == 16).all()  # a 4x4 grid of spacing 8 on 32x32 frames: the count is there
    bench = pd.read_csv(work / "results/bench/summary.csv")
    assert dict(zip(bench.video, bench.name)) == {"a_v1": "a.v1"}
    assert (work / "results/mine/predictions/chain/caf_xe9.grid.npz").exists()
    summary = pd.read_csv(work / "results/summary.csv")
    assert set(summary.dataset) == {"bench", "mine"} and summary.num_queries.notna().all()


def test_adding_and_removing_a_video_reruns_only_that_video(work):
    _video_file(work / "my_videos" / "clip.v2.avi", 3)  # a dot in the name
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    cfg["datasets"]["bench"]["videos"] = ["a.v1", "b c"]  # widen the TAP-Vid subset
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = jobs_run(snakemake(work))
    ran = per_video(jobs)
    assert {video for _, _, video in ran} == {"clip_v2", "b_c"}, ran
    assert {("frames", "mine", "clip_v2"), ("frames", "bench", "b_c"), ("evaluate", "bench", "b_c")} <= ran
    assert {rule for rule, _ in jobs} >= {"prepare_dataset", "summarise_dataset", "summarise"}
    assert set(pd.read_csv(work / "results/mine/summary.csv").name) == {"caf\\xe9", "clip.v2", "plain"}

    (work / "my_videos" / "clip.v2.avi").unlink()
    cfg["datasets"]["bench"]["videos"] = ["a.v1"]
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = jobs_run(snakemake(work))
    assert per_video(jobs) == set(), jobs
    assert {"summarise_dataset", "summarise"} <= {rule for rule, _ in jobs}
    assert set(pd.read_csv(work / "results/mine/summary.csv").video) == {"caf_xe9", "plain"}
    assert set(pd.read_csv(work / "results/bench/summary.csv").video) == {"a_v1"}
    assert (work / "results/mine/frames/clip_v2.npz").exists()  # nothing computed is deleted


def test_a_replaced_video_reruns_only_itself(work):
    shutil.rmtree(work / "my_videos" / "plain")
    _frame_folder(str(work / "my_videos" / "plain"), 7)
    ran = per_video(jobs_run(snakemake(work)))
    assert {video for _, _, video in ran} == {"plain"} and ("frames", "mine", "plain") in ran, ran


def test_summary_gathers_configured_datasets_of_earlier_runs(work):
    snakemake(work, "--config", "run_datasets=[bench]", "--forcerun", "summarise", "results/summary.csv")
    assert set(pd.read_csv(work / "results/summary.csv").dataset) == {"bench", "mine"}


# --- config files and settings, checked before any job runs (dry runs) ----------------------------------


def _dry(tmp_path, cfg=TINY, *args):
    work = make_workdir(tmp_path, cfg)
    return work, snakemake(work, "-n", *args, check=False)


def test_duplicate_key_in_config_yaml_is_named_with_its_line(tmp_path):
    work = make_workdir(tmp_path, TINY)
    (work / "config.yaml").write_text(
        "methods: [chain]\ndevice: cpu\nmethods: [nvp]\n"
        + yaml.safe_dump({k: v for k, v in TINY.items() if k not in ("methods", "device")})
    )
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    assert re.search(
        r"config\.yaml: line 3: key 'methods' appears twice in one mapping \(first at line 1\)", out.stdout + out.stderr
    ), out.stderr[-3000:]


def test_duplicate_key_in_a_configfile_is_named(tmp_path):
    work = make_workdir(tmp_path, TINY)
    (work / "over.yaml").write_text("flow:\n  window: 3\n  method: dis\n  window: 5\n")
    out = snakemake(work, "-n", "--configfile", "over.yaml", check=False)
    assert out.returncode != 0
    assert re.search(r"over\.yaml: line 4: key 'window' appears twice", out.stdout + out.stderr), out.stderr[-3000:]


def test_config_yaml_that_is_not_utf8_is_named_with_its_line(tmp_path):
    work = make_workdir(tmp_path, TINY)
    (work / "config.yaml").write_bytes(yaml.safe_dump(TINY).encode() + b"# caf\xe9\n")
    out = snakemake(work, "-n", check=False)
    lines = yaml.safe_dump(TINY).count("\n") + 1
    assert out.returncode != 0
    assert re.search(rf"config\.yaml: is not UTF-8 text: byte 0xe9 at line {lines}, column 6", out.stdout + out.stderr)


def test_device_cuda_without_a_gpu_fails_before_any_job(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    work, out = _dry(tmp_path, {**TINY, "device": "cuda"})
    assert out.returncode != 0
    assert "config: device: cuda, but torch sees no CUDA GPU on this machine" in out.stdout + out.stderr
    assert "Job stats" not in out.stdout


def test_grid_spacing_beyond_the_frames_fails_before_any_job(tmp_path):
    cfg = {
        **CFG,
        "datasets": {"mine": {"kind": "videos", "path": "my_videos", "max_side": 32}},
        "grid": {"frame": 0, "spacing": 64},
    }
    work = make_workdir(tmp_path, cfg)
    _frame_folder(str(work / "my_videos" / "v"), 1)
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    assert "config: grid.spacing 64 yields no query point on any video of dataset 'mine'" in out.stdout + out.stderr


@pytest.mark.parametrize(
    "layout, message",
    [
        (
            "file",
            r"my_videos/v\.avi: is a video file, but `path:` of a videos dataset is the folder that holds the "
            r"videos \(write `path: .*my_videos` to track every video in it",
        ),
        (
            "frames",
            r"my_videos/v: holds 4 images directly: it is one video's frame folder.*write `path: .*my_videos` "
            r"\(this folder becomes video 'v'\)",
        ),
        ("missing", r"nowhere: does not exist"),
    ],
)
def test_dataset_path_at_a_video_or_a_frame_folder_says_what_to_write(tmp_path, layout, message):
    path = {"file": "my_videos/v.avi", "frames": "my_videos/v", "missing": "nowhere"}[layout]
    cfg = {**CFG, "datasets": {"mine": {"kind": "videos", "path": path, "max_side": 32}}}
    work = make_workdir(tmp_path, cfg)
    _frame_folder(str(work / "my_videos" / "v"), 1)
    _video_file(work / "my_videos" / "v.avi", 1)
    out = snakemake(work, "-n", check=False)
    assert out.returncode != 0
    assert re.search(message, out.stdout + out.stderr), (out.stdout + out.stderr)[-3000:]
