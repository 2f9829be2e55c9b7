"""User videos: listing, decoding (files and image folders), bad inputs, resizing, working size."""

import warnings

import cv2
import numpy as np
import pytest

from conftest import shared_file
from omnitrack.data.videos import list_videos, plan_working_size, read_video, resize_frames, working_size
from omnitrack.errors import InputError


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
