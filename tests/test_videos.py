"""User videos: listing, decoding (files and image folders), bad inputs, resizing, working size."""

import os
import warnings

import cv2
import numpy as np
import pytest

from omnitrack.data.videos import (
    FrameCountWarning,
    FrameGapWarning,
    frame_files,
    list_videos,
    plan_working_size,
    read_video,
    resize_frames,
    working_size,
)
from omnitrack.errors import InputError
from tests.shared import shared_file


@pytest.fixture(scope="module")
def sample(shared_data):
    return shared_file(shared_data, "videos/sample.mp4")


def _write_video(path, frames, fps=10):
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_read_sample_video(sample):
    frames, fps = read_video(sample)
    assert frames.shape == (60, 384, 512, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(12.0)
    assert frames.std() > 10  # real content, not a blank decode
    first, _ = read_video(sample, max_frames=10)
    np.testing.assert_array_equal(first, frames[:10])
    with pytest.raises(ValueError, match="max_frames"):
        read_video(sample, max_frames=1)


def test_written_video_is_rgb(tmp_path):
    frames = np.zeros((3, 48, 64, 3), np.uint8)
    frames[..., 0] = 220  # red
    out, fps = read_video(_write_video(tmp_path / "red.avi", frames))
    assert out.shape == (3, 48, 64, 3) and fps == pytest.approx(10.0)
    assert out[..., 0].mean() > 180 and out[..., 2].mean() < 40


def test_list_videos(tmp_path, sample):
    (tmp_path / "clip.mp4").symlink_to(sample)
    (tmp_path / "b.MOV").write_bytes(b"x")
    frames = tmp_path / "frames_seq"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / ".hidden.mp4").write_bytes(b"x")
    found = list_videos(tmp_path)
    assert list(found) == ["b", "clip", "frames_seq"]
    assert found["frames_seq"] == frames and found["clip"] == tmp_path / "clip.mp4"
    (tmp_path / "clip").mkdir()
    cv2.imwrite(str(tmp_path / "clip" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"'clip' and 'clip.mp4' would both be video 'clip'"):
        list_videos(tmp_path)
    with pytest.raises(InputError, match=r"nope: does not exist"):
        list_videos(tmp_path / "nope")
    with pytest.raises(InputError, match=r"empty_dir: holds no video file"):
        list_videos(tmp_path / "empty_dir")


def test_bad_video_files(tmp_path):
    with pytest.raises(InputError, match=r"missing\.mp4: does not exist"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not really a video" * 20)
    with pytest.raises(InputError, match=r"corrupt\.mp4: (cannot be opened as a video|has no decodable frame)"):
        read_video(tmp_path / "corrupt.mp4")
    one = _write_video(tmp_path / "one.avi", np.full((1, 32, 32, 3), 90, np.uint8))
    with pytest.raises(InputError, match=r"one\.avi: has only 1 frame; tracking needs at least 2 frames"):
        read_video(one)
    (tmp_path / "text.txt").write_text("hello")
    with pytest.raises(InputError, match=r"text\.txt: is neither a video file"):
        read_video(tmp_path / "text.txt")


def test_frame_folder_natural_order_and_gray(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: 1, 2, 10 (lexicographic would give 1, 10, 2)
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((12, 16), i * 20, np.uint8))
    with pytest.warns(FrameGapWarning, match=r"gray: frame numbers 1\.\.10 skip 7"):
        frames, fps = read_video(folder)
    assert frames.shape == (3, 12, 16, 3) and fps is None
    np.testing.assert_array_equal(frames[:, 0, 0, 0], [20, 40, 200])
    assert (frames == frames[..., :1]).all()  # gray replicated to RGB


def test_frame_folder_16bit_and_rgba(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    img16 = np.zeros((10, 10, 3), np.uint16)  # BGR on disk
    img16[..., 2] = 65535  # red
    img16[..., 1] = 32768
    cv2.imwrite(str(folder / "a.png"), img16)
    rgba = np.zeros((10, 10, 4), np.uint8)  # BGRA on disk
    rgba[..., 0] = 250  # blue
    rgba[..., 3] = 17
    cv2.imwrite(str(folder / "b.png"), rgba)
    assert cv2.imread(str(folder / "a.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    frames, _ = read_video(folder)
    np.testing.assert_array_equal(frames[0, 0, 0], [255, 128, 0])
    np.testing.assert_array_equal(frames[1, 0, 0], [0, 0, 250])


@pytest.mark.filterwarnings("ignore::omnitrack.data.videos.FrameGapWarning")
def test_frame_folder_errors(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), np.zeros((24, 32, 3), np.uint8))
    cv2.imwrite(str(folder / "001.png"), np.zeros((24, 32, 3), np.uint8))
    cv2.imwrite(str(folder / "002.png"), np.zeros((24, 40, 3), np.uint8))
    with pytest.raises(InputError, match=r"mixed: frame '002\.png' is 40x24 but the first frame '000\.png' is 32x24"):
        read_video(folder)
    (folder / "002.png").unlink()
    (folder / "003.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"003\.png: cannot be decoded as an image"):
        read_video(folder)
    single = tmp_path / "single"
    single.mkdir()
    cv2.imwrite(str(single / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match=r"single: has only 1 frame"):
        read_video(single)


def test_resize_frames_area_when_shrinking_linear_when_growing():
    row = np.tile([0, 0, 0, 255], 8).astype(np.uint8)  # period-4 pattern along x
    frames = np.broadcast_to(row[None, None, :, None], (2, 8, 32, 3)).copy()
    small = resize_frames(frames, 8, 2)
    assert small.shape == (2, 2, 8, 3)
    assert np.all(small == 64)  # area average of (0, 0, 0, 255); bilinear would give 0
    big = resize_frames(np.array([[[[0] * 3, [200] * 3]]] * 2, np.uint8), 4, 1)
    assert big.shape == (2, 1, 4, 3)
    assert 0 < big[0, 0, 1, 0] < big[0, 0, 2, 0] < 200  # interpolated ramp, not nearest
    assert resize_frames(frames, 32, 8) is frames


def test_working_size():
    assert working_size(512, 384, 256) == (256, 192)
    assert working_size(854, 480, 256) == (256, 144)
    assert working_size(90, 50, 256) == (88, 48)  # never enlarged, multiple of 8
    assert working_size(1000, 10, 256) == (256, 8)
    w, h = working_size(1917, 1079, 500)
    assert w % 8 == 0 and h % 8 == 0 and w <= 500 and abs(w / h - 1917 / 1079) < 0.05
    with pytest.raises(ValueError, match="max_side"):
        working_size(100, 100, 0)


def test_plan_working_size_warns_on_big_downscale():
    with pytest.warns(UserWarning, match=r"big\.mp4: 3840x2160 is downscaled to 512x288"):
        assert plan_working_size("big.mp4", 3840, 2160, 512) == (512, 288)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plan_working_size("ok.mp4", 512, 384, 256) == (256, 192)


# --- frame input you can trust (docs/errors.md, rows 46-) -----------------------------------------------


def _png(path, value=0, size=(8, 8)):
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def _folder(tmp_path, name, files):
    folder = tmp_path / name
    folder.mkdir()
    for i, f in enumerate(files):
        _png(folder / f, 10 * i)
    return folder


def test_frames_are_ordered_by_their_number_not_by_listing(tmp_path):
    folder = _folder(tmp_path, "unpadded", ["10.png", "9.png", "11.png", "8.png"])
    assert [f.name for f in frame_files(folder)] == ["8.png", "9.png", "10.png", "11.png"]
    frames, _ = read_video(folder)
    np.testing.assert_array_equal(frames[:, 0, 0, 0], [30, 10, 0, 20])  # values written in list order
    mixed_width = _folder(tmp_path, "widths", ["frame_9.png", "frame_10.png", "frame_008.png"])
    assert [f.name for f in frame_files(mixed_width)] == ["frame_008.png", "frame_9.png", "frame_10.png"]


def test_ambiguous_numbering_is_an_error_naming_the_files(tmp_path):
    folder = _folder(tmp_path, "padding", ["1.png", "01.png", "2.png"])
    with pytest.raises(InputError, match=r"padding: '01\.png' and '1\.png' are both frame 1 \(mixed zero padding\)"):
        read_video(folder)
    folder = _folder(tmp_path, "patterns", ["left_1.png", "left_2.png", "right_1.png", "right_2.png"])
    with pytest.raises(
        InputError,
        match=r"patterns: holds images named in 2 patterns: 'left_<n>' \(2 files\), "
        r"'right_<n>' \(2 files\); the frame order is ambiguous",
    ):
        read_video(folder)
    folder = _folder(tmp_path, "cover", ["cover.png", "001.png", "002.png"])
    with pytest.raises(InputError, match=r"cover: mixes numbered and unnumbered image names"):
        read_video(folder)


def test_two_image_types_in_a_folder_is_an_error_unless_frame_ext_says_which(tmp_path):
    folder = tmp_path / "bear"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), np.full((8, 8, 3), 100, np.uint8))
        cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((8, 8), 1, np.uint8))  # masks beside the frames
    with pytest.raises(
        InputError,
        match=r"bear: holds images of 2 types: 3 JPEG \(\.jpg\), 3 PNG \(\.png\); .*"
        r"set `frame_ext:` in the dataset to the frames' extension",
    ):
        read_video(folder)
    frames, _ = read_video(folder, frame_ext="jpg")
    assert frames.shape == (3, 8, 8, 3) and abs(int(frames.mean()) - 100) < 3
    assert list(list_videos(tmp_path, frame_ext="png")) == ["bear"]


def test_gaps_in_numbering_warn_naming_the_folder_and_frames(tmp_path):
    folder = _folder(tmp_path, "gappy", ["001.png", "002.png", "005.png"])
    with pytest.warns(FrameGapWarning, match=r"gappy: frame numbers 1\.\.5 skip 2 value\(s\) \(missing: 3, 4\)"):
        frames, _ = read_video(folder)
    assert len(frames) == 3


def test_truncated_jpeg_is_an_error_not_a_grey_frame(tmp_path):
    folder = tmp_path / "cut"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 255, (32, 40, 3), dtype=np.uint8))
    data = (folder / "1.jpg").read_bytes()
    (folder / "1.jpg").write_bytes(data + b"camera trailer")  # bytes after the end marker are fine
    assert len(read_video(folder)[0]) == 3
    (folder / "1.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(folder / "1.jpg")) is not None  # OpenCV alone decodes it (grey bottom)
    with pytest.raises(InputError, match=r"cut/1\.jpg: is truncated \(frame 1: the JPEG data ends before the image"):
        read_video(folder)


def test_video_file_cut_short_is_an_error(tmp_path):
    path = _write_video(tmp_path / "long.avi", np.stack([np.full((32, 48, 3), 10 * i, np.uint8) for i in range(20)]))
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(
        InputError, match=r"cut\.avi: is cut short: it declares 20 frames but decoding stops after frame"
    ):
        read_video(cut)
    assert len(read_video(cut, max_frames=2)[0]) == 2  # the frames asked for are there


class _FakeCapture:
    """cv2.VideoCapture stand-in: ``shapes`` per frame (None: a frame that fails to decode)."""

    def __init__(self, shapes, declared):
        self.shapes, self.declared, self.i = shapes, declared, 0

    def isOpened(self):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 10.0, cv2.CAP_PROP_FRAME_COUNT: float(self.declared)}.get(prop, 0.0)

    def read(self):
        if self.i >= len(self.shapes) or self.shapes[self.i] is None:
            self.i += 1
            return False, None
        shape = self.shapes[self.i]
        self.i += 1
        return True, np.zeros((*shape, 3), np.uint8)

    def grab(self):
        ok, _ = self.read()
        return ok

    def release(self):
        pass


@pytest.mark.parametrize(
    "shapes, declared, message",
    [
        ([(24, 32)] * 3 + [(48, 64)] * 3, 6, r"v\.mp4: frame 3 is 64x48 but frame 0 is 32x24: the resolution changes"),
        ([(24, 32)] * 2 + [None] + [(24, 32)] * 3, 6, r"v\.mp4: frame 2 cannot be decoded, but later frames can"),
    ],
)
def test_resolution_change_or_a_bad_frame_inside_a_video_is_an_error(tmp_path, monkeypatch, shapes, declared, message):
    (tmp_path / "v.mp4").write_bytes(b"x")
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: _FakeCapture(shapes, declared))
    with pytest.raises(InputError, match=message):
        read_video(tmp_path / "v.mp4")


