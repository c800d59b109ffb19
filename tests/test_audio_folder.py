"""data_pipelines.audio_folder: a folder of audio files (any format/rate/channels) → records."""
import os

import av
import numpy as np
import pytest
import soundfile

from data_pipelines import audio_folder, records


def _tone(sr, seconds, channels, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * f * t)
    return np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)


def _write_mp3(path, audio, sr):
    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp",
                                           layout="stereo")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "spk1").mkdir()
    soundfile.write(root / "spk1" / "a.wav", _tone(16000, 1.0, 1), 16000)
    soundfile.write(root / "spk1" / "b.flac", _tone(44100, 0.5, 2), 44100)
    soundfile.write(root / "c.ogg", _tone(22050, 0.6, 6), 22050, format="OGG")   # 5.1
    _write_mp3(root / "d.mp3", _tone(48000, 0.7, 2), 48000)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    soundfile.write(root / "silent.wav", np.zeros((800, 1), np.float32), 8000)
    (root / "notes.txt").write_text("not audio")
    return root


def test_convert_folder(corpus, tmp_path):
    logged = []
    res = audio_folder.convert_folder(str(corpus), str(tmp_path / "rec"), sample_rate=8000,
                                      max_seconds=0.5, log=logged.append)
    assert len(res["errors"]) == 2 and len(logged) == 2
    assert any("broken.wav" in e for e in res["errors"])
    assert any("silent.wav" in e and "silent" in e for e in res["errors"])
    src = records.RecordSource(res["manifest"])
    ex = [records.decode_example(src[i]) for i in range(len(src))]
    ids = sorted(e["id"] for e in ex)
    # a.wav (1 s) → two 0.5-s records, b.flac (0.5 s) one; ids are relative paths
    assert ids == ["c#0", "d#0", "d#1", "spk1/a#0", "spk1/a#1", "spk1/b"]   # short tails dropped
    for e in ex:
        assert e["sample_rate"] == 8000 and e["audio"].shape[1] == 1
        assert e["video"] is None and 0 < len(e["audio"]) <= 4000
        assert 0.05 < np.abs(e["audio"]).max() <= 1.0
    by_id = {e["id"]: e for e in ex}
    a0 = by_id["spk1/a#0"]["audio"][:, 0]
    np.testing.assert_allclose(a0[100:3900], _tone(8000, 0.5, 1)[100:3900, 0], atol=0.02)


def test_convert_file_is_pure_and_reports_errors(corpus):
    path, recs, err = audio_folder.convert_file((str(corpus / "broken.wav"), str(corpus), 8000,
                                                 1, 0.0))
    assert recs is None and err.startswith("broken.wav:")
    path, recs, err = audio_folder.convert_file((str(corpus / "d.mp3"), str(corpus), 8000, 2,
                                                 0.0))
    assert err is None and len(recs) == 1
    assert records.decode_example(recs[0])["audio"].shape[1] == 2


def test_cli_errors(tmp_path, capsys):
    assert audio_folder.main(["--in", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert audio_folder.main(["--in", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no audio files" in capsys.readouterr().err
