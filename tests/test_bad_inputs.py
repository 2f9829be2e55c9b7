"""Rows of docs/errors.md that no other test file covers: each bad input gets its own clear message.

Every test matches the file's path and the message; none catches every exception.
"""

import os
import pickle
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from omnitrack import pipeline
from omnitrack.data.frames import load_frames, save_frames
from omnitrack.data.tapvid import load_tapvid
from omnitrack.data.videos import read_video
from omnitrack.errors import CacheError, InputError, OutOfMemory
from omnitrack.flow.compute import compute_flows
from omnitrack.flow.store import FlowStore, FlowWriter
from omnitrack.io import atomic_path, save_npz, write_json
from omnitrack.prediction import save_prediction
from omnitrack.queries import grid_queries
from omnitrack.workflow.config import check_config
from tests.shared import REPO

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def _frames(t=5, h=32, w=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w + 2 * t, 3)).astype(np.uint8), (5, 5), 1.5)
    return np.stack([base[:, i : i + w] for i in range(t)])  # texture moving 1 px left per frame


def _frames_file(tmp_path, name="frames.npz", **kw) -> Path:
    path = tmp_path / name
    save_frames(
        path, _frames(**kw), {"video": "v", "source": "test", "source_size": [40, 32], "fps": None, "has_gt": False}
    )
    return path


def _flow_store(tmp_path, frames_path, window=2) -> Path:
    out = tmp_path / "flow" / "v"
    compute_flows(load_frames(frames_path)[0], out, method="dis", window=window, progress=False)
    return out


def _recompute(output: Path) -> str:
    return re.escape(f"recompute it with `rm -r {output} && snakemake --cores N`")


# --- videos -------------------------------------------------------------------------------------------


def test_frame_folder_without_images_has_no_frames(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: has no decodable frame; tracking needs at least 2 frames"):
        read_video(tmp_path / "empty")


def test_huge_video_is_downscaled_with_a_warning(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((900, 1200, 3), 60 * i, np.uint8))
    write_json(tmp_path / "source" / "big.json", {"video": "big", "name": "big", "path": str(folder)})
    with pytest.warns(UserWarning, match=r"big: 1200x900 is downscaled to 64x48 \(factor 18\.8\).*raise max_side"):
        pipeline.make_frames(tmp_path / "source" / "big.json", "big", tmp_path / "frames.npz", {"max_side": 64})
    frames, meta = load_frames(tmp_path / "frames.npz")
    assert frames.shape == (2, 48, 64, 3) and meta["source_size"] == [1200, 900]
    assert meta["params"] == {"max_side": 64}


# --- TAP-Vid pickles ----------------------------------------------------------------------------------


def test_every_track_occluded_is_an_error(tmp_path):
    example = {
        "video": np.zeros((4, 16, 16, 3), np.uint8),
        "points": np.full((3, 4, 2), 0.5, np.float32),
        "occluded": np.ones((3, 4), bool),
    }
    path = tmp_path / "hidden.pkl"
    path.write_bytes(pickle.dumps({"v": example}))
    with (
        pytest.warns(UserWarning, match="dropped 3 of 3 tracks"),
        pytest.raises(InputError, match=rf"{re.escape(str(path))}: video 'v': has no track that is visible"),
    ):
        load_tapvid(path)


# --- config -------------------------------------------------------------------------------------------


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda c: c.update(colour="blue"),
            r"\(top level\): Additional properties are not allowed \('colour' was unexpected\)",
        ),
        (
            lambda c: c["flow"].update(widow=4),
            r"flow: Additional properties are not allowed \('widow' was unexpected\)",
        ),
        (lambda c: c["flow"].update(window="16"), r"flow\.window: '16' is not of type 'integer'"),
        (lambda c: c["masks"].update(chain="yes"), r"masks\.chain: 'yes' is not of type 'boolean'"),
        (lambda c: c["flow"].update(window=0), r"flow\.window: 0 is less than the minimum of 1"),
        (lambda c: c["flow"].update(window=-3), r"flow\.window: -3 is less than the minimum of 1"),
        (lambda c: c["datasets"]["synthetic"].update(num_frames=1), r"datasets\.synthetic\.num_frames: 1 is less than"),
    ],
)
def test_bad_config_names_file_and_key(config, change, message):
    change(config)
    with pytest.raises(InputError, match=r"my\.yaml: invalid configuration:\n.*" + message) as err:
        check_config(config, SCHEMA, "my.yaml")
    assert "config.schema.yaml and README.md, section Configuration" in str(err.value)


