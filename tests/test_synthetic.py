"""The synthetic world: determinism, sync ground truth, stems, boxes, motion, CLI."""
import dataclasses
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from data_pipelines import records, synthetic
from data_pipelines.synthetic import WorldConfig

SMALL = WorldConfig(duration_s=3.0, fps=15.0, height=64, width=64, sample_rate=11025)


def decode(config, index, seed=0, split="train"):
    return records.decode_example(synthetic.generate_example(config, seed=seed, index=index, split=split))


def box_brightness(video, boxes):
    """Mean brightness inside each frame's box (T,)."""
    t, h, w = video.shape[:3]
    gray = video.astype(np.float32).mean(-1)
    return np.array([gray[k, int(b[1] * h):math.ceil(b[3] * h), int(b[0] * w):math.ceil(b[2] * w)].mean()
                     for k, b in enumerate(boxes)])


def flash_starts(brightness, jump=25.0):
    on = brightness > np.median(brightness) + jump
    return set(np.flatnonzero(on & ~np.r_[False, on[:-1]]).tolist())


def audio_onset_frames(stem, sample_rate, fps, num_frames):
    """Frames where the stem's energy at least doubles: onsets heard, not read from metadata."""
    spf = sample_rate / fps
    energy = np.array([np.sum(stem[int(k * spf):int((k + 1) * spf)].astype(np.float64) ** 2)
                       for k in range(num_frames)])
    onsets = {k for k in range(1, num_frames) if energy[k] > 2 * max(energy[k - 1], 1e-3)}
    return onsets | ({0} if energy[0] > 1e-3 else set())


def near(a, b, tol=1):
    return [x for x in a if not any(abs(x - y) <= tol for y in b)]


def test_determinism():
    a = synthetic.generate_example(SMALL, seed=0, index=5)
    assert synthetic.generate_example(SMALL, seed=0, index=5) == a
    assert synthetic.generate_example(SMALL, seed=0, index=6) != a
    assert synthetic.generate_example(SMALL, seed=1, index=5) != a
    assert synthetic.generate_example(SMALL, seed=0, index=5, split="test") != a


def test_fast_enough():
    synthetic.generate_clip(SMALL, seed=0, index=0)
    t = time.perf_counter()
    for i in range(5):
        records.encode_example(synthetic.generate_clip(SMALL, seed=0, index=i))
    assert (time.perf_counter() - t) / 5 < 0.1


def test_flashes_start_exactly_at_onset_frames():
    cfg = dataclasses.replace(SMALL, duration_s=4.0, num_onscreen=(1, 1), num_offscreen=(0, 0),
                              num_distractors=(0, 0))
    for index in range(6):
        d = decode(cfg, index)
        events = d["arrays"]["event_times"][0]
        expected = set(np.floor(events[events >= 0] * cfg.fps + 1e-9).astype(int).tolist())
        seen = flash_starts(box_brightness(d["video"], d["arrays"]["boxes"][:, 0]))
        assert seen == expected
        # the stem is silent until the first event and starts within 2 ms of it
        first = np.flatnonzero(np.abs(d["sources"][0]).max(-1) > 0)[0]
        assert 0 <= first - round(events[0] * cfg.sample_rate) <= 0.002 * cfg.sample_rate


def test_flashes_coincide_with_audio_onsets_in_stems():
    # One visible object and no distractors: occlusion would hide flashes from this measurement.
    cfg = dataclasses.replace(synthetic.preset("multisensory_local"), num_onscreen=(1, 1),
                              num_distractors=(0, 0))
    total = misses = 0
    for index in range(8):
        d = decode(cfg, index)
        t = d["video"].shape[0]
        for s in np.flatnonzero(d["sources_onscreen"]):
            heard = audio_onset_frames(d["sources"][s], cfg.sample_rate, cfg.fps, t)
            seen = flash_starts(box_brightness(d["video"], d["arrays"]["object_boxes"][:, s]))
            total += len(seen)
            misses += len(near(seen, heard)) + len(near(heard, seen))
    assert total > 100 and misses / total < 0.05


