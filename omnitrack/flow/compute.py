"""The flow stage: flow of every ordered pair within a window, written to a flow store."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError
from omnitrack.flow.store import FlowWriter, window_pairs

RAFT_DEFAULTS = {"weights": None, "small": False, "iters": 20, "batch_size": 4, "precision": "fp32"}


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda" when available, else "cpu"; anything else is returned unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_flows(
    frames: np.ndarray,
    out_dir: str | Path,
    method: str,
    window: int,
    raft: dict | None = None,
    device: str = "auto",
    progress: bool = True,
    gaps: list[int] | None = None,
) -> None:
    """Write the flow of every pair (i, j), 0 < |i - j| <= window, to the store ``out_dir``; with
    ``gaps``, only of the pairs |i - j| in gaps (it must hold 1: the masks stage chains the others).

    frames: uint8 [T, H, W, 3]. method: "dis" or "raft". raft: {"weights": path or "torchvision",
    "small": bool, "iters": int, "batch_size": int, "precision": "fp32" | "bf16" | "auto"} (defaults in RAFT_DEFAULTS). A window larger
    than T - 1 is clipped (with a warning). The store's meta records method, window and, for RAFT,
    weights, small, iters and precision.
    """
    from tqdm import tqdm

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if t < 2:
        raise ValueError(f"need at least 2 frames for optical flow, got {t}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if window > t - 1:
        warnings.warn(f"flow window {window} exceeds the {t} frames of the video; using {t - 1}", stacklevel=2)
        window = t - 1
    if gaps is not None:
        if 1 not in gaps or min(gaps) < 1:
            raise ValueError(f"flow gaps must be positive and include 1 (the masks stage chains the rest), got {gaps}")
        gaps = sorted({int(g) for g in gaps if g <= window})
    pairs = window_pairs(t, window, gaps)
    meta = {"method": method, "window": window, "gaps": gaps or list(range(1, window + 1))}
    if method == "dis":
        from omnitrack.flow.dis import dis_pair_flows

        meta["preset"] = "medium"
        flows = dis_pair_flows(frames, pairs, preset="medium")
    elif method == "raft":
        flows, raft_meta = _raft_flows(frames, pairs, {**RAFT_DEFAULTS, **(raft or {})}, resolve_device(device))
        meta.update(raft_meta)
    else:
        raise ValueError(f"flow method must be 'dis' or 'raft', got {method!r}")
    with FlowWriter(out_dir, pairs, t, h, w, meta=meta) as writer:
        for k, flow in tqdm(
            flows,
            total=len(pairs),
            desc=f"flow {Path(out_dir).name}",
            unit="pair",
            file=sys.stderr,
            disable=not progress,
        ):
            writer.put(k, flow)


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Does the CPU compute bfloat16 natively (Linux cpuinfo flags avx512_bf16 or amx_bf16)? True
    where it cannot be told (no such file), so that nothing warns on other systems."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """RAFT's precision setting -> "fp32" or "bf16": ``auto`` is bf16 on a CPU that computes bfloat16
    natively and fp32 elsewhere (emulated bfloat16 is orders of magnitude slower: 268 s for one
    batch of 4 pairs on an AVX2-only EPYC)."""
    if precision == "auto":
        return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"
    return precision


def _raft_flows(frames, pairs, cfg: dict, device: str):
    import torch

    from omnitrack.flow.raft import load_raft, raft_pair_flows

    if cfg["weights"] is None:
        raise InputError(
            "config: flow.raft.weights",
            "RAFT needs a checkpoint",
            "set it to the path of raft-sintel.pth / raft-things.pth or to 'torchvision'",
        )
    precision = resolve_precision(cfg["precision"], device)
    if precision == "bf16" and device == "cpu" and not cpu_has_bf16():
        warnings.warn(
            "flow.raft.precision is bf16 but this CPU has no native bfloat16 (avx512_bf16 / amx_bf16): "
            "RAFT will be slower than in fp32; set flow.raft.precision: fp32",
            stacklevel=2,
        )
    weights = cfg["weights"] if str(cfg["weights"]) == "torchvision" else Path(cfg["weights"]).resolve()
    model = load_raft(weights, small=bool(cfg["small"]), device=device)
    flows = raft_pair_flows(
        model,
        frames,
        pairs,
        iters=int(cfg["iters"]),
        batch_size=int(cfg["batch_size"]),
        device=torch.device(device),
        precision=precision,
    )
    meta = {"weights": str(weights), "small": bool(cfg["small"]), "iters": int(cfg["iters"])}
    return flows, {**meta, "precision": precision}
