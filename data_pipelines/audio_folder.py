"""`python -m data_pipelines.audio_folder --in DIR --out RECORDS [--sample_rate 21000]
[--channels 1] [--split train] [--name audio] [--max_seconds S] [--workers N]`:
a folder of audio-only files → avjax records, e.g. a speech corpus for the blind (unet_pit)
separator (configs/sep_unet_pit.py).

Reads wav/flac/ogg/mp3/m4a/aac/opus (soundfile first, PyAV for what it cannot read), any rate
and channel count; resamples to --sample_rate (soxr) and converts channels (mono: the channel
mean; stereo: the first two channels, or mono duplicated). Long files are cut into records of
at most --max_seconds. The per-file step ``convert_file`` is a pure function (path in →
serialized records out, or an error string), so it runs in a process pool here and would run
under Apache Beam unchanged; unreadable files are reported one line each and skipped.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np

from data_pipelines import records

EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".aif", ".aiff")


def read_audio_file(path: str) -> tuple[np.ndarray, int]:
    """(float32 (N, C) in [-1, 1], sample rate) of an audio file; ValueError if unreadable."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        import soundfile
        audio, sr = soundfile.read(path, dtype="float32", always_2d=True)
        return np.asarray(audio), int(sr)
    except Exception:   # formats libsndfile lacks (mp3 on old builds, m4a, ...) → PyAV
        pass
    import av
    chunks, sr = [], None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise ValueError(f"no audio stream in {path}")
            stream = container.streams.audio[0]
            sr = int(stream.rate or 0)
            layout = {1: "mono", 2: "stereo"}.get(len(stream.layout.channels),
                                                  f"{len(stream.layout.channels)}c")
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot decode {path}: {e.strerror or e}") from None
    if not chunks or not sr:
        raise ValueError(f"no decodable audio in {path}")
    return np.concatenate(chunks, axis=1).T.astype(np.float32), sr


def convert_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return audio.mean(axis=1, keepdims=True)
    if audio.shape[1] >= channels:
        return audio[:, :channels]
    return np.repeat(audio.mean(axis=1, keepdims=True), channels, axis=1)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return audio
    import soxr
    return np.asarray(soxr.resample(audio, rate_in, rate_out), np.float32)


def convert_file(job) -> tuple[str, list[bytes] | None, str | None]:
    """(path, records or None, error or None) for one file. Pure: no shared state."""
    path, root, sample_rate, channels, max_seconds = job
    rel = os.path.relpath(path, root)
    try:
        audio, sr = read_audio_file(path)
        if audio.size == 0 or len(audio) < 2:
            raise ValueError("empty audio")
        if not np.all(np.isfinite(audio)):
            raise ValueError("audio contains NaN or inf")
        audio = resample(convert_channels(audio, channels), sr, sample_rate)
        peak = float(np.abs(audio).max())
        if peak == 0.0:
            raise ValueError("silent audio")
        if peak > 1.0:                                     # resampling overshoot of clipped input
            audio = audio / peak
        n = len(audio)
        seg = n if not max_seconds else int(max_seconds * sample_rate)
        clip_id = os.path.splitext(rel)[0].replace(os.sep, "/")
        out = []
        for k, s in enumerate(range(0, n, seg)):
            piece = audio[s:s + seg]
            if k and len(piece) < 0.25 * seg:             # drop a short tail
                break
            out.append(records.encode_example({
                "id": clip_id if seg >= n else f"{clip_id}#{k}", "audio": piece,
                "sample_rate": sample_rate}))
        return path, out, None
    except (ValueError, OSError, RuntimeError) as e:
        return path, None, f"{rel}: {e}"


def find_audio_files(root: str) -> list[str]:
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.join(d, f) for f in files if f.lower().endswith(EXTENSIONS)]
    return sorted(found)


def convert_folder(in_dir: str, out_dir: str, *, sample_rate: int = 21000, channels: int = 1,
                   split: str = "train", name: str = "audio", max_seconds: float = 0.0,
                   workers: int = 1, log=print) -> dict:
    """Converts every audio file under in_dir; returns {"manifest", "records", "errors"}."""
    if not os.path.isdir(in_dir):
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    files = find_audio_files(in_dir)
    if not files:
        raise ValueError(f"no audio files ({', '.join(EXTENSIONS)}) under {in_dir}")
    jobs = [(f, in_dir, int(sample_rate), int(channels), float(max_seconds)) for f in files]
    errors, count = [], 0
    metadata = {"sample_rate": int(sample_rate), "num_channels": int(channels),
                "converter": "data_pipelines.audio_folder"}
    with records.ShardWriter(out_dir, name, split, metadata=metadata,
                             sources=[os.path.abspath(in_dir)]) as writer:
        for _, recs, err in records.parallel_encode(convert_file, jobs, workers, chunksize=4):
            if err:                      # streamed: a large corpus never sits in memory
                errors.append(err)
                log(f"skipped {err}")
                continue
            for r in recs:
                writer.write(r)
                count += 1
        if not count:                    # leaving the block by an exception removes the shards
            raise ValueError(f"none of the {len(files)} files under {in_dir} could be "
                             f"converted")
    return {"manifest": records.manifest_path(out_dir, name, split), "records": count,
            "errors": errors}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_pipelines.audio_folder",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--in", dest="in_dir", required=True, help="folder of audio files")
    p.add_argument("--out", required=True, help="output records folder")
    p.add_argument("--sample_rate", type=int, default=21000)
    p.add_argument("--channels", type=int, default=1, choices=(1, 2))
    p.add_argument("--split", default="train")
    p.add_argument("--name", default="audio")
    p.add_argument("--max_seconds", type=float, default=0.0,
                   help="cut long files into records of at most this length (0: whole files)")
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    if a.sample_rate < 1000:
        p.error(f"--sample_rate must be >= 1000, got {a.sample_rate}")
    start = time.time()
    try:
        res = convert_folder(a.in_dir, a.out, sample_rate=a.sample_rate, channels=a.channels,
                             split=a.split, name=a.name, max_seconds=a.max_seconds,
                             workers=a.workers, log=lambda m: print(m, file=sys.stderr))
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{res['records']} records in {res['manifest']} ({len(res['errors'])} files skipped, "
          f"{time.time() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
