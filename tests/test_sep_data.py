"""Separation mixtures (spec §2.4) and metrics (SI-SDR, bss_eval vs mir_eval, the evaluator)."""
import warnings

import numpy as np
import pytest

from avjax import sep_metrics
from data_pipelines import records, sep_mix


def _clip(i, n=400, c=2, onscreen=(True, False)):
    rng = np.random.default_rng(i)
    stems = (0.05 * (i + 1) * rng.standard_normal((len(onscreen), n, c))).astype(np.float32)
    return {"id": f"c{i}", "audio": stems.sum(0), "sample_rate": 1000, "sources": stems,
            "sources_onscreen": list(onscreen)}


def test_mix_full_pairs_i_with_i_plus_half_batch():
    rng = np.random.default_rng(0)
    on = rng.standard_normal((4, 300, 2)).astype(np.float32) * np.array([1.0, 3.0], np.float32)
    off = np.zeros_like(on)
    off[1] = 0.5 * rng.standard_normal((300, 2))            # clip 1 has its own off-screen stem
    video = np.arange(4, dtype=np.uint8)[:, None, None, None, None] * np.ones((4, 2, 3, 3, 3),
                                                                              np.uint8)
    out = sep_mix.mix_full({"on": on, "off": off, "video": video})
    assert out["mix"].shape == (4, 300, 2) and out["sources"].shape == (4, 2, 300)
    np.testing.assert_array_equal(out["video"], video)      # example i keeps its frames
    g = sep_mix.rms_gain(on + off)
    clip = g * (on + off)
    # every clip's audio (on + off) has per-channel RMS 0.1
    np.testing.assert_allclose(np.sqrt((clip ** 2).mean(1)), 0.1, rtol=1e-5)
    for i, j in enumerate([2, 3, 0, 1]):                     # partner (i + B/2) mod B
        fg = g[i] * on[i]
        bg = clip[j] + g[i] * off[i]
        np.testing.assert_allclose(out["sources"][i, 0], fg.mean(-1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["sources"][i, 1], bg.mean(-1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["mix"][i], fg + bg, rtol=1e-5, atol=1e-6)
    # mono mixture = sum of the mono targets
    np.testing.assert_allclose(out["mix"].mean(-1), out["sources"].sum(1), atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        sep_mix.mix_full({"on": on[:3], "off": off[:3]})


def test_mix_pit_halves_and_silence():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 200, 1)).astype(np.float32)
    a[5] = 0.0                                               # a silent clip stays silent
    out = sep_mix.mix_pit({"on": a, "off": np.zeros_like(a)})
    assert out["mix"].shape == (3, 200, 1) and out["sources"].shape == (3, 2, 200)
    np.testing.assert_allclose(np.sqrt((out["sources"][:2] ** 2).mean(-1)), 0.1, rtol=1e-5)
    np.testing.assert_allclose(out["sources"][0, 1], 0.1 * a[3, :, 0] / np.sqrt(
        (a[3] ** 2).mean()), rtol=1e-5)
    assert not out["sources"][2, 1].any() and np.all(np.isfinite(out["mix"]))


def test_cut_clip_and_held_out_pairs_are_deterministic():
    spec = sep_mix.SepSpec("full", num_frames=4, fps=10.0, sample_rate=1000, num_samples=400,
                           num_channels=2, crop_size=8)
    clips = []
    for i in range(3):
        c = _clip(i, n=1000)
        c.update(video=np.full((10, 12, 12, 3), 10 * i, np.uint8), fps=10.0,
                 video_encoding="raw")
        clips.append(records.encode_example(c))
    ex = sep_mix.cut_clip(clips[0], spec, np.random.default_rng(0), train=False)
    assert ex["video"].shape == (4, 8, 8, 3) and ex["on"].shape == ex["off"].shape == (400, 2)
    paired = sep_mix.PairedSource(clips)
    assert paired[2] == (clips[2], clips[0])
    a = sep_mix.mix_pair(paired[1], np.random.default_rng([5, 1]), spec=spec)
    b = sep_mix.mix_pair(paired[1], np.random.default_rng([5, 1]), spec=spec)
    np.testing.assert_array_equal(a["mix"], b["mix"])
    assert a["video"][0, 0, 0, 0] == 10                       # clip 1's frames
    # wrong sample rate: one clear message naming the fix
    bad = sep_mix.SepSpec("full", 4, 10.0, 2000, 400, 2, 8)
    with pytest.raises(ValueError, match="sample_rate"):
        sep_mix.cut_clip(clips[0], bad, np.random.default_rng(0), train=True)
    with pytest.raises(ValueError, match="at least 2"):
        sep_mix.PairedSource(clips[:1])


def test_si_sdr_and_bss_eval_match_references():
    import mir_eval
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 4000))
    est = ref + 0.3 * rng.standard_normal((2, 4000)) + 0.2 * ref[::-1]
    # SI-SDR by hand: scaling the estimate changes nothing
    r, e = ref[0] - ref[0].mean(), est[0] - est[0].mean()
    t = (r @ e) / (r @ r) * r
    want = 10 * np.log10((t @ t) / ((e - t) @ (e - t)))
    assert sep_metrics.si_sdr(ref[0], est[0]) == pytest.approx(want, abs=1e-9)
    assert sep_metrics.si_sdr(ref[0], 3 * est[0]) == pytest.approx(want, abs=1e-9)
    sdr, sir, sar = sep_metrics.bss_eval(ref, est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m_sdr, m_sir, m_sar, perm = mir_eval.separation.bss_eval_sources(
            ref, est, compute_permutation=False)
    np.testing.assert_allclose(sdr, m_sdr, atol=1e-3)
    np.testing.assert_allclose(sir, m_sir, atol=1e-3)
    np.testing.assert_allclose(sar, m_sar, atol=1e-3)


def test_evaluator_baselines_permutation_and_report(tmp_path):
    rng = np.random.default_rng(0)
    src = rng.standard_normal((3, 2, 2000)).astype(np.float32)
    mix = src.sum(1)
    noisy = src + 0.1 * rng.standard_normal(src.shape).astype(np.float32)
    outputs = {"mix": mix, "sources": src, "model": noisy[:, ::-1], "irm": src.copy(),
               "weight": np.array([1, 1, 0], np.float32)}
    for m in ("model", "irm", "mix"):
        outputs[f"spec_l1_{m}"] = np.zeros(3, np.float32)
    ev = sep_metrics.SepEvaluator("unet_pit", 1000)
    ev.update(outputs)
    res = ev.result()
    assert res["num_examples"] == 2                     # the weight-0 row is ignored
    assert res["si_sdri"] > 15                           # swapped outputs: PIT fixes the order
    assert res["si_sdri_mix"] == pytest.approx(0.0, abs=1e-9)
    assert res["si_sdr_irm"] > 90                        # exact sources, clamped at 100 dB
    path = ev.write_report(str(tmp_path), 7, res)
    text = open(path).read()
    assert "| mixture as estimate |" in text and "| oracle ideal ratio mask |" in text
    # full: fixed assignment, the same swapped outputs score badly; the blank baseline shows
    full = sep_metrics.SepEvaluator("full", 1000, bss=False)
    outputs.update(blank=noisy, spec_l1_blank=np.zeros(3, np.float32))
    full.update(outputs)
    r = full.result()
    assert r["si_sdri"] < 5 < r["si_sdri_blank"] and "off_si_sdri" in r
    assert "video blanked" in sep_metrics.report_markdown("full", 1, r)
