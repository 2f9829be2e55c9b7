"""Loss terms of one optimisation step (reference §3.5), as a dict of weighted terms.

Notation: a point p1 of frame i is mapped to frame j (prediction p̂2, depth ẑ2); p2* is its flow or
match target; D_j the optimised depth, D0_j the initial depth, g(.) the depth finite difference, all
sampled at the nearest cell.

Flow batch (per step, B pairs x Q points):
  flow        mean over M of w_pair * (|dx| + |dy|) / 2, M = p̂2 inside the image and |ẑ2| >= min_depth
  flow_grad   w(step) * mean |(p̂2[n+1] - p̂2[n]) - (p2*[n+1] - p2*[n])|, w = min(step / ramp, max)
  depth_grad  mean ||g(D0_i, p1) - g(D_i, p1)|| + mean ||g(D0_j, p2*) - g(D_j, p2*)|| (L2; outside M x 0.1)
  depth_cons  mean |ẑ2 - D0_j(p2*)|           over visible correspondences
  depth_pred  100 * mean |ẑ2 - D_j(p2*)|      over visible correspondences
  depth_order 100 * mean relu(D_j(p2*) + margin - ẑ2) over occluded-but-reliable correspondences
Upstream applies depth_pred/depth_cons to occluded correspondences too, which pulls the mapped point
onto the occluder's depth; here those get the order hinge instead: the surface seen at p2* in frame j
must be nearer than the point by a margin. It is the only weight-free signal that orders surfaces
when depth starts constant, and makes the depth-test occlusion meaningful.

Match batch: match = lambda(step) * (mean |p̂2 - p2*| + 100 depth_pred + 10 depth_cons + 100 depth_grad),
after ``match_inlier_step`` only over inliers (|dx| and |dy| below factor x the median of all |dx|, |dy|
of the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnitrack.model.deformer import Prepared
from omnitrack.model.scene import Scene


def match_weight(step: int, cfg: dict) -> float:
    weights, steps = cfg["match_weights"], cfg["match_weight_steps"]
    return float(weights[sum(step >= s for s in steps)])


def _mean(x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    if w is None:
        return x.mean()
    return (x * w).sum() / w.sum().clamp_min(1.0)


def map_batches(scene: Scene, prep: Prepared, batches: list[dict]) -> list[tuple]:
    """Map the points p1 [B, Q, 2] of frames fi [B] of each batch to its frames fj [B], all batches
    in one pass of the deformer -> per batch (cells1: p1's depth cells, x2, y2, z2 [B, Q]).

    One pass for the flow and the match points: a coupling layer's cost is largely fixed per call,
    so mapping the 16 x 32 match points apart cost ~20 % of a CPU step (BENCHMARKS.md §2).
    """
    cells = [scene.depth.cells(b["fi"], b["p1"][..., 0], b["p1"][..., 1]) for b in batches]
    depth = [scene.depth.lookup(c) for c in cells]
    sizes = [b["p1"].shape[0] * b["p1"].shape[1] for b in batches]

    def flat(parts):  # [B, Q] each -> [sum B*Q, 1]: one "pair" per point
        return torch.cat([p.reshape(-1, 1) for p in parts])

    x, y = flat([b["p1"][..., 0] for b in batches]), flat([b["p1"][..., 1] for b in batches])
    fi, fj = ([b[k].repeat_interleave(b["p1"].shape[1]) for b in batches] for k in ("fi", "fj"))
    mapped = scene.correspond(prep, torch.cat(fi), torch.cat(fj), x, y, flat(depth))
    out = []
    for n, (c, b) in enumerate(zip(cells, batches)):
        out.append((c, *(t.split(sizes)[n].view(b["p1"].shape[:2]) for t in mapped)))
    return out


def _depth_grad(scene: Scene, cells) -> torch.Tensor:
    """||g(D0) - g(D)||, the L2 norm over both directions (upstream's) -> [B, Q]."""
    return torch.linalg.vector_norm(scene.depth.gradient(cells, initial=True) - scene.depth.gradient(cells), dim=-1)


def flow_losses(scene: Scene, batch: dict, mapped: tuple, step: int, cfg: dict) -> dict[str, torch.Tensor]:
    """batch: fi, fj [B] long; p1, p2 [B, Q, 2]; occluded [B, Q] bool; weight [B]; mapped: its
    entry of :func:`map_batches`.

    Also sets batch["point_error"] [B, Q]: each point's (|dx| + |dy|) / 2 (detached), which the
    trainer feeds back to the sampler's error map.
    """
    fi, fj, p2 = batch["fi"], batch["fj"], batch["p2"]
    cells1, x2, y2, z2 = mapped
    pred = torch.stack([x2, y2], -1)
    inside = (scene.camera.inside(x2, y2) & (z2.abs() >= cfg["min_depth"])).detach()
    m = inside.to(pred.dtype)
    raw = (pred - p2).abs().sum(-1) * 0.5
    batch["point_error"] = raw.detach()
    err = raw * batch["weight"].unsqueeze(1)
    out = {"flow": _mean(err, m)}

    w_fg = min(step / cfg["flow_grad_ramp"], cfg["w_flow_grad_max"])
    if w_fg > 0:
        dp = pred[:, 1:] - pred[:, :-1]
        dt = p2[:, 1:] - p2[:, :-1]
        out["flow_grad"] = w_fg * (dp - dt).abs().mean()

    cells2 = scene.depth.cells(fj, p2[..., 0], p2[..., 1])
    scale = m + (1 - m) * cfg["outside_depth_grad_scale"]
    out["depth_grad"] = cfg["w_depth_grad"] * (
        _mean(_depth_grad(scene, cells1) * scale) + _mean(_depth_grad(scene, cells2) * scale)
    )
    occ = batch["occluded"].to(pred.dtype)
    vis = 1 - occ
    dj = scene.depth.lookup(cells2)
    out["depth_cons"] = cfg["w_depth_cons"] * _mean((z2 - scene.depth.lookup(cells2, initial=True)).abs(), vis)
    out["depth_pred"] = cfg["w_depth_pred"] * _mean((z2 - dj).abs(), vis)
    near = (fi - fj).abs().le(cfg["order_max_gap"]).unsqueeze(1).to(pred.dtype) * occ
    out["depth_order"] = cfg["w_depth_order"] * _mean(F.relu(dj + cfg["order_margin"] - z2), near)
    return out


def match_losses(scene: Scene, batch: dict, mapped: tuple, step: int, cfg: dict) -> dict[str, torch.Tensor]:
    """batch: fi, fj [B] long; p1, p2 [B, Q, 2]; mapped: its entry of :func:`map_batches`. The
    caller skips it (and the mapping) when ``match_weight`` is 0."""
    lam = match_weight(step, cfg)
    fj, p2 = batch["fj"], batch["p2"]
    cells1, x2, y2, z2 = mapped
    diff = (torch.stack([x2, y2], -1) - p2).abs()
    keep = None
    if step >= cfg["match_inlier_step"]:
        med = diff.detach().median()  # one median over both axes, as upstream
        keep = (diff.detach() < cfg["match_inlier_factor"] * med).all(-1).to(diff.dtype)
    cells2 = scene.depth.cells(fj, p2[..., 0], p2[..., 1])
    flow = _mean(diff.mean(-1), keep)
    pred = _mean((z2 - scene.depth.lookup(cells2)).abs(), keep)
    cons = _mean((z2 - scene.depth.lookup(cells2, initial=True)).abs(), keep)
    grad = _mean(_depth_grad(scene, cells1)) + _mean(_depth_grad(scene, cells2))
    total = (
        flow + cfg["w_match_depth_pred"] * pred + cfg["w_match_depth_cons"] * cons + cfg["w_match_depth_grad"] * grad
    )
    return {"match": lam * total}
