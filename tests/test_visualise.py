"""Track videos (read back and checked pixel by pixel), previews, plots and the summary page."""

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pandas as pd
import pytest

from omnitrack.errors import InputError
from omnitrack.evaluation.summary import THRESHOLDS
from omnitrack.plots import aj_per_video, delta_curves, loss_curves, summary_table
from omnitrack.prediction import save_prediction
from omnitrack.visualise import (
    preview_png,
    render_frames,
    render_tracks,
    track_colours,
    upscale_factor,
    visualise_prediction,
)

T, H, W = 10, 48, 64
SCALE = upscale_factor(W, H, 96)  # 2: frames are drawn at 128x96


def scene():
    """A smooth grey gradient; track 0 moves right (visible), track 1 is static and occluded from frame 5."""
    ramp = np.linspace(60, 140, W, dtype=np.float32)[None, :, None]
    frames = np.broadcast_to(ramp, (T, H, W, 3)).astype(np.uint8).copy()
    tracks = np.zeros((2, T, 2), np.float32)
    tracks[0, :, 0] = 12 + 2 * np.arange(T)
    tracks[0, :, 1] = 16
    tracks[1] = [40, 36]
    occluded = np.zeros((2, T), bool)
    occluded[1, 5:] = True
    queries = np.array([[0, 16, 12], [0, 36, 40]], np.float32)
    return frames, tracks, occluded, queries


def canvas_px(x, y):
    """Canvas pixel (row, col) whose centre is the track point (x, y) (docs/formats.md convention)."""
    return int(round(y * SCALE - 0.5)), int(round(x * SCALE - 0.5))


def read_mp4(path):
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for f in reader])
    return frames, meta


def test_video_reads_back_with_track_colours_near_points_only(tmp_path):
    frames, tracks, occluded, queries = scene()
    info = render_tracks(
        frames, tracks, occluded, queries, tmp_path / "v.mp4", tmp_path / "v.webp", trail=3, min_side=96, fps=10
    )
    video, meta = read_mp4(tmp_path / "v.mp4")
    assert video.shape == (T, H * SCALE, W * SCALE, 3) and info["frames"] == T
    assert tuple(meta["size"]) == (W * SCALE, H * SCALE)
    background = np.stack(list(render_frames(frames, tracks[:0], occluded[:0], queries[:0], min_side=96)))
    colour = track_colours(queries, W, H)[0].astype(int)
    t = 7
    r, c = canvas_px(*tracks[0, t])
    near = video[t, r - 1 : r + 2, c - 1 : c + 2].reshape(-1, 3).mean(0)
    assert np.abs(near - colour).max() < 30, (near, colour)
    assert np.abs(near - background[t, r, c]).max() > 40
    # the point moved: at frame 0 the same pixel is background again (up to codec noise)
    assert np.abs(video[0, r, c].astype(int) - background[0, r, c]).max() < 12
    # far from every track: unchanged in every frame
    far = video[:, 70:90, 5:20].astype(int) - background[:, 70:90, 5:20]
    assert np.abs(far).mean() < 3 and np.abs(far).max() < 25
    # the trail: between the last two positions of track 0 the line has its colour
    rm, cm = canvas_px(*(tracks[0, t] + tracks[0, t - 1]) / 2)
    assert np.abs(video[t, rm, cm].astype(int) - background[t, rm, cm]).max() > 25


def test_occluded_points_are_hollow_or_hidden(tmp_path):
    frames, tracks, occluded, queries = scene()
    colour = track_colours(queries, W, H)[1].astype(int)
    r, c = canvas_px(*tracks[1, 7])
    radius = max(2, round(1.6 * SCALE))
    for style in ("hollow", "hidden"):
        preview_png(frames, tracks, occluded, queries, tmp_path / f"{style}.png", 7, occluded_style=style, min_side=96)
    hollow, hidden = iio.imread(tmp_path / "hollow.png"), iio.imread(tmp_path / "hidden.png")
    plain = next(render_frames(frames[7:8], tracks[:0, 7:8], occluded[:0, 7:8], queries[:0], min_side=96))
    assert (hidden[r - 6 : r + 7, c - 6 : c + 7] == plain[r - 6 : r + 7, c - 6 : c + 7]).all()
    assert (hollow[r, c] == plain[r, c]).all()  # the ring's centre is empty
    ring = hollow[r, c + radius : c + radius + 3].astype(int)
    assert np.abs(ring - colour).max(-1).min() < 25  # the ring has the track's colour
    # visible at frame 2: a filled disc whose centre pixel is exactly the track colour
    preview_png(frames, tracks, occluded, queries, tmp_path / "f2.png", 2, min_side=96)
    r2, c2 = canvas_px(*tracks[1, 2])
    assert (iio.imread(tmp_path / "f2.png")[r2, c2] == colour).all()


def test_ground_truth_is_drawn_beside_the_prediction(tmp_path):
    frames, tracks, occluded, queries = scene()
    pred = tracks.copy()
    pred[0, :, 1] += 10  # prediction 10 px below the truth
    w, h = preview_png(frames, pred, occluded, queries, tmp_path / "gt.png", 4, gt=(tracks, occluded), min_side=96)
    img = iio.imread(tmp_path / "gt.png")
    assert (w, h) == (2 * W * SCALE + 4, H * SCALE + 18) and img.shape == (h, w, 3)
    colour = track_colours(queries, W, H)[0]
    r, c = canvas_px(*tracks[0, 4])
    rp, cp = canvas_px(*pred[0, 4])
    right = W * SCALE + 4
    assert (img[18 + r, c] == colour).all() and (img[18 + rp, right + cp] == colour).all()
    assert not (img[18 + rp, cp] == colour).all() and not (img[18 + r, right + c] == colour).all()