def test_one_frame_short_of_the_declared_count_warns(tmp_path, monkeypatch):
    (tmp_path / "v.mp4").write_bytes(b"x")
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: _FakeCapture([(24, 32)] * 5, 6))
    with pytest.warns(FrameCountWarning, match=r"v\.mp4: declares 6 frames but 5 decode; using 5"):
        assert len(read_video(tmp_path / "v.mp4")[0]) == 5


def test_broken_symlinks_are_named_with_their_target(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    _folder(videos, "ok", ["0.png", "1.png"])
    (videos / "gone.mp4").symlink_to(tmp_path / "elsewhere" / "gone.mp4")
    found = list_videos(videos)
    assert list(found) == ["gone", "ok"]  # listed: its own frames job reports it, the others go on
    with pytest.raises(
        InputError,
        match=r"gone\.mp4: is a broken symbolic link \(it points to .*elsewhere/gone\.mp4, "
        r"which does not exist\) \(fix the link, or remove it\)",
    ):
        read_video(found["gone"])
    (videos / "ok" / "2.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(InputError, match=r"ok/2\.png: is a broken symbolic link"):
        read_video(videos / "ok")
    (tmp_path / "link").symlink_to(tmp_path / "missing_dir")
    with pytest.raises(InputError, match=r"link: is a broken symbolic link"):
        list_videos(tmp_path / "link")


def test_dataset_path_at_a_video_file_or_frame_folder_says_what_to_write(tmp_path):
    folder = _folder(tmp_path, "clip", ["0.png", "1.png"])
    with pytest.raises(
        InputError,
        match=rf"clip: holds 2 images directly: it is one video's frame folder.*"
        rf"write `path: {tmp_path}` \(this folder becomes video 'clip'\)",
    ):
        list_videos(folder)
    video = _write_video(tmp_path / "my clip.v2.avi", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(
        InputError,
        match=rf"my clip\.v2\.avi: is a video file, .*write `path: {tmp_path}` to track "
        rf"every video in it \(this one becomes video 'my_clip_v2'\)",
    ):
        list_videos(video)


def test_any_name_maps_to_an_id_and_collisions_are_named(tmp_path):
    from omnitrack.data.names import display_name, video_id

    assert video_id("clip.v2") == "clip_v2" and video_id("my clip") == "my_clip" and video_id("bear") == "bear"
    assert video_id("café") == "café" and video_id("motocross-jump") == "motocross-jump"
    latin1 = os.fsdecode(b"caf\xe9")  # not UTF-8: surrogate-escaped by the OS layer
    assert display_name(latin1) == "caf\\xe9" and video_id(latin1) == "caf_xe9"
    _write_video(tmp_path / "clip.v2.avi", np.zeros((3, 16, 16, 3), np.uint8))
    _write_video(tmp_path / "plain.avi", np.zeros((3, 16, 16, 3), np.uint8))
    (tmp_path / "a b").mkdir()
    _png(tmp_path / "a b" / "0.png")
    assert list(list_videos(tmp_path)) == ["a_b", "clip_v2", "plain"]
    _write_video(tmp_path / "clip_v2.avi", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(InputError, match=r"'clip\.v2\.avi' and 'clip_v2\.avi' would both be video 'clip_v2'"):
        list_videos(tmp_path)