def test_grid_frame_outside_the_video(tmp_path):
    with pytest.raises(InputError, match=r"config\.yaml: grid\.frame 5 is outside the video's 3 frames"):
        grid_queries(3, 32, 32, frame=5, spacing=8)


# --- cached intermediates -----------------------------------------------------------------------------


def test_truncated_flow_file_is_never_read(tmp_path):
    frames = _frames_file(tmp_path)
    store = _flow_store(tmp_path, frames)
    flow = store / "flow.npy"
    flow.write_bytes(flow.read_bytes()[: flow.stat().st_size // 2])
    pattern = rf"{re.escape(str(flow))}: is truncated or corrupt .*{_recompute(store)}"
    with pytest.raises(CacheError, match=pattern):
        FlowStore(store)
    with pytest.raises(CacheError, match=pattern):  # the stage that reads it
        pipeline.build_masks(
            frames, store, None, tmp_path / "masks" / "v", {"cycle_th": 3.0, "appearance_th": 0.0, "chain": True}
        )
    assert not (tmp_path / "masks" / "v").exists()


def test_flow_store_of_other_frames_is_rejected(tmp_path):
    store = _flow_store(tmp_path, _frames_file(tmp_path, "old.npz", t=5))
    frames = _frames_file(tmp_path, t=6)
    with pytest.raises(
        CacheError,
        match=rf"{re.escape(str(store))}: flows of frames \(5, 32, 40\) \(T, H, W\) "
        rf"do not match .*frames\.npz \(6, 32, 40\).*{_recompute(store)}",
    ):
        pipeline.build_masks(
            frames, store, None, tmp_path / "masks" / "v", {"cycle_th": 3.0, "appearance_th": 0.0, "chain": False}
        )


def test_flow_store_missing_its_metadata(tmp_path):
    store = _flow_store(tmp_path, _frames_file(tmp_path))
    (store / "meta.json").unlink()
    with pytest.raises(CacheError, match=rf"meta\.json: file is missing .*{_recompute(store)}"):
        FlowStore(store)


def test_truncated_frames_file(tmp_path):
    frames = _frames_file(tmp_path)
    frames.write_bytes(frames.read_bytes()[:1000])
    with pytest.raises(CacheError, match=rf"{re.escape(str(frames))}: is truncated or corrupt .*{_recompute(frames)}"):
        pipeline.estimate_flow(frames, tmp_path / "flow" / "v", {"method": "dis", "window": 2}, "cpu")


def test_truncated_checkpoint_is_reported_not_loaded(tmp_path):
    torch = pytest.importorskip("torch")
    from omnitrack.model.checkpoint import partial_path, read_checkpoint, write_checkpoint

    model = tmp_path / "models" / "v.pt"
    partial = partial_path(model)
    write_checkpoint(partial, {"step": 5, "scene": {"w": torch.arange(50000.0)}})
    assert read_checkpoint(partial)["step"] == 5
    partial.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])
    with pytest.raises(
        CacheError,
        match=rf"{re.escape(str(partial))}: is not a readable checkpoint, truncated .*"
        rf"rm -r {re.escape(str(partial))} && snakemake",
    ):
        read_checkpoint(partial)


def test_a_failed_write_leaves_no_output(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "out.npz") as tmp:
            save_npz(tmp, a=np.zeros(3))
            raise ZeroDivisionError
    with pytest.raises(ValueError, match=r"pair 0 of 2 with flow \(4, 4, 2\), expected \(8, 8, 2\)"):
        with FlowWriter(tmp_path / "flow", [(0, 1), (1, 0)], 2, 8, 8) as w:
            w.put(0, np.zeros((4, 4, 2)))
    with pytest.raises(RuntimeError, match=r"no flow was written for pairs \[\(1, 0\)\]"):
        with FlowWriter(tmp_path / "flow", [(0, 1), (1, 0)], 2, 8, 8) as w:
            w.put(0, np.zeros((8, 8, 2)))
    assert list(tmp_path.iterdir()) == []  # neither outputs nor temporaries


