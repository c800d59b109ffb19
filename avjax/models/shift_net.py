"""The fused audio-visual network of Owens & Efros (ECCV 2018), spec/multisensory.md §1.

Channels last. Video (B, T, H, W, 3) in [-1, 1]; audio (B, P, N, C) in [-1, 1], where P audio
"passes" (2 in training: aligned and shifted; 1 for separation) share one video tower: V1..V4
run once per video and are repeated P times for the fused part (F1..H). Audio is treated as
(N, 1) images (2-D convs), video with 3-D convs; every conv and pool goes through
``avjax.models.layers`` so its formulation can change in one place.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from avjax.audio import audio_samples_for_frames, mu_law_compress  # noqa: F401  (re-exported)
from avjax.models.layers import ConcatPointwiseConv, Conv, max_pool

__all__ = ["ShiftNet", "ResBlock", "fractional_max_pool", "fractional_pool_windows", "l2_penalty",
           "audio_samples_for_frames", "channels"]


def channels(c: int, width: float) -> int:
    """Channel count ``c`` scaled by the width multiplier, rounded, at least 8."""
    return max(8, int(round(c * width)))


def fractional_pool_windows(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """[start, end) rows of the ``out`` windows pooling ``n`` rows (see fractional_max_pool)."""
    if n < 1 or out < 1:
        raise ValueError(f"cannot pool {n} rows into {out}")
    # TF's pooling sequence ceil(α·(i+u)) - ceil(α·u) at u = 0, α = (n-1)/out, in exact integers.
    starts = np.array([-(-((n - 1) * i) // out) for i in range(out)], dtype=np.int64)
    ends = np.append(starts[1:], n)
    ends = np.maximum(ends, starts + 1)   # α < 1 (audio shorter than video): size-1 windows
    return starts, ends


def fractional_max_pool(x: jax.Array, out: int, axis: int = 1) -> jax.Array:
    """Max-pool ``axis`` of ``x`` down to ``out`` rows over windows of fractional size.

    The original used tf.nn.fractional_max_pool (ratio α = (n-1)/out, non-overlapping; random
    sequences in training, a fixed pseudo-random one at test). JAX has none, so this is the
    deterministic evenly spaced version: window i covers rows [⌈α·i⌉, ⌈α·(i+1)⌉), the last one
    runs to the end (TF's sequence with its random offset u = 0). Window sizes are ⌊α⌋ or ⌈α⌉
    (the last can be one longer); for n = 86 → 32 rows they are 2 or 3, as in the paper.
    """
    n = x.shape[axis]
    starts, ends = fractional_pool_windows(n, out)
    k = int((ends - starts).max())
    # Pad every window to k rows by repeating its last row (a repeat cannot change the max).
    idx = np.minimum(starts[:, None] + np.arange(k)[None, :], ends[:, None] - 1)
    y = jnp.take(x, jnp.asarray(idx.reshape(-1)), axis=axis)
    axis = axis % x.ndim
    y = y.reshape(x.shape[:axis] + (out, k) + x.shape[axis + 1:])
    return y.max(axis=axis + 1)


def _batch_norm(train: bool, momentum: float, eps: float, dtype, name: str) -> nn.BatchNorm:
    """BatchNorm without scale (spec §1): batch statistics in training, moving ones otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=eps,
                        use_scale=False, dtype=dtype, name=name)


