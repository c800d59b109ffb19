"""Separation examples (multisensory §2.4): cut a window from each record, then mix.

Per clip (``cut_clip``, pure numpy, runs in the grain map): a window of ``num_frames`` frames
(random start; in training also a random crop and a horizontal flip whose stereo channels are
not swapped, as in the paper; held-out: centre crop) and its audio: ``on`` = the clip's on-screen
sound (the sum of its on-screen stems when the record has stems, else its whole audio) and
``off`` = its own off-screen stems (zeros if none). Audio-only records work for unet_pit.

Mixing (after batching, ``mix_full`` / ``mix_pit``):
- every clip's audio (on + off) is RMS-normalised per channel to 0.1 (gain g);
- full: for example i of a batch of B, fg = g_i·on_i, bg = g_j·(on_j + off_j) + g_i·off_i with
  j = (i + B/2) mod B (the off-screen sound is another clip's audio, so every clip is the
  on-screen target once; a clip's own off-screen stems are off-screen too), mix = fg + bg;
- unet_pit: 2M clips give M mixtures, source 0 from the first half, source 1 from the second.
Outputs: "mix" (B, N, C) float32 (the stereo mixture the shift net hears; the U-Net takes its
channel mean), "sources" (B, 2, N) mono targets ([on-screen, off-screen] for full), "video"
(B, T, H, W, 3) uint8 for full.

Held-out mixtures do not depend on the batch: ``PairedSource`` pairs record g with record
(g + n//2) mod n and ``mix_pair`` mixes the two as a batch of two, so every evaluation (any batch
size, any number of processes) sees the same mixtures.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines import records

RMS_TARGET = 0.1


@dataclasses.dataclass(frozen=True)
class SepSpec:
    variant: str              # "full" | "unet_pit"
    num_frames: int           # video frames of a window (full) / window length at fps
    fps: float
    sample_rate: int
    num_samples: int          # audio samples of a window
    num_channels: int = 2
    crop_size: int = 224
    random_flip: bool = True

    @property
    def needs_video(self) -> bool:
        return self.variant == "full"


def to_channels(a: np.ndarray, c: int) -> np.ndarray:
    """(N, C') → (N, c): same, duplicated mono, or the channel mean (then duplicated)."""
    if a.shape[1] == c:
        return a
    mono = a.mean(axis=1, keepdims=True)
    return np.repeat(mono, c, axis=1)


def _check(header: dict, spec: SepSpec) -> None:
    if header["sample_rate"] != spec.sample_rate:
        raise ValueError(f"record {header['id']!r} has {header['sample_rate']} Hz audio but the "
                         f"config expects {spec.sample_rate} Hz; convert the data at that rate "
                         f"or set --config.data.sample_rate={header['sample_rate']}")
    if spec.needs_video:
        if header["video_shape"][0] == 0:
            raise ValueError(f"record {header['id']!r} has no video; the full (on/off-screen) "
                             f"model needs frames (use variant unet_pit for audio-only data)")
        if abs(header["fps"] - spec.fps) > 1e-3:
            raise ValueError(f"record {header['id']!r} is at {header['fps']:.3f} fps but the "
                             f"config expects {spec.fps:.3f}; set --config.data.fps")


def _cut_audio(a: np.ndarray, start: int, n: int) -> np.ndarray:
    a = a[start:start + n]
    if len(a) < n:
        a = np.pad(a, ((0, n - len(a)), (0, 0)))
    return a


def cut_clip(data: bytes, spec: SepSpec, rng: np.random.Generator, train: bool) -> dict:
    """One record → {"on": (N, C), "off": (N, C)} float32 (+ "video" (T, S, S, 3) for full)."""
    header = records.decode_example(data, decode_video=False, decode_sources=spec.needs_video)
    _check(header, spec)
    audio, n = header["audio"], spec.num_samples
    out = {}
    if spec.needs_video:
        n_rec = header["video_shape"][0]
        f0 = int(rng.integers(0, max(n_rec - spec.num_frames, 0) + 1))
        idx = np.minimum(f0 + np.arange(spec.num_frames), n_rec - 1)
        video = records.decode_frames(header["encoded_frames"], header["video_encoding"],
                                      header["video_shape"], idx)
        h, w = video.shape[1:3]
        s = spec.crop_size
        if h < s or w < s:
            raise ValueError(f"record {header['id']!r}: frames {h}×{w} are smaller than the "
                             f"{s}-pixel crop")
        if train:
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        else:
            y, x = (h - s) // 2, (w - s) // 2
        video = video[:, y:y + s, x:x + s]
        if train and spec.random_flip and rng.random() < 0.5:
            video = video[:, :, ::-1]      # stereo channels are NOT swapped (as in the paper)
        out["video"] = np.ascontiguousarray(video)
        start = int(round(f0 * spec.sample_rate / spec.fps))
    else:
        start = int(rng.integers(0, max(len(audio) - n, 0) + 1))
    if header["sources"] is not None and spec.needs_video:
        flags = header["sources_onscreen"]
        stems = header["sources"]
        on = stems[flags].sum(0) if flags.any() else np.zeros_like(audio)
        off = stems[~flags].sum(0) if (~flags).any() else np.zeros_like(audio)
    else:
        on, off = audio, np.zeros_like(audio)
    c = spec.num_channels
    out["on"] = to_channels(_cut_audio(on, start, n), c).astype(np.float32)
    out["off"] = to_channels(_cut_audio(off, start, n), c).astype(np.float32)
    return out


def rms_gain(x: np.ndarray, target: float = RMS_TARGET, floor: float = 1e-3) -> np.ndarray:
    """Per-example, per-channel gains (…, 1, C) bringing x (…, N, C) to RMS ``target``; a
    (near-)silent channel is scaled as if its RMS were ``floor``."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-2, keepdims=True))
    return (target / np.maximum(rms, floor)).astype(np.float32)


def mix_full(batch: dict) -> dict:
    on, off = batch["on"], batch["off"]
    b = on.shape[0]
    if b % 2:
        raise ValueError(f"the full model mixes example i with example i + B/2: the per-process "
                         f"batch must be even, got {b}")
    g = rms_gain(on + off)
    clip = g * (on + off)
    partner = (np.arange(b) + b // 2) % b
    fg = g * on
    bg = clip[partner] + g * off
    out = {k: v for k, v in batch.items() if k not in ("on", "off")}
    out["mix"] = (fg + bg).astype(np.float32)
    out["sources"] = np.stack([fg.mean(-1), bg.mean(-1)], axis=1).astype(np.float32)
    return out


def mix_pit(batch: dict) -> dict:
    a = batch["on"] + batch["off"]
    b = a.shape[0]
    if b % 2:
        raise ValueError(f"unet_pit mixes the two halves of a batch; got an odd batch of {b}")
    s = rms_gain(a) * a
    s0, s1 = s[: b // 2], s[b // 2:]
    return {"mix": (s0 + s1).astype(np.float32),
            "sources": np.stack([s0.mean(-1), s1.mean(-1)], axis=1).astype(np.float32)}


def mix_batch(batch: dict, variant: str) -> dict:
    return mix_full(batch) if variant == "full" else mix_pit(batch)


class PairedSource:
    """Held-out pairs: item g = (record g, record (g + n//2) mod n); len = n (n >= 2)."""

    def __init__(self, source):
        if len(source) < 2:
            raise ValueError(f"separation needs at least 2 held-out records to mix, got "
                             f"{len(source)}")
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, g):
        n = len(self.source)
        return self.source[g], self.source[(g + n // 2) % n]


def mix_pair(pair, rng: np.random.Generator, *, spec: SepSpec) -> dict:
    """A held-out mixture from a PairedSource item (deterministic given rng)."""
    r0, r1 = (np.random.default_rng(int(s)) for s in rng.integers(0, 2 ** 63, size=2))
    clips = [cut_clip(pair[0], spec, r0, train=False), cut_clip(pair[1], spec, r1, train=False)]
    batch = {k: np.stack([c[k] for c in clips]) for k in clips[0]}
    mixed = mix_batch(batch, spec.variant)
    return {k: v[0] for k, v in mixed.items()}
