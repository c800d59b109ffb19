"""Short-time Fourier analysis/synthesis in JAX, and the multisensory separation front end.

Generic, librosa-compatible:
  ``stft(x, n_fft, hop, win_length=None, center=False, pad_mode="reflect")`` → complex
  (..., frames, n_fft//2+1). Frames are ``n_fft`` samples long; the periodic Hann window of
  ``win_length`` samples is zero-padded to ``n_fft`` centred (librosa's ``pad_center``).
  ``center=True`` pads ``n_fft//2`` samples on both sides (``pad_mode`` reflect|constant|edge).
  ``istft(spec, n_fft, hop, win_length=None, center=False, length=None)``: windowed overlap-add
  divided by the summed squared window (librosa.istft), trimmed/padded like librosa.
  Note the layout: librosa returns (..., bins, frames); avjax keeps time before frequency
  (..., frames, bins), the layout the U-Nets read.

Multisensory (spec/multisensory.md §2.1), TensorFlow-``tf.signal.stft``-style framing: frames of
``frame_length`` samples (1344), periodic Hann of that length, zero-padded at the end to
``fft_length`` (2048), hop 336, no end padding → 44 144 samples give 128 frames × 1025 bins.
``SpecParams`` holds those numbers (a CPU-sized variant just changes them);
``analyze(wav, p)`` → (net input (..., T, F-1, 2) = [dB normalised to [-1, 1], phase/π] with the
Nyquist bin dropped, complex spectrogram); ``synthesize(norm_db, phase_over_pi, p, length,
last_bin=...)`` inverts it (10^(dB/20), predicted or given phase, overlap-add).

Everything works on numpy or JAX arrays and is jit-friendly (all shapes static).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np


def hann(win_length: int) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window('hann', N, fftbins=True))."""
    n = np.arange(win_length)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)).astype(np.float32)


def _padded_window(n_fft: int, win_length: int | None) -> np.ndarray:
    win_length = n_fft if win_length is None else int(win_length)
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} > n_fft {n_fft}")
    w = np.zeros(n_fft, np.float32)
    lpad = (n_fft - win_length) // 2
    w[lpad:lpad + win_length] = hann(win_length)
    return w


def _frame(x, frame_length: int, hop: int):
    """(..., N) → (..., frames, frame_length), frames = 1 + (N - frame_length) // hop."""
    n = x.shape[-1]
    if n < frame_length:
        raise ValueError(f"signal of {n} samples is shorter than one frame ({frame_length})")
    frames = 1 + (n - frame_length) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(frame_length)[None, :]
    return x[..., idx]


def _overlap_add(frames, hop: int):
    """(..., n, L) → (..., L + hop·(n-1)): sum of frames placed every ``hop`` samples.

    Done as ceil(L/hop) shifted block additions (static, cheap), not a scatter.
    """
    n, length = frames.shape[-2], frames.shape[-1]
    k = -(-length // hop)
    pad = k * hop - length
    if pad:
        frames = jnp.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(0, pad)])
    blocks = frames.reshape(frames.shape[:-1] + (k, hop))           # (..., n, k, hop)
    out = jnp.zeros(frames.shape[:-2] + (n + k - 1, hop), frames.dtype)
    for j in range(k):
        out = out.at[..., j:j + n, :].add(blocks[..., :, j, :])
    out = out.reshape(frames.shape[:-2] + ((n + k - 1) * hop,))
    return out[..., :length + hop * (n - 1)]


def _window_sumsquare(window: np.ndarray, n: int, hop: int) -> np.ndarray:
    length = len(window) + hop * (n - 1)
    out = np.zeros(length, np.float64)
    w2 = window.astype(np.float64) ** 2
    for i in range(n):
        out[i * hop:i * hop + len(window)] += w2
    return out


def _safe_divide_by(y, wss: np.ndarray):
    tiny = np.finfo(np.float32).tiny
    denom = np.where(wss > tiny, wss, 1.0).astype(np.float32)
    return y / denom