class ResBlock(nn.Module):
    """conv k/stride → BN → ReLU → conv k (bias); shortcut; add → BN → ReLU (2-D or 3-D).

    Shortcut: identity (same channels, stride 1), strided subsampling (same channels, stride ≠ 1),
    else a 1×…×1 conv with the stride + BN — the original's block2/block3.
    """
    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int]
    bn_momentum: float = 0.9997
    bn_eps: float = 1e-3
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        nd = len(self.kernel_size)
        strides = tuple(self.strides)
        norm = lambda name: _batch_norm(train, self.bn_momentum, self.bn_eps, self.dtype, name)
        y = Conv(self.features, self.kernel_size, strides, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(norm("bn1")(y))
        y = Conv(self.features, self.kernel_size, 1, use_bias=True, dtype=self.dtype,
                 name="conv2")(y)
        if x.shape[-1] == self.features:
            short = x[(slice(None),) + tuple(slice(None, None, s) for s in strides)]
        else:
            short = Conv(self.features, (1,) * nd, strides, dtype=self.dtype, name="short_conv")(x)
            short = norm("short_bn")(short)
        return nn.relu(norm("bn_out")(y + short))


class ShiftNet(nn.Module):
    """Audio-visual synchronisation net; fully convolutional (any T, H, W, N).

    Returns {"logits": (B, P), "scale0": (B, T0, H0, W0, 64·w) (video only),
    "scale1": (B, P, T1, H1, W1, 128·w), "scale2": (B, P, T2, H2, W2, 512·w) (last conv),
    "cam": (B, P, T2, H2, W2)}: the logits kernel + bias at every position; mean(cam) = logit.
    ``use_audio=False`` is spec §4's visual-only variant: the tiled audio features after F2 are
    zeros (parameters kept, so checkpoints stay interchangeable).
    """
    width: float = 1.0
    cam_variant: bool = False          # M5 spatial stride 1 → 2× finer CAM
    bn_momentum: float = 0.9997
    bn_eps: float = 1e-3
    use_audio: bool = True
    dtype: Any = None                  # compute dtype (e.g. bfloat16); parameters stay float32

    def _ch(self, c: int) -> int:
        return channels(c, self.width)

    @nn.compact
    def __call__(self, video: jax.Array, audio: jax.Array, train: bool = False):
        if video.ndim != 5 or audio.ndim != 4 or audio.shape[0] != video.shape[0]:
            raise ValueError(f"ShiftNet expects video (B, T, H, W, 3) and audio (B, P, N, C), got "
                             f"{video.shape} and {audio.shape}")
        b, p, n, c = audio.shape
        dt = self.dtype
        block = lambda f, k, s, name: ResBlock(f, k, s, self.bn_momentum, self.bn_eps, dt,
                                               name=name)
        norm = lambda name: _batch_norm(train, self.bn_momentum, self.bn_eps, dt, name)
        c64, c128, c256, c512 = (self._ch(x) for x in (64, 128, 256, 512))
        k3 = (3, 3, 3)

        # Video tower, once per video (V1..V4 → scale 0).
        v = video if dt is None else video.astype(dt)
        v = Conv(c64, (5, 7, 7), 2, dtype=dt, name="v1_conv")(v)
        v = nn.relu(norm("v1_bn")(v))
        v = max_pool(v, (1, 3, 3), (1, 2, 2), "SAME")
        v = block(c64, k3, (1, 1, 1), "v3")(v, train)
        v = block(c64, k3, (2, 2, 2), "v4")(v, train)
        scale0 = v
        t0, h0, w0, cv = v.shape[1:]

        # Audio tower, per pass (A1..A5, F1, F2).
        a = mu_law_compress(audio.reshape(b * p, n, 1, c))
        a = a if dt is None else a.astype(dt)
        a = Conv(c64, (65, 1), (4, 1), dtype=dt, name="a1_conv")(a)
        a = nn.relu(norm("a1_bn")(a))
        a = max_pool(a, (4, 1), (4, 1), "VALID")
        a = block(c128, (15, 1), (4, 1), "a3")(a, train)
        a = block(c128, (15, 1), (4, 1), "a4")(a, train)
        a = block(c256, (15, 1), (4, 1), "a5")(a, train)
        a = fractional_max_pool(a, t0, axis=1)                       # (BP, T0, 1, 256)
        a = Conv(c128, (3, 1), 1, dtype=dt, name="f2_conv")(a)
        a = nn.relu(norm("f2_bn")(a))                                  # (BP, T0, 1, 128)
        if not self.use_audio:
            a = jnp.zeros_like(a)

        # Fusion (F3..F6): tile audio over H, W; concat with the shared video features. F4 is
        # a 1×1×1 conv on that concat: computed per video and per audio frame, then broadcast.
        ca = a.shape[-1]
        vf = jnp.broadcast_to(v[:, None], (b, p) + v.shape[1:]).reshape((b * p,) + v.shape[1:])
        at = jnp.broadcast_to(a[:, :, :, None, :], (b * p, t0, h0, w0, ca))
        x = ConcatPointwiseConv(c512, 3, dtype=dt, name="f4_conv")(
            v[:, None], a.reshape(b, p, t0, 1, 1, ca))                # (B, P, T0, H0, W0, 512)
        x = x.reshape((b * p,) + x.shape[2:])
        x = nn.relu(norm("f4_bn")(x))
        x = Conv(c128, (1, 1, 1), use_bias=True, dtype=dt, name="f5_conv")(x)
        short = jnp.concatenate([vf, at[..., ca - (c128 - cv):]], axis=-1)   # video ‖ audio 64..127
        x = nn.relu(norm("f6_bn")(x + short))

        x = block(c128, k3, (1, 1, 1), "m1")(x, train)
        x = block(c128, k3, (1, 1, 1), "m2")(x, train)
        scale1 = x
        x = block(c256, k3, (2, 2, 2), "m3")(x, train)
        x = block(c256, k3, (1, 1, 1), "m4")(x, train)
        x = block(c512, k3, (1, 1, 1) if self.cam_variant else (1, 2, 2), "m5")(x, train)
        x = block(c512, k3, (1, 1, 1), "m6")(x, train)
        scale2 = x

        head = Conv(1, (1, 1, 1), use_bias=True, dtype=dt, name="logits")
        cam = head(x)[..., 0].astype(jnp.float32)
        logits = head(x.mean(axis=(1, 2, 3), keepdims=True)).reshape(b, p).astype(jnp.float32)
        split = lambda y: y.reshape((b, p) + y.shape[1:])
        return {"logits": logits, "scale0": scale0, "scale1": split(scale1),
                "scale2": split(scale2), "cam": split(cam)}


def l2_penalty(params, weight: float = 1e-5) -> jax.Array:
    """wd·Σw²/2 over every conv kernel (not biases, not BatchNorm), as the original's L2."""
    total = jnp.zeros((), jnp.float32)
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if getattr(path[-1], "key", None) == "kernel":
            total = total + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return 0.5 * weight * total
