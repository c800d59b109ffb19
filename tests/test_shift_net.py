"""ShiftNet: paper-size shapes (jax.eval_shape only), a tiny network's forward/backward, pooling."""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from avjax.audio import audio_samples_for_frames, mu_law_compress
from avjax.cam import extract_cam
from avjax.models.shift_net import (ShiftNet, fractional_max_pool, fractional_pool_windows,
                                    l2_penalty)

PAPER_PARAMS = 36_044_609


def _shapes(model, video_shape, audio_shape, **kw):
    """(variables, outputs, intermediates) as ShapeDtypeStructs: nothing is computed."""
    v, a = (jax.ShapeDtypeStruct(s, jnp.float32) for s in (video_shape, audio_shape))
    variables = jax.eval_shape(model.init, jax.random.key(0), v, a)
    out, state = jax.eval_shape(
        lambda var, v, a: model.apply(var, v, a, capture_intermediates=True,
                                      mutable=["intermediates"]), variables, v, a)
    return variables, out, state["intermediates"]


def _shape(x):
    return tuple(x.shape)


def test_paper_size_shapes_and_parameter_count():
    variables, out, inter = _shapes(ShiftNet(), (1, 125, 224, 224, 3), (1, 1, 87588, 2))
    assert _shape(out["scale0"]) == (1, 32, 28, 28, 64)
    assert _shape(out["scale1"]) == (1, 1, 32, 28, 28, 128)
    assert _shape(out["scale2"]) == (1, 1, 16, 7, 7, 512)
    assert _shape(out["cam"]) == (1, 1, 16, 7, 7)
    assert _shape(out["logits"]) == (1, 1)
    assert _shape(inter["a5"]["__call__"][0]) == (1, 86, 1, 256)     # audio before F1
    assert _shape(inter["v1_conv"]["__call__"][0]) == (1, 63, 112, 112, 64)
    assert _shape(inter["a1_conv"]["__call__"][0]) == (1, 21897, 1, 64)
    assert _shape(inter["a3"]["__call__"][0]) == (1, 1369, 1, 128)
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    print(f"paper-size ShiftNet parameters: {n:,}")
    assert n == PAPER_PARAMS
    assert "scale" not in str(jax.tree_util.tree_structure(variables["params"]))  # BN: no gamma


def test_cam_variant_and_separation_input_shapes():
    _, out, _ = _shapes(ShiftNet(cam_variant=True), (1, 125, 224, 224, 3), (1, 2, 87588, 2))
    assert _shape(out["cam"]) == (1, 2, 16, 14, 14)
    assert _shape(out["scale2"]) == (1, 2, 16, 14, 14, 512)
    assert _shape(out["scale0"]) == (1, 32, 28, 28, 64)       # shared: no pass axis
    _, out, inter = _shapes(ShiftNet(), (1, 63, 224, 224, 3), (1, 1, 44144, 2))
    assert _shape(inter["a5"]["__call__"][0]) == (1, 44, 1, 256)
    assert _shape(out["scale0"]) == (1, 16, 28, 28, 64)
    assert _shape(out["scale1"]) == (1, 1, 16, 28, 28, 128)
    assert _shape(out["scale2"]) == (1, 1, 8, 7, 7, 512)


def test_width_multiplier_and_other_sizes():
    n = audio_samples_for_frames(16, 15.0, 11025)            # the `local` config's clip
    _, out, _ = _shapes(ShiftNet(width=0.25), (2, 16, 56, 56, 3), (2, 2, n, 2))
    assert _shape(out["scale0"]) == (2, 4, 7, 7, 16)
    assert _shape(out["scale1"]) == (2, 2, 4, 7, 7, 32)
    assert _shape(out["scale2"]) == (2, 2, 2, 2, 2, 128)
    _, out, _ = _shapes(ShiftNet(width=0.1), (1, 16, 64, 64, 3),
                        (1, 1, audio_samples_for_frames(16), 1))
    assert out["scale0"].shape[-1] == 8 and out["scale1"].shape[-1] == 13


def test_audio_helpers():
    assert audio_samples_for_frames(125) == 87588
    assert audio_samples_for_frames(63) == 44144
    x = np.array([-1.0, -0.01, 0.0, 0.01, 1.0])
    y = np.asarray(mu_law_compress(x))
    np.testing.assert_allclose(y[[0, 2, 4]], [-1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(y[3], np.log(1 + 2.55) / np.log(256), rtol=1e-6)
    np.testing.assert_allclose(y[1], -y[3])


def test_fractional_max_pool_by_hand():
    x = np.array([5, 1, 2, 0, 9, 3, 4, 4, 8, 7], np.float32)       # α = 9/3 = 3
    starts, ends = fractional_pool_windows(10, 3)
    assert starts.tolist() == [0, 3, 6] and ends.tolist() == [3, 6, 10]
    y = fractional_max_pool(jnp.asarray(x)[None, :, None, None], 3, axis=1)
    assert y.shape == (1, 3, 1, 1)
    np.testing.assert_array_equal(np.asarray(y).ravel(), [5, 9, 8])
    # 7 rows → 3 (α = 2): [0,2) [2,4) [4,7)
    y = fractional_max_pool(jnp.arange(7.0)[None, :, None], 3, axis=1)
    np.testing.assert_array_equal(np.asarray(y).ravel(), [1, 3, 6])
    # gradient goes to each window's maximum once
    g = jax.grad(lambda x: fractional_max_pool(x[None, :, None, None], 3).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g), [1, 0, 0, 0, 1, 0, 0, 0, 1, 0])


def test_fractional_pool_windows_paper_and_degenerate():
    starts, ends = fractional_pool_windows(86, 32)   # the paper's 86 audio rows → 32 frames
    assert starts[0] == 0 and ends[-1] == 86 and (starts[1:] == ends[:-1]).all()
    assert set((ends - starts).tolist()) == {2, 3}
    starts, ends = fractional_pool_windows(2, 4)     # fewer rows than outputs: size-1 windows
    assert (ends - starts).tolist() == [1, 1, 1, 1] and ends.max() == 2


def test_l2_penalty_counts_conv_kernels_only():
    params = {"conv": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.ones(3)},
              "bn": {"bias": jnp.ones(4)}, "block": {"c": {"kernel": jnp.ones((5,))}}}
    np.testing.assert_allclose(l2_penalty(params, 0.1), 0.1 * (6 * 4 + 5) / 2, rtol=1e-6)