def stft(x, n_fft: int, hop: int, win_length: int | None = None, center: bool = False,
         pad_mode: str = "reflect"):
    """librosa.stft(x, n_fft, hop, win_length, window='hann', center, pad_mode), transposed to
    (..., frames, n_fft//2 + 1)."""
    x = jnp.asarray(x, jnp.float32)
    if center:
        p = n_fft // 2
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(p, p)], mode=pad_mode)
    frames = _frame(x, n_fft, hop) * _padded_window(n_fft, win_length)
    return jnp.fft.rfft(frames, n=n_fft, axis=-1)


def istft(spec, n_fft: int, hop: int, win_length: int | None = None, center: bool = False,
          length: int | None = None):
    """librosa.istft for a (..., frames, n_fft//2 + 1) spectrogram."""
    window = _padded_window(n_fft, win_length)
    frames = jnp.fft.irfft(jnp.asarray(spec), n=n_fft, axis=-1) * window
    n = frames.shape[-2]
    y = _safe_divide_by(_overlap_add(frames, hop), _window_sumsquare(window, n, hop))
    start = n_fft // 2 if center else 0
    if length is None:
        end = y.shape[-1] - start
    else:
        end = start + int(length)
    y = y[..., start:end]
    if length is not None and y.shape[-1] < length:
        y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y


def istft_coverage(n_fft: int, hop: int, length: int, win_length: int | None = None,
                   center: bool = False) -> np.ndarray:
    """(length,) the summed squared window ``istft`` divides sample t of a ``length``-sample
    signal's spectrogram by (frames = 1 + length // hop when centred, as ``stft`` gives).

    Where it is small (the last ~n_fft/2 samples of a centred signal, covered by one frame's
    tail) istft multiplies any change made to the spectrogram by its inverse; overlap-adding
    several windows' inverses weighted by it (Σ coverage·estimate / Σ coverage) is the
    least-squares inverse of all their frames together, with no such amplification."""
    window = _padded_window(n_fft, win_length)
    frames = 1 + length // hop if center else 1 + (length - n_fft) // hop
    wss = _window_sumsquare(window, frames, hop)
    start = n_fft // 2 if center else 0
    out = np.zeros(length, np.float64)
    seg = wss[start:start + length]
    out[:len(seg)] = seg
    return out.astype(np.float32)


def frame_stft(x, frame_length: int, hop: int, fft_length: int):
    """tf.signal.stft(x, frame_length, hop, fft_length) (periodic Hann, no end padding):
    each frame of ``frame_length`` samples is windowed, then zero-padded at its end."""
    x = jnp.asarray(x, jnp.float32)
    frames = _frame(x, frame_length, hop) * hann(frame_length)
    return jnp.fft.rfft(frames, n=fft_length, axis=-1)


def _steady_window_sumsquare(window: np.ndarray, hop: int, length: int) -> np.ndarray:
    """Σ_k w²(n mod hop + k·hop): the summed squared window of the interior, extended to every
    sample (tf.signal.inverse_stft_window_fn's denominator)."""
    w2 = window.astype(np.float64) ** 2
    period = np.array([w2[r::hop].sum() for r in range(hop)])
    return period[np.arange(length) % hop]


def frame_istft(spec, frame_length: int, hop: int, fft_length: int, length: int | None = None):
    """Inverse of ``frame_stft`` (tf.signal.inverse_stft with inverse_stft_window_fn): irfft,
    keep the first ``frame_length`` samples, window, overlap-add, divide by the interior's summed
    squared window; zero-pad/trim to ``length``.

    Unlike librosa's per-sample normalisation (``istft``), the first and last
    frame_length - hop samples fade out instead of being divided by a vanishing window sum,
    which would multiply any error in a modified spectrogram there by up to ~1e8 (the
    separation outputs are modified spectrograms). The interior is the exact inverse."""
    window = hann(frame_length)
    frames = jnp.fft.irfft(jnp.asarray(spec), n=fft_length, axis=-1)[..., :frame_length] * window
    n = frames.shape[-2]
    total = frame_length + hop * (n - 1)
    y = _safe_divide_by(_overlap_add(frames, hop), _steady_window_sumsquare(window, hop, total))
    if length is not None:
        y = y[..., :length]
        if y.shape[-1] < length:
            y = jnp.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, length - y.shape[-1])])
    return y


