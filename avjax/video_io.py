"""Read and write video files with PyAV (it carries its own ffmpeg; no system package needed).

Written files are H.264 (yuv420p) + AAC in mp4 with the index up front, which browsers play.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avjax.errors import UserError

# Rates the AAC encoder takes; anything else (e.g. the paper's 21 kHz) is resampled to 48 kHz.
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)


class VideoReadError(UserError):
    """A video file that is missing or that the decoder cannot read."""


def _rate(fps: float) -> Fraction:
    """fps as an exact fraction; 29.97 etc. become the NTSC rates 30000/1001 etc."""
    for base in (24, 30, 60):
        if abs(fps - base * 1000 / 1001) < 1e-3:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths by repeating the last row/column (yuv420p needs even sizes)."""
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def write_video(path, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                sample_rate: int | None = None, crf: int = 18) -> Path:
    """Write uint8 frames (T, H, W, 3) and optional float audio (N, C) in [-1, 1] to an mp4.

    The file appears only once complete (written beside it, then renamed).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"write_video expects uint8 frames (T, H, W, 3), got {frames.dtype} "
                         f"{frames.shape}")
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        audio = audio[:, None] if audio.ndim == 1 else audio
        if audio.ndim != 2 or audio.shape[1] > 8 or sample_rate is None:
            raise ValueError(f"write_video expects audio (N, C) and a sample_rate, got "
                             f"{audio.shape} at {sample_rate}")
    frames = _even(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vs = out.add_stream("libx264", rate=_rate(fps))
            vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            vs.options = {"crf": str(crf), "preset": "medium"}
            sound = None if audio is None else _AudioEncoder(out, audio, int(sample_rate))
            # Audio up to the end of each frame goes in with it, so the file is interleaved.
            ends = np.round(np.arange(1, len(frames) + 1) * (sample_rate or 0) / fps).astype(int)
            for f, end in zip(frames, ends):
                out.mux(vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
                if sound is not None:
                    sound.feed(end)
            out.mux(vs.encode(None))
            if sound is not None:
                sound.finish()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _layout(channels: int) -> str:
    """ffmpeg's default layout name for a channel count ("mono", "stereo", "3c" → 2.1, ...)."""
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


class _AudioEncoder:
    """Feeds float (N, C) audio, in order, through a resampler (rate, format) into AAC."""

    def __init__(self, out, audio: np.ndarray, sample_rate: int):
        self.out, self.audio, self.rate, self.pos = out, np.clip(audio, -1.0, 1.0), sample_rate, 0
        self.layout = _layout(audio.shape[1])
        rate = sample_rate if sample_rate in _AAC_RATES else 48000
        self.stream = out.add_stream("aac", rate=rate, layout=self.layout)
        self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=rate)

    def _encode(self, frames):
        for f in frames:
            self.out.mux(self.stream.encode(f))

    def feed(self, end: int):
        """Encode samples [pos, end)."""
        if end <= self.pos:
            return
        chunk = np.ascontiguousarray(self.audio[self.pos:end].T)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self.pos, Fraction(1, self.rate)
        self.pos += chunk.shape[1]
        self._encode(self.resampler.resample(frame))

    def finish(self):
        """Encode what is left (audio longer than the video too) and flush the encoder."""
        self.feed(len(self.audio))
        self._encode(self.resampler.resample(None))
        self._encode([None])


def read_video(path) -> tuple[np.ndarray, float, np.ndarray | None, int | None]:
    """Decode a file → (uint8 frames (T, H, W, 3), fps, float32 audio (N, C) or None, sample rate).

    Any container/codec PyAV reads, in one demuxing pass; raises VideoReadError naming the file
    if it cannot.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(f"video file not found: {path}")
    frames, chunks = [], []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"no video stream in {path}")
            vs = container.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 0)
            streams = [vs] + list(container.streams.audio[:1])
            resampler = sample_rate = None
            if len(streams) > 1:
                sample_rate = streams[1].rate
                resampler = av.AudioResampler(format="fltp", layout=_layout(
                    len(streams[1].layout.channels)), rate=sample_rate)
            for packet in container.demux(*streams):
                for frame in packet.decode():
                    if packet.stream is vs:
                        frames.append(frame.to_ndarray(format="rgb24"))
                    else:
                        chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            if resampler is not None:
                chunks += [f.to_ndarray() for f in resampler.resample(None)]
    except av.error.FFmpegError as e:
        raise VideoReadError(f"cannot decode {path}: {e.strerror or e}") from None
    if not frames:
        raise VideoReadError(f"no decodable video frames in {path}")
    if fps <= 0:
        raise VideoReadError(f"{path} does not state a frame rate")
    audio = np.concatenate(chunks, axis=1).T.astype(np.float32) if chunks else None
    return np.stack(frames), fps, audio, (int(sample_rate) if audio is not None else None)
