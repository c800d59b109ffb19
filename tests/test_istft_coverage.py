"""Overlap-adding windowed inverse STFTs of modified spectrograms (ASMP's sliding-window
evaluation): coverage weighting keeps each window's badly covered tail from dominating."""
import numpy as np

from avjax import spectral


def test_coverage_is_what_istft_divides_by():
    n_fft, hop, n = 62, 32, 287      # ASMP local's geometry: 510/256, 32 767 = 127·256 + 255
    rng = np.random.default_rng(0)
    spec = np.asarray(spectral.stft(rng.normal(size=n), n_fft, hop, center=True))
    spec = spec * rng.uniform(0.5, 1.5, size=spec.shape)              # a modified spectrogram
    est = np.asarray(spectral.istft(spec, n_fft, hop, center=True, length=n))
    frames = np.fft.irfft(spec, n=n_fft, axis=-1) * spectral.hann(n_fft)
    ola = np.zeros(n_fft + hop * (len(frames) - 1))
    for i, f in enumerate(frames):
        ola[i * hop:i * hop + n_fft] += f
    raw = ola[n_fft // 2:n_fft // 2 + n]
    cov = spectral.istft_coverage(n_fft, hop, n, center=True)
    assert cov.shape == (n,) and cov.min() > 0
    np.testing.assert_allclose(est * cov, raw, rtol=1e-4, atol=1e-5)
    # The last samples are covered by one frame's tail only: istft amplifies errors there.
    assert cov[-1] < 1e-3 * np.median(cov)


def test_coverage_weighted_overlap_add_is_not_dominated_by_window_tails():
    n_fft, hop, n, step, total = 62, 32, 287, 41, 287 + 41 * 12
    rng = np.random.default_rng(1)
    x = rng.normal(size=total).astype(np.float32)
    cov = spectral.istft_coverage(n_fft, hop, n, center=True)
    acc_c, w_c = np.zeros(total), np.zeros(total)
    acc_n, w_n = np.zeros(total), np.zeros(total)
    for s in range(0, total - n + 1, step):
        spec = np.asarray(spectral.stft(x[s:s + n], n_fft, hop, center=True))
        spec = spec * rng.uniform(0.8, 1.2, size=spec.shape)          # a mask's errors
        est = np.asarray(spectral.istft(spec, n_fft, hop, center=True, length=n))
        acc_c[s:s + n] += est * cov
        w_c[s:s + n] += cov
        acc_n[s:s + n] += est
        w_n[s:s + n] += 1
    inner = slice(n, total - n)                                       # fully overlapped part
    err_c = np.sqrt(np.mean((acc_c[inner] / w_c[inner] - x[inner]) ** 2))
    err_n = np.sqrt(np.mean((acc_n[inner] / w_n[inner] - x[inner]) ** 2))
    assert err_c < 0.2 * np.std(x)
    assert err_c < 0.5 * err_n, (err_c, err_n)
