"""python -m avjax.separate on a camera-style clip, with a tiny randomly initialised model."""
import os

import av
import numpy as np
import pytest
import soundfile

from avjax import separate, video_io
from tests.sep_helpers import reference_convs, tiny_config, write_random_export

@pytest.fixture(scope="module", autouse=True)
def _reference_convs():
    yield from reference_convs()


FPS, SR, SECONDS = 25, 44100, 2.6


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("sep_models")
    return {v: write_random_export(str(base / v), tiny_config(v)) for v in ("full", "unet_pit")}


@pytest.fixture(scope="module")
def camera_mp4(tmp_path_factory):
    """25 fps, 44.1 kHz stereo, 320x240, 2.6 s: a moving square and two tones."""
    path = tmp_path_factory.mktemp("media") / "camera.mp4"
    n = int(SECONDS * FPS)
    frames = np.full((n, 240, 320, 3), 60, np.uint8)
    for i in range(n):
        x = 20 + 8 * i
        frames[i, 80:140, x % 260:x % 260 + 60] = (220, 180, 40)
    t = np.arange(int(SECONDS * SR)) / SR
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0),
                      0.2 * np.sin(2 * np.pi * 1200 * t)], axis=1).astype(np.float32)
    video_io.write_video(path, frames, FPS, audio, SR)
    return path


def _duration(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(a))
        rate = a.rate
    return frames / FPS, samples / rate


def _audio(path):
    _, _, audio, _ = video_io.read_video(path)
    return audio


def test_full_writes_three_videos_and_a_page(models, camera_mp4, tmp_path):
    res = separate.separate_file(str(camera_mp4), model="full", checkpoint=models["full"],
                                 out=str(tmp_path / "a"), duration=SECONDS, mask="l",
                                 progress=False)
    assert res["windows"] == 4                       # 2.6 s of 1.06-s windows: cross-faded
    outs = res["outputs"]
    assert set(outs) == {"on_screen", "off_screen", "source"}
    vin, ain = _duration(camera_mp4)
    for name in outs:
        v, a = _duration(outs[name])
        assert abs(v - vin) <= 1 / FPS + 1e-6, name
        assert abs(a - ain) <= 1 / FPS + 0.03, name   # AAC priming/padding aside
    page = open(res["index"]).read()
    for name in ("on_screen.mp4", "off_screen.mp4", "source.mp4", "on_screen.png"):
        assert name in page and os.path.exists(tmp_path / "a" / name)
    on_l = _audio(outs["on_screen"])
    assert np.all(np.isfinite(on_l)) and np.abs(on_l).max() > 0
    # --mask r hides the other half: a different on-screen estimate
    res_r = separate.separate_file(str(camera_mp4), model="full", checkpoint=models["full"],
                                   out=str(tmp_path / "b"), duration=SECONDS, mask="r",
                                   progress=False)
    on_r = _audio(res_r["outputs"]["on_screen"])
    n = min(len(on_l), len(on_r))
    assert np.abs(on_l[:n] - on_r[:n]).max() > 1e-4
    # --cam draws the heat map over the frames
    cam = separate.separate_file(str(camera_mp4), model="full", checkpoint=models["full"],
                                 out=str(tmp_path / "d"), duration=SECONDS, mask="l", cam=True,
                                 progress=False)
    f_plain = video_io.read_video(res["outputs"]["source"])[0]
    f_cam = video_io.read_video(cam["outputs"]["source"])[0]
    assert np.abs(f_plain.astype(int) - f_cam.astype(int)).mean() > 1.0


def test_unet_pit_video_and_audio_only(models, camera_mp4, tmp_path):
    res = separate.separate_file(str(camera_mp4), model="unet_pit",
                                 checkpoint=models["unet_pit"], out=str(tmp_path / "v"),
                                 duration=2.0, progress=False)
    assert set(res["outputs"]) == {"separated_1", "separated_2", "source"}
    # audio-only 5.1 input at 48 kHz → wav files
    t = np.arange(48000 * 2) / 48000
    six = np.stack([0.1 * (k + 1) * np.sin(2 * np.pi * (200 + 100 * k) * t) for k in range(6)],
                   axis=1).astype(np.float32)
    wav = tmp_path / "six.wav"
    soundfile.write(wav, six, 48000)
    res = separate.separate_file(str(wav), model="unet_pit", checkpoint=models["unet_pit"],
                                 out=str(tmp_path / "w"), duration=2.0, progress=False)
    for name in ("separated_1", "separated_2", "source"):
        y, sr = soundfile.read(res["outputs"][name])
        assert sr == 48000 and abs(len(y) - len(six)) <= 1 and np.all(np.isfinite(y))
    assert "<audio" in open(res["index"]).read()
    # a 29.97-fps 5.1 video with odd frame sizes
    six_mp4 = tmp_path / "six.mp4"
    video_io.write_video(six_mp4, np.full((60, 33, 47, 3), 70, np.uint8), 29.97, six, 48000)
    res = separate.separate_file(str(six_mp4), model="unet_pit", checkpoint=models["unet_pit"],
                                 out=str(tmp_path / "s"), duration=2.0, progress=False)
    frames, fps, audio, sr = video_io.read_video(res["outputs"]["separated_1"])
    assert abs(fps - 29.97) < 0.01 and len(frames) == 60 and sr == 48000


def test_bad_inputs_give_one_line_errors(models, camera_mp4, tmp_path, capsys):
    silent = tmp_path / "silent.mp4"
    video_io.write_video(silent, np.zeros((20, 48, 64, 3), np.uint8), FPS,
                         np.zeros((int(0.8 * SR), 2), np.float32), SR)
    mute = tmp_path / "mute.mp4"
    video_io.write_video(mute, np.zeros((20, 49, 65, 3), np.uint8), FPS)   # odd size, no audio
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(3000))
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.full((8000, 1), np.nan, np.float32), 8000, subtype="FLOAT")
    audio_only = tmp_path / "tone.wav"
    soundfile.write(audio_only, 0.1 * np.ones((8000, 1), np.float32), 8000)
    cases = [([str(tmp_path / "missing.mp4")], "not found"),
             ([str(mute)], "no audio stream"),
             ([str(junk)], "cannot read"),
             ([str(silent)], "silent"),
             ([str(nan), "--model=unet_pit"], "NaN"),
             ([str(audio_only)], "no video stream"),
             ([str(camera_mp4), f"--checkpoint={models['unet_pit']}"], "unet_pit")]
    for args, want in cases:
        argv = args + ["--out", str(tmp_path / "o")]
        if not any(a.startswith("--model") for a in args):
            argv.append("--model=full")
        if not any(a.startswith("--checkpoint") for a in args):
            argv.append(f"--checkpoint={models['unet_pit' if 'unet_pit' in argv[1] else 'full']}")
        with pytest.raises(SystemExit) as e:
            separate.main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and want in err and len(err.splitlines()) == 1, (args, err)


def test_clipped_audio_still_separates(models, tmp_path):
    t = np.arange(int(SECONDS * SR)) / SR
    loud = np.clip(3 * np.sin(2 * np.pi * 300 * t), -1, 1).astype(np.float32)
    path = tmp_path / "clipped.mp4"
    video_io.write_video(path, np.full((int(SECONDS * FPS), 64, 64, 3), 90, np.uint8), FPS,
                         np.stack([loud, loud], 1), SR)
    res = separate.separate_file(str(path), model="full", checkpoint=models["full"],
                                 out=str(tmp_path / "o"), duration=SECONDS, progress=False)
    assert np.all(np.isfinite(_audio(res["outputs"]["on_screen"])))
