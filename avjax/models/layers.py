"""avjax's convolution layers: every model's convolutions go through here.

The parameters (``kernel`` laid out ``(*kernel_size, in_features, features)``, optional ``bias``)
are the same whatever formulation computes the layer, so checkpoints move between platforms.
``impl="reference"`` is the straightforward XLA formulation, kept as the ground truth in tests.

``impl="fast"`` rewrites strided layers so that XLA:CPU only ever sees stride-1 convolutions,
whose forward *and* gradients it runs near the machine's matmul peak (strided-conv input
gradients and transposed-conv gradients hit 30-100x slower paths there):
- a strided Conv is a stride-1 conv on a space-to-depth input with a rearranged kernel;
- a strided ConvTranspose is one stride-1 conv that computes all s^d output phases as extra
  channels (sub-pixel formulation), followed by depth-to-space and the crop.
Both are exact re-indexings of the same sums (tests compare them to the reference). The default
(``impl=None``) is "fast" on CPU and "reference" on GPU/TPU, where cuDNN/XLA handle strides well;
override per layer, with ``set_default_impl`` or with the environment variable AVJAX_CONV_IMPL.

ConvTranspose follows PyTorch's definition (the input-gradient of a Conv): with a kernel converted
from torch's ``weight[in, out, *k]`` to ``kernel[*k, in, out]`` it gives torch's numbers.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

IMPLS = ("reference", "fast")
_default_impl: str | None = None


def set_default_impl(impl: str | None) -> None:
    """Process-wide formulation for layers built with ``impl=None`` (None: decide per platform)."""
    global _default_impl
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; choose one of {IMPLS}")
    _default_impl = impl


def resolve_impl(impl: str | None = None) -> str:
    """Layer argument > set_default_impl > $AVJAX_CONV_IMPL > "fast" on CPU, else "reference"."""
    impl = impl or _default_impl or os.environ.get("AVJAX_CONV_IMPL") or None
    if impl is None:
        return "fast" if jax.default_backend() == "cpu" else "reference"
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; choose one of {IMPLS} (AVJAX_CONV_IMPL)")
    return impl


def _tuple(v, n: int) -> tuple[int, ...]:
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    if len(v) != n:
        raise ValueError(f"expected {n} values, got {v}")
    return v


def conv_padding(padding: Padding, in_sizes, kernel, strides) -> list[tuple[int, int]]:
    """Explicit (lo, hi) pads for a forward conv. "SAME" puts the extra pad at the end (TF)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * n
        if padding.upper() != "SAME":
            raise ValueError(f"unknown padding {padding!r}")
        pads = []
        for size, k, s in zip(in_sizes, kernel, strides):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    if isinstance(padding, int):
        return [(padding, padding)] * n
    padding = list(padding)
    if all(isinstance(p, int) for p in padding):
        return [(int(p), int(p)) for p in padding]
    return [(int(lo), int(hi)) for lo, hi in padding]