B, P, T, S = 2, 2, 8, 32
MODEL = ShiftNet(width=0.25, cam_variant=True)    # cam_variant: a 1×2×2 CAM rather than 1×1×1


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    n = audio_samples_for_frames(T)
    video = jnp.asarray(rng.uniform(-1, 1, (B, T, S, S, 3)), jnp.float32)
    audio = jnp.asarray(0.3 * rng.standard_normal((B, P, n, 2)).clip(-3, 3), jnp.float32)
    # An "rbg" key: XLA:CPU compiles threefry's partitionable init ~3× slower (≈15 s here).
    variables = jax.jit(MODEL.init)(jax.random.key(0, impl="rbg"), video, audio)
    return variables, video, audio


def test_init_he_normal_and_zero_biases(tiny):
    params = tiny[0]["params"]
    k = np.asarray(params["m6"]["conv1"]["kernel"])            # 3³ × 128 → 128
    fan_in = 27 * k.shape[-2]
    assert abs(k.std() - np.sqrt(2 / fan_in)) < 0.05 * np.sqrt(2 / fan_in)
    assert np.abs(k).max() <= 2 * np.sqrt(2 / fan_in) / 0.8796 + 1e-6   # truncated at 2σ
    assert not np.asarray(params["m6"]["conv2"]["bias"]).any()
    assert not np.asarray(params["logits"]["bias"]).any()


def test_tiny_forward_backward(tiny):
    variables, video, audio = tiny
    labels = jnp.tile(jnp.array([1.0, 0.0]), (B, 1))

    def loss(params, stats):
        out, new = MODEL.apply({"params": params, "batch_stats": stats}, video, audio,
                               train=True, mutable=["batch_stats"])
        xent = optax.sigmoid_binary_cross_entropy(out["logits"], labels).mean()
        return xent + l2_penalty(params), (out, new["batch_stats"])

    step = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (value, (out, stats)), grads = step(variables["params"], variables["batch_stats"])
    t0 = time.perf_counter()
    jax.block_until_ready(step(variables["params"], variables["batch_stats"]))
    print(f"tiny forward+backward (B={B}, P={P}, {T}×{S}×{S}): {time.perf_counter() - t0:.3f} s")
    assert np.isfinite(value)
    assert out["cam"].shape == (B, P, 1, 2, 2) and out["scale0"].shape == (B, 2, 4, 4, 16)
    for leaf in jax.tree.leaves((out, grads)):
        assert np.isfinite(np.asarray(leaf)).all()
    for name in ("a1_conv", "v1_conv", "f4_conv", "logits"):       # both towers learn
        assert np.abs(np.asarray(grads[name]["kernel"])).sum() > 0
    np.testing.assert_allclose(out["cam"].mean(axis=(2, 3, 4)), out["logits"], atol=1e-5)
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a - b)).max(), stats,
                         variables["batch_stats"])
    assert max(jax.tree.leaves(moved)) > 0                          # moving stats updated


def test_shared_video_tower_matches_separate_passes(tiny):
    variables, video, audio = tiny
    both = jax.jit(lambda v, x, a: MODEL.apply(v, x, a, train=False))(variables, video, audio)
    np.testing.assert_allclose(both["cam"].mean(axis=(2, 3, 4)), both["logits"], atol=1e-5)
    assert not np.allclose(both["logits"][:, 0], both["logits"][:, 1])   # audio matters
    for p in range(P):      # extract_cam runs the net on one pass (P = 1)
        cam = extract_cam(MODEL, variables, video, audio[:, p])
        np.testing.assert_allclose(cam, both["cam"][:, p], atol=1e-5)
        np.testing.assert_allclose(cam.mean(axis=(1, 2, 3)), both["logits"][:, p], atol=1e-5)


def test_visual_only_variant_ignores_audio(tiny):
    variables, video, audio = tiny
    model = ShiftNet(width=0.25, cam_variant=True, use_audio=False)
    out = jax.jit(lambda v, x, a: model.apply(v, x, a))(variables, video, audio)
    np.testing.assert_allclose(out["logits"][:, 0], out["logits"][:, 1], atol=1e-6)