def test_offscreen_sources_have_no_visual():
    cfg = dataclasses.replace(SMALL, num_offscreen=(2, 2))
    for index in range(3):
        scene, rng = synthetic.sample_scene(cfg, 0, index)
        rng_state = rng.bit_generator.state
        video, boxes, _ = synthetic.render_video(scene, cfg, rng)
        off = [j for j, o in enumerate(scene.objects) if o.kind == "offscreen"]
        assert len(off) == 2 and np.all(boxes[:, off] == -1)
        rng.bit_generator.state = rng_state
        hidden = dataclasses.replace(scene, objects=[o for o in scene.objects if o.kind != "offscreen"])
        np.testing.assert_array_equal(synthetic.render_video(hidden, cfg, rng)[0], video)
        d = decode(cfg, index)
        onscreen = d["arrays"]["object_info"][: len(d["sources"]), 2].astype(bool)
        np.testing.assert_array_equal(d["sources_onscreen"], onscreen)
        assert (~d["sources_onscreen"]).sum() == 2


def test_stems_mixture_boxes_and_arrays():
    cfg = dataclasses.replace(SMALL, num_distractors=(1, 2))
    for index in range(4):
        d = decode(cfg, index)
        a = d["arrays"]
        t, o, s = cfg.num_frames, cfg.max_objects, len(d["sources"])
        assert d["video"].shape == (t, 64, 64, 3) and d["audio"].shape == (cfg.num_samples, 2)
        np.testing.assert_allclose(d["sources"].sum(0), d["audio"], atol=s / 32767 + 1e-6)
        assert np.abs(d["audio"]).max() <= cfg.mix_peak + 1e-4
        assert a["mix_gain"][0] <= 1 and a["mix_peak"][0] > 0
        for key, shape in [("boxes", (t, cfg.num_onscreen[1], 4)), ("object_boxes", (t, o, 4)),
                           ("object_depth", (t, o)), ("object_info", (o, 4)), ("object_features", (o, 64)),
                           ("motion", (o, 3, 3)), ("object_distance", (3, o, o))]:
            assert a[key].shape == shape, key
        for boxes in (a["boxes"], a["object_boxes"]):
            valid = boxes[..., 0] >= 0
            assert np.all((boxes[valid] >= 0) & (boxes[valid] <= 1))
            assert np.all(boxes[~valid] == -1)
            assert np.all(boxes[valid][:, 2] > boxes[valid][:, 0])
        info = a["object_info"]
        n = int(info[:, 3].sum())
        drawn = info[:n, 2].astype(bool) | (info[:n, 1] == 0)
        assert np.all(a["object_boxes"][:, :n][:, drawn] >= 0)
        assert np.all(info[n:, 0] == -1) and np.all(info[:s, 1] == 1) and np.all(info[s:, 1] == 0)
        feats = a["object_features"]
        assert np.all(np.isfinite(feats)) and np.all(feats[n:] == 0) and np.all(feats[:n][~drawn] == 0)
        assert np.all(np.abs(feats[:n][drawn]).sum(-1) > 0)
        assert np.all(a["object_depth"][:, :n] >= cfg.depth_range[0] - 1e-6)
        assert np.all(np.isnan(a["object_distance"][:, n:])) and np.all(np.isfinite(a["object_distance"][:, :n, :n]))
        assert d["label_name"] == synthetic.MOTION_CLASSES[d["label"]]


