"""CAM overlay maths on synthetic maps, and the mp4 + PNG outputs read back through video_io."""
import numpy as np
import pytest
from PIL import Image

from avjax.cam import (MAX_ALPHA, cam_at_frames, cam_thresholds, overlay_cam, resize_bilinear,
                       write_cam_outputs)
from avjax.video_io import VideoReadError, read_video, write_video


def _frames(t=8, h=32, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_flat_cam_leaves_frames_unchanged():
    frames = _frames()
    for cam in (np.zeros((4, 7, 7)), np.full((4, 7, 7), -3.0),
                -3.0 + 0.0009 * np.random.default_rng(1).random((4, 7, 7))):
        np.testing.assert_array_equal(overlay_cam(frames, cam), frames)


def test_peak_is_coloured_there_and_alpha_bounded():
    frames = np.full((4, 28, 28, 3), 100, np.uint8)
    cam = np.zeros((2, 7, 7))
    cam[:, 1, 5] = -50.0                       # |CAM| is shown, so a negative peak counts
    out = overlay_cam(frames, cam).astype(float)
    diff = np.abs(out - 100).max(axis=-1)
    # the peak at CAM cell (1, 5) covers pixels rows 4..7, cols 20..23 of the 28×28 frame
    assert (diff[:, 4:8, 20:24] > 0).all()
    assert (diff[:, 20:, :10] == 0).all()      # far from the peak: untouched
    # alpha ≤ 0.35: no pixel moves more than 0.35 of the way to any colour
    assert diff.max() <= np.ceil(MAX_ALPHA * 155) + 1
    # jet's top is dark red: red up, blue down where the CAM is above hi
    assert (out[:, 5, 21, 0] > 100).all() and (out[:, 5, 21, 2] < 100).all()


def test_fixed_threshold_and_percentile():
    cam = np.arange(100.0).reshape(1, 10, 10)
    lo, hi = cam_thresholds(cam)
    assert hi == pytest.approx(np.percentile(cam, 97) + 1e-3) and lo == pytest.approx(hi / 2 - 5e-4)
    lo, hi = cam_thresholds(cam, adaptive=False, fixed_thresh=35.0)
    assert (lo, hi) == (17.5, pytest.approx(35.001))
    frames = np.zeros((1, 10, 10, 3), np.uint8)
    assert (overlay_cam(frames, cam, adaptive=False).sum(-1)[0] > 0).sum() \
        > (overlay_cam(frames, cam, adaptive=True).sum(-1)[0] > 0).sum()   # lower threshold


def test_time_interpolation():
    cam = np.stack([np.full((2, 2), v) for v in (0.0, 10.0, 20.0, 30.0)])   # 4 CAM slices
    timed = cam_at_frames(cam, 8)                                          # 8 frames
    np.testing.assert_allclose(timed[:, 0, 0], [0, 5, 10, 15, 20, 25, 30, 30])
    np.testing.assert_allclose(cam_at_frames(cam, 4)[:, 1, 1], [0, 10, 20, 30])
    np.testing.assert_allclose(cam_at_frames(cam[:1], 3)[:, 0, 0], [0, 0, 0])


def test_bilinear_upsampling():
    m = np.array([[[0.0, 4.0], [8.0, 12.0]]])
    up = resize_bilinear(m, 4, 4)[0]
    np.testing.assert_allclose(up[0], [0, 1, 3, 4])                 # half-pixel centres
    np.testing.assert_allclose(up[:, 0], [0, 2, 6, 8])
    np.testing.assert_allclose(resize_bilinear(m, 2, 2), m)


def test_write_cam_outputs_round_trip(tmp_path):
    fps, sr, t = 29.97, 21000, 24
    frames = _frames(t, 56, 70)
    cam = np.zeros((3, 7, 7))
    cam[:, 3, 3] = 10.0
    n = int(round(t * sr / fps))
    audio = 0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)[:, None].repeat(2, 1)
    mp4, png = write_cam_outputs(frames, cam, audio, sr, fps, tmp_path / "out", "clip")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip_cam.mp4", "clip_cam.png"]
    got, got_fps, got_audio, got_sr = read_video(mp4)
    assert got.shape == (t, 56, 70, 3) and got_fps == pytest.approx(fps, abs=1e-3)
    assert got_audio is not None and got_audio.shape[1] == 2
    assert abs(len(got_audio) / got_sr - t / fps) < 1 / fps
    assert np.abs(got_audio).max() > 0.1
    # the encoded frames are the overlaid ones (H.264 is lossy: compare means)
    shown = overlay_cam(frames, cam)
    assert np.abs(got.astype(float) - shown).mean() < np.abs(got.astype(float) - frames).mean()
    strip = np.asarray(Image.open(png))
    assert strip.shape == (56, 4 * 70, 3)


def test_video_io_odd_sizes_silence_and_errors(tmp_path):
    frames = _frames(5, 31, 33)
    path = write_video(tmp_path / "v.mp4", frames, 15.0)
    got, fps, audio, sr = read_video(path)
    assert got.shape == (5, 32, 34, 3) and fps == 15.0 and audio is None and sr is None
    with pytest.raises(VideoReadError, match="missing.mp4"):
        read_video(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoReadError, match="bad.avi"):
        read_video(bad)
