"""Hyper-parameters of the nvp method: the two presets and their validation.

``paper`` is upstream's configuration (§3 of the reference: 96 pairs x 1024 points, 22 000 steps).
``cpu`` keeps the loss weights and the model except a 48^2 (not 96^2) fine plane, samples 8 pairs x
512 points and runs 1000 steps (its time and accuracy: BENCHMARKS.md §1, §2); every step-based
schedule (learning-rate decay, curriculum, match-loss weight, match inlier rule) is scaled by
steps / 22 000 so the run goes through the same phases. Overriding ``steps`` rescales those
schedules to the new length the same way (keys given explicitly beside it are kept as given).

Two optional, non-upstream knobs for independently moving objects are off in both presets
(0 / False = upstream behaviour): ``motion_init_sep`` (motion_init.py: a depth start that puts pixels
departing from the dominant motion nearer; used only when ``fit`` gets no depth maps: the workflow's
depth stage gives the same start as ``depth.method: motion``) and ``error_sampling`` (sampling.py:
pixels drawn more often where the recent flow error is high); tests/test_model_fit.py's small-square
case needs both. A third, ``chain_match_stride`` (0 = off), adds long-term matches from chained flow
(flow/chaining.py) to the feature matches. A fourth, ``frame_shift`` (shift.py), lifts each frame's
pixels shifted by the frame's dominant motion, so a panning camera is not left to the couplings;
``frame_similarity`` moves them by a similarity instead (a rolling or zooming camera too). What
each does on the synthetic set and on TAP-Vid DAVIS, and why the presets leave them off: BENCHMARKS.md
§1 and §5.
"""

from __future__ import annotations

import copy

from omnitrack.errors import InputError

PAPER_STEPS = 22000

PAPER = {
    "preset": "paper",
    "device": "auto",  # auto (cuda if available) | cpu | cuda
    "threads": 0,  # torch CPU threads (0: torch's default); set it to the job's cores to avoid oversubscription
    "seed": 1234,
    "steps": PAPER_STEPS,
    "num_pairs": 96,  # flow pairs per step
    "num_points": 1024,  # points per flow pair
    # deformation (CaDeX++)
    "n_layers": 6,
    "feature_dim": 32,
    "plane_res": [12, 96],
    "time_dim": 16,
    "time_mult": [1, 5, 13],
    "time_frames_per_cell": 20,
    "hidden": [56, 28],
    # geometry and depth
    "fov_deg": 40.0,
    "depth_res": 0.3,
    "depth_init": 1.0,  # constant initial depth when no depth maps are given
    # depth start without depth maps (motion_init.py): pixels departing from the dominant motion start
    # at depth_init * (1 - motion_init_sep); 0 = upstream's constant start
    "motion_init_sep": 0.0,
    "motion_init_thresh": 1.0,  # px per frame of gap: flow farther than this from the homography is independent
    "motion_init_samples": 2000,  # reliable pixels per RANSAC fit
    # lift each frame's pixels shifted by its dominant motion (shift.py; not upstream, which lifts them
    # as they are): a panning camera leaves the deformation only the residual motion
    "frame_shift": False,
    # each frame's dominant motion a similarity (rotation, scale and shift about the image centre)
    # instead of frame_shift's shift (whatever frame_shift says), so a rolling or zooming camera is
    # removed too (shift.py)
    "frame_similarity": False,
    "bound_shrink": 0.8,
    "bound_floor": 0.25,
    # a tracked point is occluded where the frame's depth is nearer by more than this, in the fit's depth
    # units (the far scene at 1.0; upstream's 0.02 is metres of ZoeDepth): read at inference only. With a
    # constant depth start (depth.method none) only the order hinge separates layers, by order_margin:
    # use that value there
    "occlusion_margin": 0.1,
    # ... and (not upstream; 0 = off) where it lies nearer than frame j's depth at the projected location
    # by more than this: a point in front of the surface seen there would be that surface, so the model
    # places it where it is not (mostly points that have left the view: tracker.py). Read at inference only
    "surface_margin": 0.0,
    "min_depth": 0.01,
    # flow-pair sampling
    "partner_window": 12,
    "partner_sigma": 10.0,
    "partner_flat": 4,
    "pair_weight_angle_deg": 60.0,
    "min_valid_fraction": 0.01,
    # error-driven pixel sampling (sampling.py; not upstream, off in the paper preset)
    "error_sampling": False,
    "error_cell": 8,  # px: side of an error-map cell
    "error_floor": 1.0,  # px added to every cell's error (keeps well-fitted regions sampled)
    "error_ema": 0.5,  # moving-average rate of a cell's error
    "curriculum_start": 20,
    "curriculum_inc": 20,
    "curriculum_every": 100,
    # long-term matches
    "match_pairs": 96,
    "match_points": 64,
    "match_min": 4,
    "match_weights": [1.0, 0.1, 0.01],
    "match_weight_steps": [1000, 2000],
    "match_inlier_step": 2000,
    "match_inlier_factor": 2.0,
    # matches from chained flow (flow/chaining.py: chain_matches; not upstream): a grid of every frame,
    # `chain_match_stride` px apart, tracked by flow chaining; 0 = off (upstream: feature matches only)
    "chain_match_stride": 0,
    "chain_match_min_gap": 4,
    # loss weights
    "w_flow_grad_max": 0.1,
    "flow_grad_ramp": 500000,
    "w_depth_grad": 1.0,
    "w_depth_cons": 1.0,
    "w_depth_pred": 100.0,
    "w_depth_order": 100.0,
    "order_margin": 0.02,
    "order_max_gap": 2,
    "outside_depth_grad_scale": 0.1,
    "w_match_depth_pred": 100.0,
    "w_match_depth_cons": 10.0,
    "w_match_depth_grad": 100.0,
    # optimiser
    "lr_deform": 3e-3,
    "lr_depth": 5e-3,
    "lr_decay_steps": 5000,
    "lr_decay_factor": 0.33,
    "grad_clip_depth": 10.0,
    # run
    "checkpoint_every": 1000,
    "log_every": 10,
    "progress": True,
    "tensorboard": True,
    "track_batch": 262144,  # (query, frame) evaluations per inference chunk
}