# --- runtime: out of memory ---------------------------------------------------------------------------


def test_cuda_out_of_memory_in_raft_names_the_batch_size(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import omnitrack.flow.compute

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(omnitrack.flow.compute, "compute_flows", oom)
    frames = _frames_file(tmp_path)
    with pytest.raises(
        OutOfMemory,
        match=rf"{re.escape(str(frames))}: the flow stage ran out of memory "
        r"\(OutOfMemoryError: CUDA out of memory.*lower flow\.raft\.batch_size",
    ):
        pipeline.estimate_flow(frames, tmp_path / "flow", {"method": "raft", "window": 2}, "cuda")


def test_cpu_allocator_failure_in_the_fit_names_points_and_pairs(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import omnitrack.model

    def oom(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 68719476736 bytes"
        )

    monkeypatch.setattr(omnitrack.model, "fit_video", oom)
    with pytest.raises(
        OutOfMemory,
        match=r"frames\.npz: the optimise stage ran out of memory .*can't allocate "
        r"memory.*lower nvp\.num_points / nvp\.num_pairs",
    ):
        pipeline.optimise(
            frames_path=tmp_path / "frames.npz",
            masks_dir=tmp_path / "masks",
            matches_path=tmp_path / "m.npz",
            out_path=tmp_path / "v.pt",
            loss_path=tmp_path / "v.loss.csv",
            nvp={},
        )


def test_numpy_memory_error_in_masks_names_the_resolution(tmp_path, monkeypatch):
    import omnitrack.flow.consistency

    def oom(*args, **kwargs):
        np.empty((1 << 62,), np.uint8)  # numpy raises a MemoryError subclass

    monkeypatch.setattr(omnitrack.flow.consistency, "compute_masks", oom)
    frames = _frames_file(tmp_path)
    store = _flow_store(tmp_path, frames)
    with pytest.raises(
        OutOfMemory,
        match=r"frames\.npz: the masks stage ran out of memory \(MemoryError: "
        r"Unable to allocate.*lower the working resolution \(datasets\.<name>\.size",
    ):
        pipeline.build_masks(
            frames, store, None, tmp_path / "masks", {"cycle_th": 3, "appearance_th": 0, "chain": True}
        )


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, monkeypatch):
    import omnitrack.flow.compute

    def boom(*args, **kwargs):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")

    monkeypatch.setattr(omnitrack.flow.compute, "compute_flows", boom)
    with pytest.raises(RuntimeError, match="CUDNN_STATUS_INTERNAL_ERROR") as err:
        pipeline.estimate_flow(_frames_file(tmp_path), tmp_path / "flow", {"method": "raft", "window": 2}, "cuda")
    assert not isinstance(err.value, OutOfMemory)


def test_row_writer_round_trip_and_out_of_range_rows(tmp_path):
    from omnitrack.io import NpyRows, open_npy

    rows = NpyRows(tmp_path / "a.npy", (3, 4, 5), np.uint16)
    rows[2] = np.arange(20).reshape(4, 5)
    rows[0] = 7  # a scalar fills the row
    np.testing.assert_array_equal(rows[2], np.arange(20).reshape(4, 5))
    with pytest.raises(IndexError, match=r"a\.npy: row 3 outside \[0, 3\)"):
        rows[3] = 0
    rows.close()
    a = open_npy(tmp_path / "a.npy", (3, 4, 5), np.uint16)
    assert (a[0] == 7).all() and (a[1] == 0).all() and a[2, 3, 4] == 19


def test_row_reader_reports_a_file_truncated_under_it(tmp_path):
    from omnitrack.io import NpyRows

    rows = NpyRows(tmp_path / "a.npy", (3, 4, 5), np.uint16)
    rows[2] = 1
    os.truncate(tmp_path / "a.npy", os.path.getsize(tmp_path / "a.npy") - 8)  # e.g. a disk filled up
    with pytest.raises(
        CacheError, match=rf"{re.escape(str(tmp_path / 'a.npy'))}: is truncated \(row 2 is incomplete\)"
    ):
        rows[2]
    np.testing.assert_array_equal(rows[1], 0)


# --- config files, query settings, strict metrics (issue 16) ------------------------------------------


def test_config_file_duplicate_key_undecodable_bytes_and_syntax_name_file_and_line(tmp_path):
    from omnitrack.workflow.config import load_config_file

    dup = tmp_path / "dup.yaml"
    dup.write_text("flow:\n  window: 4\n  method: dis\n  window: 8\n")
    with pytest.raises(
        InputError,
        match=rf"{re.escape(str(dup))}: line 4: key 'window' appears twice in one mapping "
        r"\(first at line 2\); YAML would silently keep only the last value",
    ):
        load_config_file(dup)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"device: cpu\n# r\xe9sum\xe9\n")
    with pytest.raises(
        InputError, match=rf"{re.escape(str(latin1))}: is not UTF-8 text: byte 0xe9 at line 2, column 4"
    ):
        load_config_file(latin1)
    broken = tmp_path / "broken.yaml"
    broken.write_text("flow:\n  window: [4\n")
    with pytest.raises(InputError, match=rf"{re.escape(str(broken))}: line \d+: is not valid YAML"):
        load_config_file(broken)
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {window: 4}\nflow:\n  <<: *b\n  method: dis\n")  # a merge key is not a duplicate
    assert load_config_file(ok)["flow"] == {"window": 4, "method": "dis"}


