"""ASMP's spectrogram front end (spec/asmp.md §2): STFT, log-like frequency warp, masks, inverse.

Paper numbers: n_fft = win = 1022 (periodic Hann), hop 256, centred with reflect padding, so
65 535 samples → 256 frames × 512 bins; the 512 rows are resampled to 256 with the warp
y' = (21^((y+1)/2) − 11)/10 (bilinear, normalised [−1, 1] coordinates, corners aligned) and
unwarped with y' = 2·log(10y + 11)/log 21 − 1. Both resamplings are fixed (rows_out × rows_in)
interpolation matrices, so they are one matmul on any backend and differentiable.

Layout: network images are (…, freq, time) = (…, H, W) with H = warped rows (low frequencies
first) and W = frames; the STFT itself (avjax.spectral) gives (…, frames, bins).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np

from avjax import spectral


@dataclasses.dataclass(frozen=True)
class FrontEnd:
    n_fft: int = 1022
    hop: int = 256
    warp_rows: int = 256

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop


def _bilinear_matrix(coords: np.ndarray, n_in: int) -> np.ndarray:
    """(len(coords), n_in) linear-interpolation rows for normalised coordinates in [−1, 1]
    (align_corners: −1 → row 0, 1 → row n_in − 1); outside rows read 0 (grid_sample zeros)."""
    pos = (coords + 1) / 2 * (n_in - 1)
    lo = np.floor(pos).astype(int)
    frac = pos - lo
    m = np.zeros((len(coords), n_in), np.float64)
    for i, (l, f) in enumerate(zip(lo, frac)):
        if 0 <= l < n_in:
            m[i, l] += 1 - f
        if 0 <= l + 1 < n_in:
            m[i, l + 1] += f
    return m


@functools.lru_cache(maxsize=None)
def warp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear rows (n_in) → warped rows (n_out): y' = (21^((y+1)/2) − 11)/10."""
    y = np.linspace(-1, 1, n_out)
    return _bilinear_matrix((21.0 ** ((y + 1) / 2) - 11) / 10, n_in).astype(np.float32)


@functools.lru_cache(maxsize=None)
def unwarp_matrix(n_warped: int, n_out: int) -> np.ndarray:
    """Warped rows (n_warped) → linear rows (n_out): y' = 2·log(10y + 11)/log 21 − 1."""
    y = np.linspace(-1, 1, n_out)
    return _bilinear_matrix(2 * np.log(10 * y + 11) / math.log(21) - 1,
                            n_warped).astype(np.float32)


def stft(fe: FrontEnd, wave):
    """(…, N) → complex (…, bins, frames) (frequency first, the image layout)."""
    s = spectral.stft(wave, fe.n_fft, fe.hop, center=True, pad_mode="reflect")
    return jnp.swapaxes(s, -1, -2)


def istft(fe: FrontEnd, spec, length: int):
    """complex (…, bins, frames) → (…, length)."""
    return spectral.istft(jnp.swapaxes(spec, -1, -2), fe.n_fft, fe.hop, center=True,
                          length=length)


def warp(fe: FrontEnd, mag):
    """(…, bins, frames) → (…, warp_rows, frames)."""
    m = jnp.asarray(warp_matrix(mag.shape[-2], fe.warp_rows))
    return jnp.einsum("ob,...bt->...ot", m, mag)


def unwarp(fe: FrontEnd, x):
    """(…, warp_rows, frames) → (…, bins, frames)."""
    m = jnp.asarray(unwarp_matrix(x.shape[-2], fe.bins))
    return jnp.einsum("ow,...wt->...ot", m, x)


def log_mag(x):
    return jnp.log(x + 1e-10)


def net_input(fe: FrontEnd, mix_spec):
    """Log warped mixture magnitude (…, warp_rows, frames)."""
    return log_mag(warp(fe, jnp.abs(mix_spec)))


def ratio_mask(fe: FrontEnd, src_spec, mix_spec):
    """Warped |S_obj| / warped |S_mix|, clipped to [0, 5] (the mask target)."""
    return jnp.clip(warp(fe, jnp.abs(src_spec)) / (warp(fe, jnp.abs(mix_spec)) + 1e-10), 0.0, 5.0)


def reconstruct(fe: FrontEnd, warped_mask, mix_spec, length: int):
    """Unwarp the mask, × the linear mixture magnitude, mixture phase, inverse STFT, clip ±1."""
    mask = unwarp(fe, warped_mask)
    return jnp.clip(istft(fe, mask * mix_spec, length), -1.0, 1.0)