def test_motion_classes_are_what_the_principal_does():
    found = set()
    for index in range(40):
        scene, _ = synthetic.sample_scene(SMALL, 0, index)
        label = synthetic.MOTION_CLASSES[scene.label]
        found.add(label)
        x, y, d = synthetic.object_position(scene.objects[0], np.linspace(0, SMALL.duration_s, 50), SMALL)
        if label == "static":
            assert np.ptp(x) == np.ptp(y) == np.ptp(d) == 0
        elif label == "left_right":
            assert np.ptp(x) > 0.1 and np.ptp(y) == 0
        elif label == "up_down":
            assert np.ptp(y) > 0.1 and np.ptp(x) == 0
        elif label == "approach":
            assert d[-1] < d[0] - 0.5
        elif label == "recede":
            assert d[-1] > d[0] + 0.5
    assert found == set(synthetic.MOTION_CLASSES)


def test_audible_depth_cue():
    cfg = dataclasses.replace(SMALL, num_onscreen=(1, 1), num_offscreen=(0, 0), num_channels=1)
    for index in range(40):
        scene, _ = synthetic.sample_scene(cfg, 0, index)
        if synthetic.MOTION_CLASSES[scene.label] == "approach":
            d = decode(cfg, index)
            motion = d["arrays"]["motion"][0]
            assert np.all(motion[:, 2] < -0.3) and np.allclose(motion[:, :2], 0)
            stem = d["sources"][0, :, 0]
            half = len(stem) // 2
            assert np.abs(stem[half:]).max() > np.abs(stem[:half]).max()  # nearer is louder
            return
    pytest.fail("no approaching clip among 40")


def test_presets():
    sizes = {name: synthetic.preset(name) for name in synthetic.PRESET_NAMES}
    ms = sizes["multisensory"]
    assert (ms.num_frames, ms.num_samples, ms.height, ms.num_channels) == (302, 212100, 256, 2)
    assert sizes["asmp"].sample_rate == 11025 and sizes["asmp"].num_channels == 1
    with pytest.raises(ValueError, match="unknown preset"):
        synthetic.preset("nope")
    with pytest.raises(ValueError, match="num_channels"):
        WorldConfig(num_channels=3)


def test_generate_dataset_parallel_equals_serial_and_caches(tmp_path):
    cfg = synthetic.preset("asmp_local")
    serial = synthetic.generate_dataset(str(tmp_path / "a"), cfg, 4, num_shards=2)
    parallel = synthetic.generate_dataset(str(tmp_path / "b"), cfg, 4, num_shards=2, workers=2)
    sa, sb = records.RecordSource(serial), records.RecordSource(parallel)
    assert len(sa) == len(sb) == 4 and all(sa[i] == sb[i] for i in range(4))
    assert [records.decode_example(sa[i])["id"] for i in range(4)] == [
        f"synthetic-train-s0-{i:07d}" for i in range(4)]
    before = os.stat(serial).st_mtime_ns
    assert synthetic.generate_dataset(str(tmp_path / "a"), cfg, 4, num_shards=2) == serial
    assert os.stat(serial).st_mtime_ns == before  # cached, not rewritten


def test_cli(tmp_path):
    out = tmp_path / "data"
    assert synthetic.main(["--out", str(out), "--num_clips", "3", "--preset", "asmp_local",
                           "--split", "val", "--num_shards", "2", "--seed", "4"]) == 0
    assert sorted(os.listdir(out)) == ["synthetic-val.manifest.json", "synthetic-val.tfrecord-00000-of-00002",
                                       "synthetic-val.tfrecord-00001-of-00002"]
    src = records.RecordSource(str(out))
    assert len(src) == 3
    d = records.decode_example(src[2])
    assert d["id"] == "synthetic-val-s4-0000002" and d["audio"].shape == (110250, 1)
    proc = subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", "--out", str(out), "--num_clips", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--num_clips must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].endswith("got 0")


def _peak_hz(x, sr, lo, hi):
    seg = x[int(lo * sr):int(hi * sr)] * np.hanning(int(hi * sr) - int(lo * sr))
    return np.fft.rfftfreq(1 << 16, 1 / sr)[np.argmax(np.abs(np.fft.rfft(seg, 1 << 16)))]