def test_tools_read_the_runs_config_merged_with_configfiles_not_the_working_directorys(tmp_path, monkeypatch):
    """run_config (refit, flow_quality): the config.yaml two levels above results/<dataset>, merged key by
    key with each --configfile in order; read strictly, so a bad file names itself."""
    from omnitrack.workflow.config import run_config

    run, elsewhere = tmp_path / "run", tmp_path / "cwd"
    (run / "results" / "davis32").mkdir(parents=True)
    elsewhere.mkdir()
    (run / "config.yaml").write_text("nvp: {preset: cpu, steps: 100, seed: 1}\nflow: {window: 8}\n")
    (elsewhere / "config.yaml").write_text("nvp: {steps: 999}\n")
    over = tmp_path / "over.yaml"
    over.write_text("nvp: {steps: 3000}\n")
    monkeypatch.chdir(elsewhere)
    workspace = Path("..") / "run" / "results" / "davis32"
    assert run_config(workspace) == {"nvp": {"preset": "cpu", "steps": 100, "seed": 1}, "flow": {"window": 8}}
    merged = run_config(workspace, [over])
    assert merged["nvp"] == {"preset": "cpu", "steps": 3000, "seed": 1} and merged["flow"] == {"window": 8}
    assert run_config(tmp_path / "bare" / "results" / "x", [over]) == {"nvp": {"steps": 3000}}
    (run / "config.yaml").write_text("nvp: {steps: 1}\nnvp: {steps: 2}\n")
    with pytest.raises(InputError, match=rf"{re.escape(str((run / 'config.yaml').resolve()))}: line 2: key 'nvp'"):
        run_config(workspace)


def test_grid_spacing_that_yields_no_point_is_an_error():
    with pytest.raises(
        InputError,
        match=r"config\.yaml: grid\.spacing 80 yields no query point on the 64x32 working "
        r"frames \(the first point would be at 40 px\) \(use a spacing below 64",
    ):
        grid_queries(3, 64, 32, frame=0, spacing=80)
    assert len(grid_queries(3, 64, 32, frame=0, spacing=63)) == 1