def transpose_crop(padding: Padding, kernel, strides) -> list[tuple[int, int]]:
    """(lo, hi) cropped from the full transposed-conv output. "SAME" gives out = in * stride."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * n
        if padding.upper() != "SAME":
            raise ValueError(f"unknown padding {padding!r}")
        pads = []
        for k, s in zip(kernel, strides):
            total = max(k - s, 0)
            pads.append((total // 2, total - total // 2))
        return pads
    return conv_padding(padding, None, kernel, strides)


def _dimension_numbers(nd: int):
    sp = "DHW"[-nd:] if nd <= 3 else None
    if sp is None:
        raise ValueError("only 1-, 2- and 3-D convolutions are supported")
    return lax.ConvDimensionNumbers(*lax.conv_dimension_numbers(
        (1,) * (nd + 2), (1,) * (nd + 2), (f"N{sp}C", f"{sp}IO", f"N{sp}C")))


def conv_reference(x, kernel, strides, pads):
    nd = kernel.ndim - 2
    return lax.conv_general_dilated(x, kernel, strides, pads,
                                    dimension_numbers=_dimension_numbers(nd))


def conv_transpose_reference(x, kernel, strides, crop):
    """Input-gradient of a conv: dilate the input by the stride, convolve with the flipped kernel."""
    nd = kernel.ndim - 2
    k = kernel.shape[:nd]
    pads = [(kk - 1 - lo, kk - 1 - hi) for kk, (lo, hi) in zip(k, crop)]
    flipped = jnp.flip(kernel, axis=tuple(range(nd)))
    return lax.conv_general_dilated(x, flipped, (1,) * nd, pads, lhs_dilation=strides,
                                    dimension_numbers=_dimension_numbers(nd))


# ---- space-to-depth / depth-to-space on channels-last arrays ---------------------------------

def space_to_depth(x, strides):
    """(N, *[b_i*s_i], C) -> (N, *b, prod(s)*C), channel index = (phase_1, ..., phase_d, c)."""
    nd = len(strides)
    n, sizes, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    blocks = [size // s for size, s in zip(sizes, strides)]
    x = x.reshape((n,) + sum(((b, s) for b, s in zip(blocks, strides)), ()) + (c,))
    perm = (0,) + tuple(1 + 2 * i for i in range(nd)) + tuple(2 + 2 * i for i in range(nd)) + (2 * nd + 1,)
    return x.transpose(perm).reshape((n,) + tuple(blocks) + (math.prod(strides) * c,))


def depth_to_space(x, strides):
    """Inverse of space_to_depth: (N, *b, prod(s)*C) -> (N, *[b_i*s_i], C)."""
    nd = len(strides)
    n, blocks = x.shape[0], x.shape[1:-1]
    c = x.shape[-1] // math.prod(strides)
    x = x.reshape((n,) + tuple(blocks) + tuple(strides) + (c,))
    perm = (0,) + sum(((1 + i, 1 + nd + i) for i in range(nd)), ()) + (2 * nd + 1,)
    return x.transpose(perm).reshape((n,) + tuple(b * s for b, s in zip(blocks, strides)) + (c,))


def _kernel_taps(kernel, strides):
    """Pad each spatial axis of a kernel to a multiple of its stride and split it: tap t = q*s + p
    -> (*[q_i, p_i], in, out). Returns (array, [ceil(k_i/s_i)])."""
    nd = len(strides)
    k = kernel.shape[:nd]
    kq = [-(-kk // s) for kk, s in zip(k, strides)]
    kernel = jnp.pad(kernel, [(0, q * s - kk) for q, s, kk in zip(kq, strides, k)] + [(0, 0)] * 2)
    shape = sum(((q, s) for q, s in zip(kq, strides)), ()) + kernel.shape[nd:]
    return kernel.reshape(shape), kq


def conv_space_to_depth(x, kernel, strides, pads):
    """Strided conv as a stride-1 VALID conv: y[o] = sum_{q,p} X[o+q, p] * k[q*s+p], where X is the
    padded input split into stride-sized blocks (space-to-depth)."""
    nd = kernel.ndim - 2
    if all(s == 1 for s in strides):
        return conv_reference(x, kernel, strides, pads)
    sizes = x.shape[1:-1]
    k = kernel.shape[:nd]
    out = [(n + lo + hi - kk) // s + 1 for n, (lo, hi), kk, s in zip(sizes, pads, k, strides)]
    taps, kq = _kernel_taps(kernel, strides)
    # Pad (or crop: negative pads) each axis to exactly (out + kq - 1) blocks of s.
    cfg = [(lo, (o + q - 1) * s - n - lo, 0)
           for n, (lo, _), o, q, s in zip(sizes, pads, out, kq, strides)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + cfg + [(0, 0, 0)])
    xs = space_to_depth(xp, strides)
    perm = tuple(2 * i for i in range(nd)) + tuple(2 * i + 1 for i in range(nd)) + (2 * nd, 2 * nd + 1)
    ks = taps.transpose(perm).reshape(tuple(kq) + (math.prod(strides) * kernel.shape[-2], kernel.shape[-1]))
    return conv_reference(xs, ks, (1,) * nd, [(0, 0)] * nd)


def conv_transpose_subpixel(x, kernel, strides, crop):
    """Strided transposed conv as one stride-1 conv producing every output phase as channels.

    Full output position f = i*s + t with tap t = q*s + p lies in block b = i + q at phase p, so
    y_full[b, p] = sum_q x[b - q] * k[q*s + p]: a stride-1 correlation with the q-flipped taps.
    Only the blocks covering the cropped output are computed; depth-to-space interleaves phases."""
    nd = kernel.ndim - 2
    if all(s == 1 for s in strides):
        return conv_transpose_reference(x, kernel, strides, crop)
    sizes = x.shape[1:-1]
    k = kernel.shape[:nd]
    cin, cout = kernel.shape[-2:]
    out = [(n - 1) * s + kk - lo - hi for n, kk, s, (lo, hi) in zip(sizes, k, strides, crop)]
    taps, kq = _kernel_taps(kernel, strides)
    taps = jnp.flip(taps, axis=tuple(2 * i for i in range(nd)))
    perm = tuple(2 * i for i in range(nd)) + (2 * nd,) + tuple(2 * i + 1 for i in range(nd)) + (2 * nd + 1,)
    ks = taps.transpose(perm).reshape(tuple(kq) + (cin, math.prod(strides) * cout))
    b0 = [lo // s for (lo, _), s in zip(crop, strides)]
    nb = [(lo + o - 1) // s - b + 1 for (lo, _), o, s, b in zip(crop, out, strides, b0)]
    # The conv's output block j reads x[b0 + j - (q-1) ... b0 + j]: pad left q-1-b0, total nb+q-1.
    cfg = [(q - 1 - b, nbl + q - 1 - n - (q - 1 - b), 0)
           for q, b, nbl, n in zip(kq, b0, nb, sizes)]
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + cfg + [(0, 0, 0)])
    y = depth_to_space(conv_reference(xp, ks, (1,) * nd, [(0, 0)] * nd), strides)
    start = [lo - b * s for (lo, _), b, s in zip(crop, b0, strides)]
    return lax.slice(y, (0,) + tuple(start) + (0,),
                     (y.shape[0],) + tuple(st + o for st, o in zip(start, out)) + (cout,))


def conv(x, kernel, strides, pads, impl: str | None = None):
    """Forward conv with explicit pads in the chosen formulation."""
    if resolve_impl(impl) == "fast":
        return conv_space_to_depth(x, kernel, strides, pads)
    return conv_reference(x, kernel, strides, pads)


def conv_transpose(x, kernel, strides, crop, impl: str | None = None):
    """PyTorch-style transposed conv with explicit crops in the chosen formulation."""
    if resolve_impl(impl) == "fast":
        return conv_transpose_subpixel(x, kernel, strides, crop)
    return conv_transpose_reference(x, kernel, strides, crop)


class Conv(nn.Module):
    """N-D convolution, channels last. ``padding``: "SAME" (TF), "VALID", ints or (lo, hi) pairs."""
    features: int
    kernel_size: Sequence[int]
    strides: Union[int, Sequence[int]] = 1
    padding: Padding = "SAME"
    use_bias: bool = False
    kernel_init: Callable = he_normal
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32
    impl: str | None = None

    @nn.compact
    def __call__(self, x):
        k = tuple(self.kernel_size)
        nd = len(k)
        if x.ndim != nd + 2:
            raise ValueError(f"Conv{nd}D expects a rank-{nd + 2} input, got shape {x.shape}")
        strides = _tuple(self.strides, nd)
        kernel = self.param("kernel", self.kernel_init, k + (x.shape[-1], self.features),
                            self.param_dtype)
        pads = conv_padding(self.padding, x.shape[1:-1], k, strides)
        dtype = self.dtype or x.dtype
        y = conv(x.astype(dtype), kernel.astype(dtype), strides, pads, self.impl)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(dtype)
        return y


class ConvTranspose(nn.Module):
    """N-D transposed convolution (PyTorch semantics). ``padding``: "SAME" → out = in·stride,
    or PyTorch-style ints / (lo, hi) pairs cropped from the full output."""
    features: int
    kernel_size: Sequence[int]
    strides: Union[int, Sequence[int]] = 1
    padding: Padding = "SAME"
    use_bias: bool = False
    kernel_init: Callable = he_normal
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = None
    param_dtype: Any = jnp.float32
    impl: str | None = None

    @nn.compact
    def __call__(self, x):
        k = tuple(self.kernel_size)
        nd = len(k)
        if x.ndim != nd + 2:
            raise ValueError(f"ConvTranspose{nd}D expects a rank-{nd + 2} input, got {x.shape}")
        strides = _tuple(self.strides, nd)
        kernel = self.param("kernel", self.kernel_init, k + (x.shape[-1], self.features),
                            self.param_dtype)
        crop = transpose_crop(self.padding, k, strides)
        dtype = self.dtype or x.dtype
        y = conv_transpose(x.astype(dtype), kernel.astype(dtype), strides, crop, self.impl)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(dtype)
        return y


def max_pool(x, window: Sequence[int], strides: Sequence[int], padding: str = "VALID"):
    """Max pool over the spatial dims of a channels-last array ("SAME" pads at the end, TF-style)."""
    nd = len(window)
    pads = conv_padding(padding, x.shape[1:-1], window, strides)
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + tuple(window) + (1,),
                             (1,) + tuple(strides) + (1,), [(0, 0)] + pads + [(0, 0)])
