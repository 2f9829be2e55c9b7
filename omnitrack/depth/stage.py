"""The depth stage's methods: one video's frames (+ masks) -> the depth the nvp fit starts from.

``cfg`` is the config's ``depth`` section (schemas/config.schema.yaml, README "Depth"):

- ``layers`` (default, weight-free): :func:`omnitrack.depth.layers.layered_depth` on the masks stage's
  flows, settings ``cfg["layers"]``;
- ``depth_anything_v2``: the model of ``cfg["weights"]`` / ``encoder`` at ``input_size``, converted
  with :func:`omnitrack.depth.convert.fit_depth` (one scale for the video, ``max_ratio``);
- ``motion``: the fit's former motion start (omnitrack/model/motion_init.py) as a file:
  ``1 - sep x independence`` per pixel (``cfg["motion"]``: sep, thresh, samples);
- ``none``: constant 1.0 (upstream's start without a depth model).

All in the fit's units: the far scene at 1.0 (``FAR``, the fit's ``depth_init``), nearer = smaller.
"""

from __future__ import annotations

import numpy as np

FAR = 1.0
METHODS = ("layers", "depth_anything_v2", "motion", "none")
NEEDS_MASKS = ("layers", "motion")
DEFAULTS = {
    "method": "layers",
    "seed": 1234,
    "weights": None,
    "encoder": "vits",
    "input_size": 252,
    "batch_size": 4,
    "max_ratio": 2.0,
    "layers": {},
    "motion": {"sep": 0.3, "thresh": 1.0, "samples": 2000},
}


def settings(cfg: dict | None) -> dict:
    """``cfg`` over :data:`DEFAULTS` (nested sections merged)."""
    from omnitrack.depth.layers import DEFAULTS as LAYERS

    cfg = dict(cfg or {})
    out = {**DEFAULTS, **cfg}
    out["layers"] = {**LAYERS, **(cfg.get("layers") or {})}
    out["motion"] = {**DEFAULTS["motion"], **(cfg.get("motion") or {})}
    if out["method"] not in METHODS:
        from omnitrack.errors import InputError

        raise InputError("config", f"depth.method {out['method']!r} is unknown", f"use one of {', '.join(METHODS)}")
    return out


def used_settings(cfg: dict) -> dict:
    """The settings that determine a method's output (recorded in the depth file's ``meta``)."""
    method = cfg["method"]
    if method == "layers":
        return {"layers": cfg["layers"], "seed": cfg["seed"]}
    if method == "motion":
        return {"motion": cfg["motion"], "seed": cfg["seed"]}
    if method == "depth_anything_v2":
        return {k: cfg[k] for k in ("weights", "encoder", "input_size", "max_ratio")}
    return {}


def compute_depth(
    frames: np.ndarray, cfg: dict, masks=None, device: str = "cpu", progress: bool = True, model=None
) -> np.ndarray:
    """float32 [T, H, W] depth of ``frames`` uint8 [T, H, W, 3] by ``cfg["method"]``.

    masks: (FlowStore, mask [P, H, W]) of the masks stage, for ``layers`` and ``motion``;
    model: an already loaded Depth Anything V2 (else loaded from ``cfg["weights"]``).
    """
    cfg = settings(cfg)
    method = cfg["method"]
    t, h, w = frames.shape[:3]
    if method == "none":
        return np.full((t, h, w), FAR, np.float32)
    if method == "depth_anything_v2":
        from omnitrack.depth.anything import infer_video, load_depth_anything
        from omnitrack.depth.convert import fit_depth

        if model is None:
            model = load_depth_anything(cfg["weights"], cfg["encoder"], device)
        inv = infer_video(model, frames, int(cfg["input_size"]), device, int(cfg["batch_size"]), progress)
        return fit_depth(inv, depth_far=FAR, max_ratio=float(cfg["max_ratio"]))
    if masks is None:
        raise ValueError(f"depth method {method!r} needs the masks stage's flows and masks")
    store, mask = masks
    if method == "layers":
        from omnitrack.depth.layers import layered_depth

        return layered_depth(store, mask, cfg["layers"], seed=int(cfg["seed"]), far=FAR)
    from omnitrack.model.motion_init import motion_depth

    m = cfg["motion"]
    return motion_depth(
        store,
        mask,
        h,
        w,
        {
            "depth_init": FAR,
            "motion_init_sep": m["sep"],
            "motion_init_thresh": m["thresh"],
            "motion_init_samples": m["samples"],
            "seed": cfg["seed"],
        },
    )