def test_metrics_of_a_mode_without_queries_are_strict_json_nulls(tmp_path):
    import json

    # every track is occluded on frame 0, the only strided query frame of a 4-frame video: 0 strided queries
    occluded = np.zeros((2, 4), bool)
    occluded[:, 0] = True
    save_npz(
        tmp_path / "v.npz",
        video=np.zeros((4, 16, 16, 3), np.uint8),
        points=np.full((2, 4, 2), 0.5, np.float32),
        occluded=occluded,
    )
    save_prediction(
        tmp_path / "pred.npz",
        np.zeros((0, 3), np.float32),
        np.zeros((0, 4, 2), np.float32),
        np.zeros((0, 4), bool),
        16,
        16,
    )
    pipeline.evaluate(tmp_path / "pred.npz", tmp_path / "v.npz", "v", "strided", tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert metrics["num_queries"] == 0 and metrics["average_jaccard"] is None and metrics["occlusion_accuracy"] is None
    write_json(tmp_path / "x.json", {"a": float("nan"), "b": [np.float32("inf"), 1.5]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": None, "b": [None, 1.5]}


# --- per-video source records: rewritten only when their content changes -------------------------------


def test_source_records_keep_their_mtime_when_unchanged(tmp_path):
    from omnitrack.data.tapvid import split_tapvid

    rng = np.random.default_rng(0)
    data = {
        name: {
            "video": rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8),
            "points": rng.uniform(0, 1, (2, 3, 2)).astype(np.float32),
            "occluded": np.zeros((2, 3), bool),
        }
        for name in ("bear", "clip.v2")
    }
    src = tmp_path / "d.pkl"
    src.write_bytes(pickle.dumps(data))
    assert split_tapvid(src, tmp_path / "source", subset=["clip.v2"]) == {"clip_v2": "clip.v2"}
    record = tmp_path / "source" / "clip_v2.npz"
    os.utime(record, ns=(1, 1))
    assert split_tapvid(src, tmp_path / "source") == {"bear": "bear", "clip_v2": "clip.v2"}  # widened subset
    assert record.stat().st_mtime_ns == 1  # untouched: its stages do not rerun
    data["clip.v2"]["points"][0, 0] = 0.25
    src.write_bytes(pickle.dumps(data))
    split_tapvid(src, tmp_path / "source")
    assert record.stat().st_mtime_ns > 1  # its ground truth changed: rewritten

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.b", "c"):
        (videos / name).mkdir()
        for i in range(2):
            cv2.imwrite(str(videos / name / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    spec = {"kind": "videos", "path": str(videos)}
    m = pipeline.prepare_dataset("mine", spec, videos, tmp_path / "mine" / "manifest.json")
    assert m["videos"] == ["a_b", "c"] and m["names"] == {"a_b": "a.b", "c": "c"}
    rec = tmp_path / "mine" / "source" / "c.json"
    os.utime(rec, ns=(1, 1))
    shutil.rmtree(videos / "a.b")
    assert pipeline.prepare_dataset("mine", spec, videos, tmp_path / "mine" / "manifest.json")["videos"] == ["c"]
    assert rec.stat().st_mtime_ns == 1


def test_prediction_for_other_queries_is_not_scored_nor_drawn_against_the_truth(tmp_path):
    """evaluate and visualise compare a prediction with the ground truth of the queries it was made for;
    one made for other queries (e.g. an older sampling) is an error naming it, and nothing is written."""
    from omnitrack.queries import benchmark_queries
    from omnitrack.visualise import visualise_prediction

    rng = np.random.default_rng(0)
    points = rng.uniform(0.1, 0.9, (3, 6, 2)).astype(np.float32)
    source = tmp_path / "source.npz"
    video = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    save_npz(source, video=video, points=points, occluded=np.zeros((3, 6), bool))
    save_frames(
        tmp_path / "frames.npz",
        video,
        {"video": "v", "source": "t", "fps": 10, "source_size": [32, 32], "has_gt": True},
    )
    queries, tracks, occluded = benchmark_queries(source, "first", 32, 32)
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    save_prediction(good, queries, tracks, occluded, 32, 32)
    save_prediction(bad, queries[:2], tracks[:2], occluded[:2], 32, 32)
    assert pipeline.evaluate(good, source, "v", "first", tmp_path / "good.json")["average_jaccard"] == 1.0
    message = r"bad\.npz: was made for other query points than the first queries of .*source\.npz \(2 vs 3 points\)"
    with pytest.raises(InputError, match=message):
        pipeline.evaluate(bad, source, "v", "first", tmp_path / "bad.json")
    with pytest.raises(InputError, match=message):
        visualise_prediction(
            tmp_path / "frames.npz", bad, tmp_path / "bad.mp4", tmp_path / "bad.png", {}, source, "first"
        )
    assert not list(tmp_path.glob("bad.*[!z]"))
