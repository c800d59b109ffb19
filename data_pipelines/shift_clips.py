"""Synchronisation examples (multisensory §1): a video window, its aligned audio and the same
audio shifted by shift_min_s..shift_max_s in either direction, all cut from one record."""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines import records


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    num_frames: int          # frames given to the net
    frame_step: int          # take every k-th record frame
    crop_size: int
    fps: float
    sample_rate: int
    shift_min_s: float
    shift_max_s: float
    random_flip: bool = True

    @property
    def span(self) -> int:   # record frames one window covers
        return (self.num_frames - 1) * self.frame_step + 1

    @property
    def num_samples(self) -> int:
        return int(round(self.num_frames * self.frame_step * self.sample_rate / self.fps))


def _check_rates(ex: dict, spec: ClipSpec) -> None:
    if ex["sample_rate"] != spec.sample_rate or abs(ex["fps"] - spec.fps) > 1e-3:
        raise ValueError(f"record {ex['id']!r} has {ex['sample_rate']} Hz audio at "
                         f"{ex['fps']:.2f} fps, but the config expects {spec.sample_rate} Hz at "
                         f"{spec.fps:.2f} fps; convert the data or set --config.data.sample_rate"
                         f" / --config.data.fps")


def _window(num_record_frames: int, spec: ClipSpec, rng: np.random.Generator):
    """(video start, shifted-audio start) in record frames."""
    lo = int(np.ceil(spec.shift_min_s * spec.fps))
    hi = int(np.floor(spec.shift_max_s * spec.fps))
    room = num_record_frames - spec.span
    hi = min(hi, room)
    if room < 0 or hi < lo:
        raise ValueError(f"record of {num_record_frames} frames is too short for a "
                         f"{spec.span}-frame window shifted by ≥{spec.shift_min_s} s")
    shift = int(rng.integers(lo, hi + 1))
    f0 = int(rng.integers(0, room - shift + 1))
    if rng.random() < 0.5:     # audio later than the video, or earlier
        return f0, f0 + shift
    return f0 + shift, f0


def make_example(data: bytes, spec: ClipSpec, rng: np.random.Generator, train: bool) -> dict:
    header = records.decode_example(data, decode_video=False, decode_sources=False)
    _check_rates(header, spec)
    n_rec = header["video_shape"][0]
    if n_rec == 0:
        raise ValueError(f"record {header['id']!r} has no video; synchronisation needs frames")
    f_video, f_shift = _window(n_rec, spec, rng)
    idx = f_video + spec.frame_step * np.arange(spec.num_frames)
    video = records.decode_frames(header["encoded_frames"], header["video_encoding"],
                                  header["video_shape"], idx)
    h, w = video.shape[1:3]
    if h < spec.crop_size or w < spec.crop_size:
        raise ValueError(f"record {header['id']!r}: frames {h}×{w} are smaller than the "
                         f"{spec.crop_size}-pixel crop")
    if train:
        y = int(rng.integers(0, h - spec.crop_size + 1))
        x = int(rng.integers(0, w - spec.crop_size + 1))
    else:
        y, x = (h - spec.crop_size) // 2, (w - spec.crop_size) // 2
    video = video[:, y:y + spec.crop_size, x:x + spec.crop_size]
    if train and spec.random_flip and rng.random() < 0.5:
        video = video[:, :, ::-1]    # stereo channels are NOT swapped (as in the paper)
    audio = header["audio"]
    spf = spec.sample_rate / spec.fps
    n = spec.num_samples

    def cut(frame):
        s = int(round(frame * spf))
        a = audio[s:s + n]
        if len(a) < n:
            a = np.pad(a, ((0, n - len(a)), (0, 0)))
        return a

    return {"video": np.ascontiguousarray(video),
            "audio": np.stack([cut(f_video), cut(f_shift)]).astype(np.float32)}