# keys only inference reads: the track_nvp stage takes them from the config, not from the fitted model
INFERENCE_KEYS = {"occlusion_margin", "surface_margin", "track_batch"}
# keys that do not change the optimisation result (a checkpoint with other values still resumes)
RUN_KEYS = {"device", "threads", "checkpoint_every", "log_every", "progress", "tensorboard", *INFERENCE_KEYS}

CPU_STEPS = 1000
SCHEDULE_KEYS = ["lr_decay_steps", "curriculum_every", "match_inlier_step", "checkpoint_every"]


def _scaled(cfg: dict, steps: int) -> dict:
    cfg = copy.deepcopy(cfg)
    f = steps / PAPER_STEPS
    cfg["steps"] = steps
    for k in SCHEDULE_KEYS:
        cfg[k] = max(1, round(cfg[k] * f))
    cfg["match_weight_steps"] = [max(1, round(s * f)) for s in cfg["match_weight_steps"]]
    return cfg


def default_config(preset: str = "cpu") -> dict:
    """The full dict of hyper-parameters of a preset ("cpu" or "paper")."""
    if preset == "paper":
        return copy.deepcopy(PAPER)
    if preset == "cpu":
        cfg = _scaled(PAPER, CPU_STEPS)
        cfg.update(preset="cpu", num_pairs=8, num_points=512, match_pairs=8, match_points=32, plane_res=[12, 48])
        return cfg
    raise InputError("config", f"unknown preset {preset!r}", "use 'cpu' or 'paper'")


def resolve(config: dict | None) -> dict:
    """Merge ``config`` over its preset's defaults (preset 'cpu' unless it names one); reject unknown keys."""
    config = dict(config or {})
    cfg = default_config(config.get("preset", "cpu"))
    unknown = sorted(set(config) - set(cfg))
    if unknown:
        raise InputError("config nvp", f"unknown keys {unknown}", f"known keys: {sorted(cfg)}")
    if "steps" in config:  # rescale the preset's step schedules to the new length (explicit keys still win)
        baseline = {**cfg, **{k: PAPER[k] for k in [*SCHEDULE_KEYS, "match_weight_steps"]}}
        cfg = _scaled(baseline, int(config["steps"]))
    cfg.update(copy.deepcopy(config))
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise InputError("config", f"device {cfg['device']!r} is not one of auto, cpu, cuda")
    for k in ("steps", "num_pairs", "num_points", "n_layers"):
        if int(cfg[k]) < 1:
            raise InputError("config", f"{k} must be >= 1, got {cfg[k]}")
    return cfg


def training_keys(cfg: dict) -> dict:
    """The part of a config that determines the optimisation (compared when resuming)."""
    return {k: v for k, v in cfg.items() if k not in RUN_KEYS}


def same_training(stored: dict, cfg: dict) -> bool:
    """True when a checkpoint written with config ``stored`` was trained as ``cfg`` would train.

    Keys added to the presets after the checkpoint was written count as their preset default (an
    option added later, left at its default, does not invalidate earlier fits).
    """
    defaults = default_config(stored.get("preset", "cpu"))
    full = {**{k: v for k, v in defaults.items() if k not in stored}, **stored}
    return training_keys(full) == training_keys(cfg)


def device_of(cfg: dict):
    import torch

    if cfg["device"] == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise InputError("config", "device 'cuda' was requested but CUDA is not available", "use device: auto or cpu")
    return torch.device(cfg["device"])