def test_preview_is_small_and_animated(tmp_path):
    frames, tracks, occluded, queries = scene()
    for ext in ("webp", "gif", "png"):
        info = render_tracks(
            frames,
            tracks,
            occluded,
            queries,
            tmp_path / "v.mp4",
            tmp_path / f"p.{ext}",
            preview_every=3,
            preview_max_side=64,
            min_side=96,
        )
        anim = list(iio.imiter(tmp_path / f"p.{ext}"))
        assert info["preview_frames"] == len(anim) == 4  # frames 0, 3, 6, 9
        assert max(anim[0].shape[:2]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gif", "p.png", "p.webp", "v.mp4"]  # no temporaries


def test_bad_inputs_are_named(tmp_path):
    frames, tracks, occluded, queries = scene()
    with pytest.raises(ValueError, match=r"tracks \(2, 9, 2\) / occluded \(2, 10\) do not match 2 query points and 10"):
        render_tracks(frames, tracks[:, :9], occluded, queries, tmp_path / "v.mp4")
    with pytest.raises(InputError, match=r"p\.avi: a preview must be one of \.webp, \.gif, \.png"):
        render_tracks(frames, tracks, occluded, queries, tmp_path / "v.mp4", tmp_path / "p.avi")
    from omnitrack.data.frames import save_frames

    save_frames(tmp_path / "f.npz", frames, {"video": "v"})
    save_prediction(tmp_path / "p.npz", queries, tracks[:, :5], occluded[:, :5], W, H)
    with pytest.raises(InputError, match=r"p\.npz: is for 5 frames of 64x48, but .*f\.npz has 10 of 64x48"):
        visualise_prediction(tmp_path / "f.npz", tmp_path / "p.npz", tmp_path / "v.mp4", tmp_path / "v.webp", {})


def summary_frame():
    rows = []
    for video, base in (("a", 0.2), ("b", 0.5)):
        for method, bonus in (("chain", 0.0), ("nvp", 0.1)):
            for mode in ("first", "strided"):
                rec = {
                    "dataset": "d",
                    "video": video,
                    "method": method,
                    "query_mode": mode,
                    "average_jaccard": base + bonus,
                    "num_queries": 10,
                }
                rec.update({f"pts_within_{d}": min(1, base + 0.1 * i) for i, d in enumerate(THRESHOLDS)})
                rec.update({f"jaccard_{d}": min(1, base + 0.05 * i) for i, d in enumerate(THRESHOLDS)})
                rows.append(rec)
    return pd.DataFrame(rows)


def test_plots_show_the_summary_values(tmp_path):
    csv = tmp_path / "summary.csv"
    summary_frame().to_csv(csv, index=False)
    table = aj_per_video(csv, tmp_path / "aj.png")
    assert table.loc["b", ("first", "nvp")] == pytest.approx(0.6)
    assert table.loc["a", ("strided", "chain")] == pytest.approx(0.2)
    means = delta_curves(csv, tmp_path / "delta.png")
    assert means.loc[("chain", "first"), "pts_within_16"] == pytest.approx((0.6 + 0.9) / 2)
    for name in ("aj.png", "delta.png"):
        img = iio.imread(tmp_path / name)
        assert img.shape[0] > 200 and img.shape[1] > 400 and img.std() > 10
    pd.DataFrame({"video": ["a"], "seconds_total": [1.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"bad\.csv: has no column\(s\) \['method', 'query_mode'"):
        aj_per_video(tmp_path / "bad.csv", tmp_path / "x.png")


def test_loss_curves_and_their_absence(tmp_path):
    for video in ("a", "b"):
        pd.DataFrame({"step": np.arange(50), "loss": np.exp(-np.arange(50) / 10)}).to_csv(
            tmp_path / f"{video}.loss.csv", index=False
        )
    assert loss_curves([tmp_path / "a.loss.csv", tmp_path / "b.loss.csv"], tmp_path / "loss.png") == 2
    assert loss_curves([], tmp_path / "none.png") == 0
    assert iio.imread(tmp_path / "none.png").std() > 1  # a figure that says there are no curves
    (tmp_path / "c.loss.csv").write_text("iteration,value\n0,1.0\n")
    with pytest.raises(InputError, match=r"c\.loss\.csv: has no column\(s\) \['step', 'loss'\]"):
        loss_curves([tmp_path / "c.loss.csv"], tmp_path / "bad.png")


def test_summary_page_lists_every_row(tmp_path):
    from omnitrack.evaluation.summary import dataset_means

    csv = tmp_path / "summary.csv"
    dataset_means(summary_frame()).to_csv(csv, index=False)
    head = summary_table(csv, tmp_path / "summary.html")
    html = (tmp_path / "summary.html").read_text()
    assert len(head) == 4 and list(head.columns[:3]) == ["dataset", "method", "query mode"]
    assert 'id="summary"' in html and 'id="summary-full"' in html
    assert html.count("<tr") == 2 * (1 + 4)  # two tables: a header and 4 rows each
    assert "<td>0.450</td>" in html  # chain/first mean AJ over videos a (0.2) and b (0.5)