# ---------------------------------------------------------------- multisensory front end (§2.1)

@dataclasses.dataclass(frozen=True)
class SpecParams:
    """Separation front-end numbers. Defaults: the paper's (21 kHz, 64 ms / 16 ms, FFT 2048)."""
    frame_length: int = 1344
    hop: int = 336
    fft_length: int = 2048
    min_db: float = -100.0
    max_db: float = 80.0

    @property
    def bins(self) -> int:
        """Bins the network sees (Nyquist dropped)."""
        return self.fft_length // 2

    def frames(self, samples: int) -> int:
        return 1 + (samples - self.frame_length) // self.hop

    def samples_for_frames(self, frames: int) -> int:
        """Fewest samples giving ``frames`` STFT frames."""
        return self.frame_length + self.hop * (frames - 1)

    @classmethod
    def from_config(cls, c) -> "SpecParams":
        return cls(frame_length=int(c.frame_length), hop=int(c.hop),
                   fft_length=int(c.fft_length), min_db=float(c.get("min_db", -100.0)),
                   max_db=float(c.get("max_db", 80.0)))


def db_from_amp(a):
    return 20.0 * jnp.log10(jnp.maximum(1e-5, a))


def amp_from_db(db):
    return jnp.power(10.0, db / 20.0)


def normalize_db(db, p: SpecParams = SpecParams()):
    """[min_db, max_db] → [-1, 1] (clipped)."""
    return jnp.clip(2.0 * (db - p.min_db) / (p.max_db - p.min_db) - 1.0, -1.0, 1.0)


def unnormalize_db(y, p: SpecParams = SpecParams()):
    return 0.5 * (p.max_db - p.min_db) * (y + 1.0) + p.min_db


def analyze(wav, p: SpecParams = SpecParams()):
    """Mono waveform(s) (..., N) → (net input (..., T, F, 2) with F = fft_length//2, complex
    spectrogram (..., T, F+1)). Channel 0: normalised dB, channel 1: phase/π."""
    spec = frame_stft(wav, p.frame_length, p.hop, p.fft_length)
    feat = jnp.stack([normalize_db(db_from_amp(jnp.abs(spec)), p),
                      jnp.angle(spec) / math.pi], axis=-1)
    return feat[..., :-1, :], spec


def synthesize(norm_db, phase_over_pi, p: SpecParams = SpecParams(), length: int | None = None,
               last_bin_phase=None):
    """Network-space (..., T, F) normalised dB and phase/π → waveform (..., length).

    The dropped Nyquist bin gets min_db (amplitude 1e-5) and ``last_bin_phase`` (radians, e.g. the
    mixture's; zero if None)."""
    mag = amp_from_db(unnormalize_db(norm_db, p))
    phase = phase_over_pi * math.pi
    last = jnp.zeros(mag.shape[:-1] + (1,), mag.dtype)
    last_mag = last + amp_from_db(p.min_db)
    last_phase = last if last_bin_phase is None else jnp.asarray(last_bin_phase)[..., None]
    mag = jnp.concatenate([mag, last_mag], axis=-1)
    phase = jnp.concatenate([phase, last_phase.astype(phase.dtype)], axis=-1)
    spec = mag * jnp.exp(1j * phase)
    return frame_istft(spec, p.frame_length, p.hop, p.fft_length, length=length)
