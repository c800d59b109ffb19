"""avjax.spectral against librosa / numpy references."""
import math

import librosa
import numpy as np
import pytest
import scipy.signal

from avjax import spectral as S

RNG = np.random.default_rng(0)
X = (0.3 * RNG.standard_normal((2, 5000))).astype(np.float32)

CASES = [(1022, 256, None, True),      # ASMP
         (1022, 256, None, False),
         (2048, 336, 1344, False),     # win_length < n_fft: centred zero-padded window
         (512, 128, 400, True),
         (64, 16, None, True)]


def _stable(n_fft, hop, win, n_frames, center, length):
    """Samples where the summed squared window is not vanishing (the inverse is ill-conditioned
    where it is: there librosa and we only agree to float32 noise amplified by 1/wss)."""
    wss = librosa.filters.window_sumsquare(window="hann", n_frames=n_frames, hop_length=hop,
                                           win_length=win, n_fft=n_fft)
    start = n_fft // 2 if center else 0
    wss = librosa.util.fix_length(wss[start:], size=length)
    return wss > 1e-3 * wss.max()


@pytest.mark.parametrize("n_fft,hop,win,center", CASES)
def test_stft_istft_match_librosa(n_fft, hop, win, center):
    ref = librosa.stft(X, n_fft=n_fft, hop_length=hop, win_length=win, center=center,
                       pad_mode="reflect")
    got = np.asarray(S.stft(X, n_fft, hop, win, center=center))
    assert got.shape == np.swapaxes(ref, -1, -2).shape
    np.testing.assert_allclose(got, np.swapaxes(ref, -1, -2), atol=1e-4 * np.abs(ref).max())
    for length in (None, 4000, 6000):
        yr = librosa.istft(ref, n_fft=n_fft, hop_length=hop, win_length=win, center=center,
                           length=length)
        yg = np.asarray(S.istft(got, n_fft, hop, win, center=center, length=length))
        assert yg.shape == yr.shape
        ok = _stable(n_fft, hop, win, ref.shape[-1], center, yr.shape[-1])
        np.testing.assert_allclose(yg[:, ok], yr[:, ok], atol=1e-4)


def test_center_constant_padding_matches_librosa():
    ref = librosa.stft(X[0], n_fft=256, hop_length=64, center=True, pad_mode="constant")
    got = np.asarray(S.stft(X[0], 256, 64, center=True, pad_mode="constant"))
    np.testing.assert_allclose(got, ref.T, atol=1e-4 * np.abs(ref).max())


def test_frame_stft_is_tf_style_and_inverts():
    w = scipy.signal.get_window("hann", 1344, fftbins=True)
    n = 1 + (5000 - 1344) // 336
    frames = np.stack([X[:, i * 336:i * 336 + 1344] * w for i in range(n)], axis=1)
    ref = np.fft.rfft(frames, n=2048, axis=-1)
    spec = S.frame_stft(X, 1344, 336, 2048)
    np.testing.assert_allclose(np.asarray(spec), ref, atol=1e-4 * np.abs(ref).max())
    y = np.asarray(S.frame_istft(spec, 1344, 336, 2048, length=5000))
    covered = 1344 + 336 * (n - 1)
    assert y.shape == (2, 5000) and not y[:, covered:].any()
    m = 1344 - 336                 # the interior: every sample under all its overlapping frames
    np.testing.assert_allclose(y[:, m:covered - m], X[:, m:covered - m], atol=1e-4)
    # the ends fade out (TF's inverse_stft) instead of dividing by a vanishing window sum: a
    # perturbed spectrogram gives a bounded error everywhere
    noisy = np.asarray(S.frame_istft(spec * 1.1, 1344, 336, 2048, length=5000))
    assert np.abs(noisy - y).max() < 0.2 * np.abs(X).max()


def test_paper_front_end_shapes_and_normalisation():
    p = S.SpecParams()
    assert p.frames(44144) == 128 and p.bins == 1024
    wav = (0.1 * RNG.standard_normal(44144)).astype(np.float32)
    feat, spec = S.analyze(wav, p)
    assert feat.shape == (128, 1024, 2) and spec.shape == (128, 1025)
    assert float(np.abs(feat).max()) <= 1.0
    db = 20 * np.log10(np.maximum(1e-5, np.abs(np.asarray(spec)[..., :1024])))
    np.testing.assert_allclose(np.asarray(feat[..., 0]), (db + 100) / 180 * 2 - 1, atol=1e-4)
    np.testing.assert_allclose(np.asarray(feat[..., 1]),
                               np.angle(np.asarray(spec)[..., :1024]) / math.pi, atol=1e-5)
    assert float(S.normalize_db(np.float32(-100.0))) == -1.0
    assert float(S.normalize_db(np.float32(80.0))) == 1.0
    # inverse: Nyquist bin restored at -100 dB with the mixture's phase
    y = np.asarray(S.synthesize(feat[..., 0], feat[..., 1], p, length=44144,
                                last_bin_phase=np.angle(spec[..., -1])))
    covered = p.samples_for_frames(128)
    m = p.frame_length - p.hop
    err = np.abs(y[m:covered - m] - wav[m:covered - m]).max()
    assert err < 0.02 * np.abs(wav).max()        # only the Nyquist bin differs