def test_asmp_local_motion_cues_side_and_back_wall_echoes_and_vertical_glide():
    """asmp_local's cues: the side-wall echo (45 ms) is pitched by the x velocity, the floor echo
    is gone (gain 0), the back-wall echo (135 ms) stays at the direct pitch at rest; the glide
    raises every frequency by (1 + rate·t)."""
    cfg = synthetic.preset("asmp_local")
    assert cfg.echo_gains == (0.6, 0.0, 0.6) and cfg.y_glide > 0
    sr, f0 = cfg.sample_rate, 440.0
    sound = {"tau": 0.1, "f": f0}
    direct = synthetic._event_sound("tone", sound, sr, 1.0, None)
    vx = 0.2                                           # → side echo × 1/(1 − 0.2/0.6) = 1.5
    out = synthetic._motion_echoes(direct, "tone", sound, 1.0, vx, 0.0, 0.0, cfg, None)
    side = synthetic._event_sound("tone", sound, sr, 1.5, None)
    back = synthetic._event_sound("tone", sound, sr, 1.0, None)
    expect = np.zeros_like(out)
    expect[:len(direct)] += direct
    expect[int(0.045 * sr):int(0.045 * sr) + len(side)] += 0.6 * side
    expect[int(0.135 * sr):int(0.135 * sr) + len(back)] += 0.6 * back
    np.testing.assert_allclose(out, expect, atol=1e-12)   # exactly these three, no floor echo
    echoes = out.copy()
    echoes[:len(direct)] -= direct
    assert abs(_peak_hz(echoes, sr, 0.05, 0.13) - 1.5 * f0) < 15     # the side echo's pitch

    tone = np.sin(2 * np.pi * f0 * np.arange(int(0.4 * sr)) / sr)
    up, flat = synthetic._glide(tone, 1.0, sr), synthetic._glide(tone, 0.0, sr)
    assert flat is tone
    assert abs(_peak_hz(up, sr, 0.0, 0.05) - f0 * 1.025) < 15
    assert abs(_peak_hz(up, sr, 0.3, 0.35) - f0 * 1.325) < 15
    down = synthetic._glide(tone, -1.0, sr)
    assert abs(_peak_hz(down, sr, 0.3, 0.35) - f0 * 0.675) < 15


def test_asmp_local_vertical_motion_glides_its_events():
    """Rendered through the world: an object rising (dy/dt < 0) makes its events glide up, one
    sinking glides them down, and the slope follows y_glide · |dy/dt|."""
    base = dataclasses.replace(synthetic.preset("asmp_local"), event_gain_jitter=0.0)
    slopes = {}
    for vy in (-0.1, 0.1):
        obj = synthetic.SceneObject(kind="onscreen", family=0, shape=0, rgb=np.zeros(3), radius=0.1,
                                    pattern="wander", level=1.0, sound={"tau": 0.3, "f": 440.0},
                                    events=np.array([1.0]),
                                    motion={"x": 0.5, "y": 0.5, "d": 1.5, "vx": 0.0, "vy": vy, "vd": 0.0,
                                            "bounds": (0.0, 1.0, 0.0, 1.0), "period": 1.0, "phase": 0.0})
        scene = synthetic.Scene(objects=[obj], label=0, background={})
        cfg = dataclasses.replace(base, echo_gains=(0.0, 0.0, 0.0))
        stems, _ = synthetic.render_audio(scene, cfg, np.random.default_rng(0))
        s = stems[0, :, 0]
        early = _peak_hz(s, cfg.sample_rate, 1.0, 1.05)
        late = _peak_hz(s, cfg.sample_rate, 1.25, 1.3)
        slopes[vy] = (late - early) / early
    rate = base.y_glide * 0.1                          # 1.2 /s: + 25 % between the two windows
    assert slopes[-0.1] == pytest.approx(rate * 0.25 / (1 + rate * 0.025), abs=0.04)
    assert slopes[0.1] == pytest.approx(-rate * 0.25 / (1 - rate * 0.025), abs=0.04)

