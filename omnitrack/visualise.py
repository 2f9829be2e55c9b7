"""Track videos: each track a coloured point with a short fading trail, drawn over the frames.

A track's colour encodes where its point was in its query frame (hue: angle around the image
centre, saturation: distance from it), so neighbouring points share a hue and a drifting track
stands out. Visible points are filled discs with a dark rim; occluded points are rings ("hollow")
or not drawn ("hidden"). With ground truth, the video shows ground truth | prediction side by side,
in the same colours.

Coordinates follow docs/formats.md: tracks (x, y) in working-resolution pixels, origin at the top-left
corner of the top-left pixel; query points (t, y, x). Frames are upscaled by an integer factor before
drawing so that small benchmark videos stay legible. Outputs: an H.264 mp4, a small animated
preview (webp, gif or APNG: every k-th frame, downscaled), single PNG frames, and a self-contained HTML
viewer of both (the Snakemake report shows HTML inline, but offers webp, gif and mp4 only as downloads).
Everything is written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from omnitrack.errors import InputError
from omnitrack.io import atomic_path

log = logging.getLogger("omnitrack")

OCCLUDED_STYLES = ("hollow", "hidden")
PREVIEW_FORMATS = (".webp", ".gif", ".png")  # animated: webp is the smallest, png is APNG
_MIME = {".webp": "image/webp", ".gif": "image/gif", ".png": "image/png", ".mp4": "video/mp4"}
_SHIFT = 4  # cv2 sub-pixel bits: coordinates are drawn to 1/16 px
_LABEL_HEIGHT = 18
MUTE = 0.6  # background desaturation


def track_colours(query_points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Colour of each track from its query position: query_points [N,3] (t,y,x) -> uint8 RGB [N,3]."""
    import cv2

    q = np.asarray(query_points, np.float64).reshape(-1, 3)
    if not len(q):
        return np.zeros((0, 3), np.uint8)
    dx = q[:, 2] / width - 0.5
    dy = q[:, 1] / height - 0.5
    hue = (np.degrees(np.arctan2(dy, dx)) % 360) / 2  # OpenCV hue: 0..180
    sat = 90 + 165 * np.clip(np.hypot(dx, dy) / np.sqrt(0.5), 0, 1)
    hsv = np.stack([hue, sat, np.full_like(hue, 255)], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def upscale_factor(width: int, height: int, min_side: int = 320) -> int:
    """Integer factor that brings the shorter side of a frame to at least ``min_side`` pixels."""
    return max(1, int(np.ceil(min_side / max(1, min(width, height)))))


def _check(frames, tracks, occluded, query_points, occluded_style, trail, name="prediction"):
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    t = frames.shape[0]
    n = len(query_points)
    if tracks.shape != (n, t, 2) or occluded.shape != (n, t):
        raise ValueError(
            f"{name}: tracks {tracks.shape} / occluded {occluded.shape} do not match "
            f"{n} query points and {t} frames (expected [{n},{t},2] and [{n},{t}])"
        )
    if occluded_style not in OCCLUDED_STYLES:
        raise ValueError(f"occluded_style must be one of {OCCLUDED_STYLES}, got {occluded_style!r}")
    if trail < 0:
        raise ValueError(f"trail must be >= 0, got {trail}")


def _mute(frame: np.ndarray) -> np.ndarray:
    """Half-desaturate a frame (uint8 [H,W,3]) so that the track colours stand out."""
    grey = frame.mean(axis=-1, keepdims=True)
    return (MUTE * grey + (1 - MUTE) * frame).astype(np.uint8)


def _to_canvas(xy: np.ndarray, scale: int) -> np.ndarray:
    """Track points (x, y) -> cv2 fixed-point pixel-index coordinates on a canvas upscaled by ``scale``."""
    return np.round((xy * scale - 0.5) * (1 << _SHIFT)).astype(np.int64)


def draw_panel(
    frame: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    colours: np.ndarray,
    t: int,
    scale: int,
    trail: int = 6,
    occluded_style: str = "hollow",
) -> np.ndarray:
    """Draw frame ``t`` of the tracks over ``frame`` (uint8 [H,W,3]) upscaled by ``scale``.

    tracks [N,T,2] (x,y) px, occluded bool [N,T], colours uint8 [N,3]. -> uint8 [H·scale, W·scale, 3].
    The trail joins the last ``trail`` positions where the point was visible, fading with age; a point
    hidden because it is occluded (``occluded_style="hidden"``) has no trail either.
    """
    import cv2

    h, w = frame.shape[:2]
    canvas = cv2.resize(_mute(frame), (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    finite = np.isfinite(tracks).all(-1)
    pts = _to_canvas(np.where(finite[..., None], tracks, 0), scale)
    shown = ~occluded & finite
    thick = max(1, scale // 2)
    radius = max(2, int(round(1.6 * scale))) << _SHIFT
    for age in range(min(trail, t), 0, -1):
        a, b = t - age, t - age + 1
        moved = (pts[:, a] != pts[:, b]).any(-1)
        keep = np.flatnonzero(shown[:, a] & shown[:, b] & moved & (shown[:, t] | (occluded_style == "hollow")))
        if not len(keep):
            continue
        layer = canvas.copy()
        for i in keep:
            cv2.line(layer, tuple(pts[i, a]), tuple(pts[i, b]), colours[i].tolist(), thick, cv2.LINE_AA, _SHIFT)
        alpha = 0.85 * (trail + 1 - age) / (trail + 1)
        canvas = cv2.addWeighted(layer, alpha, canvas, 1 - alpha, 0)
    for i in range(len(tracks)):
        if not finite[i, t]:
            continue
        centre, colour = tuple(pts[i, t]), colours[i].tolist()
        if shown[i, t]:
            cv2.circle(canvas, centre, radius + (1 << _SHIFT), (0, 0, 0), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(canvas, centre, radius, colour, -1, cv2.LINE_AA, _SHIFT)
        elif occluded_style == "hollow":
            cv2.circle(canvas, centre, radius + (1 << _SHIFT), colour, max(2, scale // 2 + 1), cv2.LINE_AA, _SHIFT)
    return canvas


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.full((_LABEL_HEIGHT, panel.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, text, (6, _LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], axis=0)


def compose_frame(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    colours: np.ndarray,
    t: int,
    scale: int,
    trail: int,
    occluded_style: str,
    gt: tuple[np.ndarray, np.ndarray] | None,
    label: str = "prediction",
) -> np.ndarray:
    """One output frame: the prediction panel, or ground truth | prediction side by side (labelled)."""
    pred = draw_panel(frames[t], tracks, occluded, colours, t, scale, trail, occluded_style)
    if gt is None:
        return pred
    truth = _label(draw_panel(frames[t], gt[0], gt[1], colours, t, scale, trail, occluded_style), "ground truth")
    gap = np.full((truth.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([truth, gap, _label(pred, label)], axis=1)


def render_frames(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    query_points: np.ndarray,
    trail: int = 6,
    occluded_style: str = "hollow",
    gt: tuple[np.ndarray, np.ndarray] | None = None,
    min_side: int = 320,
    label: str = "prediction",
):
    """Yield the drawn frames (uint8 [H',W',3], even sizes) of :func:`render_tracks`, one per video frame."""
    frames = np.asarray(frames)
    tracks, occluded = np.asarray(tracks, np.float32), np.asarray(occluded, bool)
    _check(frames, tracks, occluded, query_points, occluded_style, trail)
    if gt is not None:
        gt = (np.asarray(gt[0], np.float32), np.asarray(gt[1], bool))
        _check(frames, gt[0], gt[1], query_points, occluded_style, trail, name="ground truth")
    h, w = frames.shape[1:3]
    scale = upscale_factor(w, h, min_side)
    colours = track_colours(query_points, w, h)
    for t in range(len(frames)):
        out = compose_frame(frames, tracks, occluded, colours, t, scale, trail, occluded_style, gt, label)
        yield np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)))


def write_mp4(path: str | Path, frames, fps: float = 10.0) -> int:
    """Encode an iterable of uint8 [H,W,3] frames (even sizes) as H.264 (yuv420p, faststart). -> frame count."""
    import imageio_ffmpeg

    count = 0
    with atomic_path(path) as tmp:
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp),
                        (frame.shape[1], frame.shape[0]),
                        fps=fps,
                        codec="libx264",
                        quality=5,
                        macro_block_size=2,
                        output_params=["-movflags", "+faststart", "-f", "mp4"],
                    )
                    writer.send(None)
                writer.send(np.ascontiguousarray(frame))
                count += 1
        finally:
            if writer is not None:
                writer.close()
        if count == 0:
            raise ValueError(f"{path}: no frames to write")
    return count


def _shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale uint8 [H,W,3] so that its longer side is at most ``max_side`` (area averaging)."""
    import cv2

    h, w = frame.shape[:2]
    f = max_side / max(h, w)
    if f >= 1:
        return frame
    return cv2.resize(frame, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


def write_preview(
    path: str | Path, frames: list[np.ndarray], every: int = 2, max_side: int = 320, fps: float = 10.0
) -> int:
    """Animated png (APNG), gif or webp (by ``path``'s suffix) of every ``every``-th frame, longer side
    <= ``max_side``. Loops forever.

    -> number of frames written.
    """
    import imageio.v3 as iio

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in PREVIEW_FORMATS:
        raise InputError(path, f"a preview must be one of {', '.join(PREVIEW_FORMATS)}, not '{path.suffix}'")
    small = np.stack([_shrink(f, max_side) for f in frames[:: max(1, every)]])
    duration = int(round(1000 * max(1, every) / fps))
    extra = {".webp": {"quality": 80}, ".png": {"optimize": True}}.get(ext, {})
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, small, extension=ext, duration=duration, loop=0, **extra)
    return len(small)


def render_tracks(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    query_points: np.ndarray,
    out_mp4: str | Path,
    preview_path: str | Path | None = None,
    trail: int = 6,
    occluded_style: str = "hollow",
    gt: tuple[np.ndarray, np.ndarray] | None = None,
    fps: float = 10.0,
    preview_every: int = 2,
    preview_max_side: int = 320,
    min_side: int = 320,
    label: str = "prediction",
) -> dict:
    """Write the track video ``out_mp4`` and (optionally) its animated preview.

    frames uint8 [T,H,W,3]; tracks float [N,T,2] (x,y) px; occluded bool [N,T]; query_points [N,3] (t,y,x);
    gt: optional (tracks [N,T,2], occluded [N,T]) of the same queries -> ground truth | prediction.
    -> {"frames": T, "width", "height" (of the mp4), "preview_frames"}.
    """
    every = max(1, preview_every)
    kept: list[np.ndarray] = []  # preview frames, already downscaled
    size: list[int] = []

    def frames_and_keep():
        for t, drawn in enumerate(
            render_frames(frames, tracks, occluded, query_points, trail, occluded_style, gt, min_side, label)
        ):
            size[:] = drawn.shape[1], drawn.shape[0]
            if preview_path is not None and t % every == 0:
                kept.append(_shrink(drawn, preview_max_side))
            yield drawn

    count = write_mp4(out_mp4, frames_and_keep(), fps)
    info = {"frames": count, "width": size[0], "height": size[1], "preview_frames": 0}
    if preview_path is not None:
        info["preview_frames"] = write_preview(preview_path, kept, 1, preview_max_side, fps / every)
    return info


def preview_png(
    frames: np.ndarray,
    tracks: np.ndarray,
    occluded: np.ndarray,
    query_points: np.ndarray,
    out_png: str | Path,
    frame_index: int,
    trail: int = 6,
    occluded_style: str = "hollow",
    gt: tuple[np.ndarray, np.ndarray] | None = None,
    min_side: int = 320,
    label: str = "prediction",
) -> tuple[int, int]:
    """Write frame ``frame_index`` of the track video as a PNG. -> (width, height)."""
    import cv2

    if not -len(frames) <= frame_index < len(frames):
        raise ValueError(f"frame_index {frame_index} is outside the video's {len(frames)} frames")
    frame_index %= len(frames)
    # Only the frames the trail reaches back to are drawn.
    first = max(0, frame_index - trail)
    sl = slice(first, frame_index + 1)
    q = np.asarray(query_points)
    sub_gt = None if gt is None else (np.asarray(gt[0])[:, sl], np.asarray(gt[1])[:, sl])
    drawn = list(
        render_frames(
            np.asarray(frames)[sl],
            np.asarray(tracks)[:, sl],
            np.asarray(occluded)[:, sl],
            q,
            trail,
            occluded_style,
            sub_gt,
            min_side,
            label,
        )
    )[-1]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"could not encode {out_png} as PNG")
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buf.tobytes())
    return drawn.shape[1], drawn.shape[0]


def visualise_prediction(
    frames_path: str | Path,
    prediction_path: str | Path,
    out_mp4: str | Path,
    preview_path: str | Path,
    cfg: dict,
    source_path: str | Path | None = None,
    mode: str | None = None,
    label: str = "prediction",
    viewer_path: str | Path | None = None,
    depth_preview: str | Path | None = None,
) -> dict:
    """Track video of one prediction file (docs/formats.md) over its frames file, its preview and (with
    ``viewer_path``) the HTML viewer of both.

    With ``source_path`` (a benchmark video's ``source/<video>.npz``) and its query ``mode``, the ground
    truth of the same queries is drawn beside the prediction. cfg: the ``visualise`` config
    (trail, occluded, fps, preview_every, preview_max_side, min_side). -> :func:`render_tracks`' info.
    """
    from omnitrack.data.frames import load_frames
    from omnitrack.prediction import load_prediction
    from omnitrack.queries import prediction_truth

    frames, meta = load_frames(frames_path)
    pred = load_prediction(prediction_path)
    width, height = (int(v) for v in pred["size"])
    if (width, height) != (meta["width"], meta["height"]) or pred["tracks"].shape[1] != meta["num_frames"]:
        raise InputError(
            prediction_path,
            f"is for {pred['tracks'].shape[1]} frames of {width}x{height}, but "
            f"{frames_path} has {meta['num_frames']} of {meta['width']}x{meta['height']}",
            hint="rerun its track rule",
        )
    gt = None
    if source_path is not None:
        _, gt_tracks, gt_occluded = prediction_truth(pred, prediction_path, source_path, mode)
        gt = (gt_tracks, gt_occluded)
    info = render_tracks(
        frames,
        pred["tracks"],
        pred["occluded"],
        pred["query_points"],
        out_mp4,
        preview_path,
        trail=cfg.get("trail", 6),
        occluded_style=cfg.get("occluded", "hollow"),
        gt=gt,
        fps=cfg.get("fps") or meta.get("fps") or 10.0,
        preview_every=cfg.get("preview_every", 2),
        preview_max_side=cfg.get("preview_max_side", 480),
        min_side=cfg.get("min_side", 320),
        label=label,
    )
    log.info(
        "%s: %d tracks, %d frames -> %s (%dx%d), preview %d frames",
        prediction_path,
        len(pred["tracks"]),
        info["frames"],
        out_mp4,
        info["width"],
        info["height"],
        info["preview_frames"],
    )
    if viewer_path is not None:
        shown = "ground truth | prediction" if gt is not None else "prediction"
        viewer_html(
            viewer_path,
            preview_path,
            out_mp4,
            f"{meta['video']}: {label}",
            f"{shown}; {len(pred['query_points'])} tracks, {info['frames']} frames"
            + (f", query mode {mode}" if mode else "")
            + "; occluded points: "
            + cfg.get("occluded", "hollow"),
            depth_preview=depth_preview,
        )
    return info


def depth_colours(depth: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Depth float [..., H, W] -> uint8 RGB [..., H, W, 3] with the turbo colour map: nearest (``lo``,
    default the minimum) red, farthest (``hi``, default the maximum) blue; a constant map is blue."""
    import cv2

    depth = np.asarray(depth, np.float32)
    lo = float(depth.min()) if lo is None else lo
    hi = float(depth.max()) if hi is None else hi
    near = np.zeros(depth.shape, np.float32) if hi - lo <= 1e-9 else np.clip((hi - depth) / (hi - lo), 0, 1)
    grey = np.rint(near * 255).astype(np.uint8)
    flat = cv2.applyColorMap(grey.reshape(-1, 1), cv2.COLORMAP_TURBO)[:, 0, ::-1]  # BGR -> RGB
    return np.ascontiguousarray(flat.reshape(*depth.shape, 3))


def render_depth_frames(frames: np.ndarray, depth: np.ndarray, min_side: int = 320, label: str = "depth"):
    """Yield frame | depth (turbo colours, one range for the whole video, labelled with it) per frame."""
    import cv2

    frames, depth = np.asarray(frames), np.asarray(depth, np.float32)
    if depth.shape != frames.shape[:3]:
        raise ValueError(f"depth {depth.shape} does not match the frames {frames.shape[:3]}")
    h, w = frames.shape[1:3]
    scale = upscale_factor(w, h, min_side)
    lo, hi = float(depth.min()), float(depth.max())
    for t in range(len(frames)):
        big = (w * scale, h * scale)
        left = _label(cv2.resize(frames[t], big, interpolation=cv2.INTER_NEAREST), f"frame {t}")
        right = _label(
            cv2.resize(depth_colours(depth[t], lo, hi), big, interpolation=cv2.INTER_NEAREST),
            f"{label}: red {lo:.2f} (near) .. blue {hi:.2f}",
        )
        gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
        out = np.concatenate([left, gap, right], axis=1)
        yield np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)))


def visualise_depth(
    frames_path: str | Path, depth_path: str | Path, out_mp4: str | Path, preview_path: str | Path, cfg: dict
) -> dict:
    """The depth video of one video (frame | depth in turbo colours) and its animated preview.

    cfg: the ``visualise`` config (fps, preview_every, preview_max_side, min_side). -> {"frames", "width", "height"}.
    """
    from omnitrack.data.frames import check_frames_match, load_frames
    from omnitrack.depth.file import load_depth_file

    frames, meta = load_frames(frames_path)
    depth, info = load_depth_file(depth_path)
    check_frames_match(depth_path, "depth maps", depth.shape, meta, frames_path)
    every = max(1, cfg.get("preview_every", 2))
    kept: list[np.ndarray] = []
    size: list[int] = []
    max_side = cfg.get("preview_max_side", 480)

    def frames_and_keep():
        for t, drawn in enumerate(
            render_depth_frames(frames, depth, cfg.get("min_side", 320), f"depth ({info.get('method', '?')})")
        ):
            size[:] = drawn.shape[1], drawn.shape[0]
            if t % every == 0:
                kept.append(_shrink(drawn, max_side))
            yield drawn

    fps = cfg.get("fps") or meta.get("fps") or 10.0
    count = write_mp4(out_mp4, frames_and_keep(), fps)
    write_preview(preview_path, kept, 1, max_side, fps / every)
    log.info(
        "%s: depth by %s -> %s (%dx%d, %d frames)", depth_path, info.get("method"), out_mp4, size[0], size[1], count
    )
    return {"frames": count, "width": size[0], "height": size[1]}


def _data_uri(path: str | Path) -> str:
    import base64

    path = Path(path)
    return f"data:{_MIME[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode()}"


def viewer_html(
    out_html: str | Path,
    preview_path: str | Path,
    mp4_path: str | Path | None,
    title: str,
    note: str = "",
    depth_preview: str | Path | None = None,
) -> None:
    """A self-contained HTML page: the animated preview (``img#preview``), then the full mp4 (``video#video``),
    and with ``depth_preview`` the depth video's preview (``img#depth``: the nvp fit's depth start) beside it.

    All are embedded as data URIs, so the page works inside the Snakemake report and on its own.
    """
    import html

    depth = ""
    if depth_preview is not None:
        depth = (
            "<p>Depth start of the nvp fit (frame | depth; red near, blue far; "
            "results/&lt;dataset&gt;/visualise/depth/):</p>"
            f"<img id='depth' alt='depth preview' src='{_data_uri(depth_preview)}'>"
        )
    video = ""
    if mp4_path is not None:
        video = (
            f"<p>Full resolution ({html.escape(Path(mp4_path).name)}):</p>"
            f"<video id='video' controls loop muted playsinline src='{_data_uri(mp4_path)}'></video>"
        )
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1em;color:#111}img,video{max-width:100%;"
        "image-rendering:auto;border:1px solid #ccc}</style></head><body>"
        f"<h3>{html.escape(title)}</h3><p>{html.escape(note)}</p>"
        f"<img id='preview' alt='track preview' src='{_data_uri(preview_path)}'>{depth}{video}</body></html>\n"
    )
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
