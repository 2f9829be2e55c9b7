"""The per-video optimisation: sampling, losses, Adam, checkpoints, resume, SIGTERM, NaN guard.

Checkpoints: the final model goes to ``checkpoint_path``; while fitting, a training checkpoint
(scene, optimiser, scheduler, step, RNG states) is written every ``checkpoint_every`` steps and on
SIGTERM to ``checkpoint_path + ".partial"`` (a sibling, so a workflow manager deleting the outputs of
a failed job keeps it). A rerun resumes from it and reaches the same parameters, bit for bit on CPU,
as an uninterrupted run. Both are tied to the video (inputs.identity): another video's checkpoint is
an InputError.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from omnitrack.errors import OmnitrackError
from omnitrack.interp import resize_area
from omnitrack.model.checkpoint import check_identity, partial_path, read_checkpoint, write_checkpoint
from omnitrack.model.config import device_of, resolve, same_training
from omnitrack.model.depth import map_size
from omnitrack.model.inputs import identity, load_depth, load_masks, load_matches, load_video
from omnitrack.model.losses import flow_losses, map_batches, match_losses, match_weight
from omnitrack.model.motion_init import motion_depth
from omnitrack.model.sampling import FlowSampler, MatchSampler
from omnitrack.model.scene import Scene
from omnitrack.model.shift import frame_shift, frame_similarity
from omnitrack.model.tracker import Tracker

SIGTERM_EXIT = 128 + signal.SIGTERM
log = logging.getLogger("omnitrack")


class TrainingError(OmnitrackError):
    """The optimisation diverged (a non-finite loss term or parameter)."""


class _StopFlag(contextlib.AbstractContextManager):
    """Installs a SIGTERM handler (main thread only) that only sets ``self.set``."""

    def __init__(self):
        self.set = False
        self._previous = None

    def _handler(self, signum, frame):
        self.set = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


def _tensorboard(path):
    if path is None:
        return contextlib.nullcontext(None)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return contextlib.nullcontext(None)
    return contextlib.closing(SummaryWriter(str(path)))


def _to_torch(batch, device) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in vars(batch).items()}


class Trainer:
    """Holds the state of one fit; :meth:`run` performs the steps from ``self.step`` to the end."""

    def __init__(self, scene: Scene, flows: FlowSampler, matches: MatchSampler | None, cfg: dict):
        self.scene, self.flows, self.matches, self.cfg = scene, flows, matches, cfg
        self.device = scene.centre.device
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(scene.deformer.parameters()), "lr": cfg["lr_deform"]},
                {"params": [scene.depth.maps], "lr": cfg["lr_depth"]},
            ],
            fused=True,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, cfg["lr_decay_steps"], cfg["lr_decay_factor"])
        self.rng = np.random.default_rng(cfg["seed"])
        self.step = 0
        self.history: list[dict] = []  # {"step", "total", <term>...} every log_every steps

    def state(self, ident: dict) -> dict:
        return {
            "identity": ident,
            "config": self.cfg,
            "shape": [self.scene.num_frames, self.scene.height, self.scene.width],
            "scene": self.scene.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "complete": False,
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
            "error_map": self.flows.error,
        }

    def restore(self, ck: dict) -> None:
        self.scene.load_state_dict({"shift": self.scene.shift, **ck["scene"]})  # (no shift before frame_shift)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.rng.bit_generator.state = ck["numpy_rng"]
        torch.set_rng_state(ck["torch_rng"])
        self.step = int(ck["step"])
        self.history = list(ck["history"])
        if self.flows.error is not None:
            self.flows.error[...] = ck["error_map"]

    def losses(self, step: int) -> dict[str, torch.Tensor]:
        batch = self.flows.sample(step, self.rng)
        batches = [_to_torch(batch, self.device)]
        if self.matches is not None:
            match = _to_torch(self.matches.sample(self.rng), self.device)
            if match_weight(step, self.cfg) > 0:
                batches.append(match)
        mapped = map_batches(self.scene, self.scene.deformer.prepare(), batches)
        terms = flow_losses(self.scene, batches[0], mapped[0], step, self.cfg)
        if self.flows.error is not None:
            self.flows.update(batch.fi, batch.p1, batches[0]["point_error"].cpu().numpy())
        if len(batches) > 1:
            terms.update(match_losses(self.scene, batches[1], mapped[1], step, self.cfg))
        return terms

    def one_step(self) -> dict[str, float]:
        """One optimisation step; raises TrainingError on a non-finite loss term (parameters untouched)."""
        terms = self.losses(self.step)
        total = sum(terms.values())
        values = {k: float(v.detach()) for k, v in terms.items()}
        if not math.isfinite(float(total.detach())):
            bad = next((k for k, v in values.items() if not math.isfinite(v)), "total")
            raise TrainingError(
                f"step {self.step}: loss term '{bad}' is {values.get(bad, float(total.detach()))} (terms: {values})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_([self.scene.depth.maps], self.cfg["grad_clip_depth"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        values["total"] = float(total.detach())
        return values

    def finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.scene.parameters())


def _initial_depth(frames: np.ndarray, cfg: dict, masks_dir, depth) -> np.ndarray:
    """The depth maps the fit starts from [T, dh, dw]: ``depth`` area-averaged per cell, or without it the
    motion start (motion_init.py; constant when ``motion_init_sep`` is 0)."""
    t, h, w = frames.shape[:3]
    dh, dw = map_size(h, w, cfg["depth_res"])
    depth_maps = load_depth(depth, t, h, w)
    if depth_maps is None:
        store, mask, _ = load_masks(masks_dir, t, h, w)
        return motion_depth(store, mask, dh, dw, cfg)
    return resize_area(depth_maps, dh, dw)


def _same_start(ck: dict, init: np.ndarray) -> bool:
    """Was checkpoint ``ck`` fitted from the initial depth ``init``?"""
    stored = ck["scene"].get("depth.initial")
    return stored is not None and tuple(stored.shape) == init.shape and np.array_equal(stored.cpu().numpy(), init)


def _build(
    frames: np.ndarray, cfg: dict, masks_dir, matches_path, init: np.ndarray, resume: dict | None = None
) -> Trainer:
    """The trainer at step 0 from the initial depth ``init`` [T, dh, dw], or at the step of ``resume``
    (a training checkpoint of this video, config and initial depth)."""
    t, h, w = frames.shape[:3]
    store, mask, counts = load_masks(masks_dir, t, h, w)
    matches = load_matches(matches_path, t)
    if cfg["chain_match_stride"] > 0:
        matches = _with_chain_matches(matches, store, mask, cfg)
    torch.manual_seed(cfg["seed"])
    shift = linear = None
    if cfg["frame_similarity"]:
        shift, linear = (torch.from_numpy(a) for a in frame_similarity(store, mask))
    elif cfg["frame_shift"]:
        shift = torch.from_numpy(frame_shift(store, mask))
    scene = Scene(t, h, w, torch.from_numpy(init), cfg, shift, linear).to(device_of(cfg))
    flows = FlowSampler(store, mask, counts, cfg)
    match_sampler = None
    if matches is not None:
        match_sampler = MatchSampler(*matches, t, cfg)
        if len(match_sampler) == 0:
            log.warning(
                "%s: no frame pair has %s matches; fitting without the long-term match loss",
                matches_path,
                cfg["match_min"],
            )
            match_sampler = None
    trainer = Trainer(scene, flows, match_sampler, cfg)
    if resume is not None:
        trainer.restore(resume)
    return trainer


def _with_chain_matches(matches, store, mask, cfg: dict):
    """Append the chained-flow matches (flow/chaining.py) to the long-term matches (None: only those)."""
    from omnitrack.flow.chaining import chain_matches

    frames, points = chain_matches(store, mask, int(cfg["chain_match_stride"]), int(cfg["chain_match_min_gap"]))
    log.info(
        "chained-flow matches: %d (grid %s px, gaps >= %s)",
        len(frames),
        cfg["chain_match_stride"],
        cfg["chain_match_min_gap"],
    )
    if matches is None:
        return frames, points
    return np.concatenate([matches[0], frames]), np.concatenate([matches[1], points])


def fit(
    frames_or_path,
    config: dict | None = None,
    masks_dir=None,
    matches_path=None,
    depth=None,
    checkpoint_path=None,
    tensorboard_dir=None,
) -> Tracker:
    """Fit the nvp model to one video and return its :class:`Tracker`.

    frames_or_path: uint8 [T, H, W, 3] or a frames npz; masks_dir: the masks stage's directory;
    matches_path: matches npz or None; depth: float [T, H, W] (array, .npy or .npz 'depth') or None
    (constant start); checkpoint_path: where the final model is written (an existing up-to-date one
    is returned without refitting; an interrupted fit resumes from ``<checkpoint_path>.partial``).
    What the fit reports (reuse, resume, fallbacks) goes to the ``omnitrack`` logger.
    """
    cfg = resolve(config)
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    frames, _ = load_video(frames_or_path)
    ident = identity(frames)
    if masks_dir is None:
        load_masks(None, *frames.shape[:3])  # the InputError saying the fit needs the masked flows
    init = _initial_depth(frames, cfg, masks_dir, depth)
    final = Path(checkpoint_path) if checkpoint_path is not None else None
    if final is not None and final.exists():
        ck = read_checkpoint(final)
        check_identity(final, ck, frames)
        if ck.get("complete") and same_training(ck["config"], cfg) and _same_start(ck, init):
            log.info("%s: already fitted with this configuration; not refitting", final)
            return Tracker.from_state({**ck, "config": cfg})
        log.info("%s: fitted with another configuration or initial depth; refitting", final)

    partial = partial_path(final) if final is not None else None
    resume = None
    if partial is not None and partial.exists():
        ck = read_checkpoint(partial)
        check_identity(partial, ck, frames)
        if same_training(ck["config"], cfg) and _same_start(ck, init):
            resume = ck
            log.info("%s: resuming at step %s", partial, ck["step"])
        else:
            log.warning("%s was written with another configuration or initial depth; starting again", partial)
    trainer = _build(frames, cfg, masks_dir, matches_path, init, resume)
    _run(trainer, cfg, ident, partial, tensorboard_dir)
    tracker = Tracker(trainer.scene, cfg, ident, trainer.history)
    if final is not None:
        tracker.save(final)
        if partial.exists():
            partial.unlink()
    return tracker


def _run(trainer: Trainer, cfg: dict, ident: dict, partial: Path | None, tensorboard_dir) -> None:
    from tqdm import tqdm

    steps = int(cfg["steps"])
    last_saved = trainer.step if partial is not None and partial.exists() else None

    def save() -> None:
        nonlocal last_saved
        if partial is None:
            return
        if not trainer.finite():
            raise TrainingError(
                f"step {trainer.step}: parameters became NaN or inf (a non-finite gradient); "
                f"last good checkpoint: {partial} (step {last_saved})"
            )
        write_checkpoint(partial, trainer.state(ident))
        last_saved = trainer.step

    bar = tqdm(
        total=steps,
        initial=trainer.step,
        file=sys.stderr,
        disable=not cfg["progress"],
        dynamic_ncols=True,
        mininterval=1.0,
        desc="nvp fit",
    )
    with _StopFlag() as stop, bar, _tensorboard(tensorboard_dir if cfg["tensorboard"] else None) as tb:
        while trainer.step < steps:
            try:
                values = trainer.one_step()
            except TrainingError as e:
                where = f"{partial} (step {last_saved})" if last_saved is not None else "none was written"
                raise TrainingError(f"{e}; last good checkpoint: {where}") from None
            bar.update(1)
            if trainer.step % cfg["log_every"] == 0 or trainer.step == steps:
                bar.set_postfix(loss=f"{values['total']:.4g}", refresh=False)
                trainer.history.append({"step": trainer.step, **values})
                if tb is not None:
                    for k, v in values.items():
                        tb.add_scalar(f"loss/{k}", v, trainer.step)
            if trainer.step < steps and (trainer.step % cfg["checkpoint_every"] == 0 or stop.set):
                save()
            if stop.set:
                where = f"checkpoint saved to {partial}" if partial is not None else "no checkpoint path, progress lost"
                log.warning(
                    "SIGTERM received: stopped after step %d/%d; %s; rerun to resume", trainer.step, steps, where
                )
                raise SystemExit(SIGTERM_EXIT)
