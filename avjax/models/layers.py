"""avjax's convolution layers: every model's convolutions go through here.

The parameters (``kernel`` laid out ``(*kernel_size, in_features, features)``, optional ``bias``)
are the same whatever formulation computes the layer, so checkpoints move between platforms.
``impl="reference"`` is the straightforward XLA formulation, kept as the ground truth in tests.

``impl="fast"`` (avjax.models.conv_fast) rewrites every layer as GEMMs plus cheap slicing, so
that XLA:CPU never meets its slow paths (strided-conv input gradients and transposed-conv
gradients run 30-100x slower than the forward there, while its GEMMs run near peak):
- a strided Conv is im2col in the kernel's own layout (weight-heavy layers) or a stride-1 conv
  on a space-to-depth input with a rearranged kernel (activation-heavy layers);
- a strided ConvTranspose is one GEMM per kernel tap added into the s^d output phases (a
  sub-pixel formulation with the phases interleaved by a reshape), without multiplying zeros;
- an activation-heavy 3-D Conv (im2col patches > 24 MB: the shift net's V1 and its 3x3x3 blocks
  at large H, W) is one 2-D XLA conv with the temporal taps stacked into channels ("tfold");
  a narrow one (<= 64 channels, stride 1 in time) instead makes the taps output channels of
  one 2-D conv and adds their time-shifted slices ("tfold_shift", derivatives from "tfold");
- max_pool is the max of strided views with a custom gradient equal to select_and_scatter's
  (first maximal element of each window), which XLA:CPU runs slowly.
All are exact re-indexings of the same sums (tests compare forward and both gradients with the
reference). The default (``impl=None``) is "fast" on CPU and "reference" on GPU/TPU, where
cuDNN/XLA handle strides well; override per layer, with ``set_default_impl``, or with the
environment variable AVJAX_CONV_IMPL=fast|reference.

ConvTranspose follows PyTorch's definition (the input-gradient of a Conv): with a kernel converted
from torch's ``weight[in, out, *k]`` to ``kernel[*k, in, out]`` it gives torch's numbers.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from avjax.models import conv_fast

Padding = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

IMPLS = ("reference", "fast")
_default_impl: str | None = None
_recording: contextvars.ContextVar[list | None] = contextvars.ContextVar("avjax_layer_calls",
                                                                         default=None)


@contextlib.contextmanager
def record_calls():
    """Collect one dict per Conv / ConvTranspose / max_pool call traced inside the block (name,
    kind, input and kernel shapes, strides, pads), so benchmarks can count FLOPs and time each
    layer at its real shape without a hand-kept list."""
    calls: list[dict] = []
    token = _recording.set(calls)
    try:
        yield calls
    finally:
        _recording.reset(token)


def _record(**call) -> None:
    calls = _recording.get()
    if calls is not None:
        calls.append(call)


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


def conv_reference(x, kernel, strides, pads):
    """The straightforward XLA convolution: the ground truth the fast forms are tested against."""
    return conv_fast.xla_conv(x, kernel, strides, pads)


def conv_transpose_reference(x, kernel, strides, crop):
    """Input-gradient of a conv: dilate the input by the stride, convolve with the flipped kernel."""
    nd = kernel.ndim - 2
    k = kernel.shape[:nd]
    pads = [(kk - 1 - lo, kk - 1 - hi) for kk, (lo, hi) in zip(k, crop)]
    flipped = jnp.flip(kernel, axis=tuple(range(nd)))
    return lax.conv_general_dilated(x, flipped, (1,) * nd, pads, lhs_dilation=strides,
                                    dimension_numbers=conv_fast.dimension_numbers(nd))


def conv(x, kernel, strides, pads, impl: str | None = None):
    """Forward conv with explicit pads in the chosen formulation."""
    if resolve_impl(impl) == "fast":
        return conv_fast.conv(x, kernel, strides, pads)
    return conv_reference(x, kernel, strides, pads)


def conv_transpose(x, kernel, strides, crop, impl: str | None = None):
    """PyTorch-style transposed conv with explicit crops in the chosen formulation."""
    if resolve_impl(impl) == "fast":
        return conv_fast.conv_transpose(x, kernel, strides, crop)
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
        _record(kind="conv", name="/".join(self.scope.path), x_shape=x.shape,
                kernel_shape=kernel.shape, strides=strides, pads=pads, impl=self.impl)
        y = conv(x.astype(dtype), kernel.astype(dtype), strides, pads, self.impl)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(dtype)
        return y


class ConcatPointwiseConv(nn.Module):
    """A 1×…×1 ``Conv`` (no bias) over ``concat([a, b], -1)``, where a and b broadcast against
    each other to the output's shape. Computed as a·K[:ca] + b·K[ca:] on each input's own shape,
    so a tensor repeated along some axes (the shift net's video features per audio pass, audio
    features tiled over H and W) is multiplied once, not once per copy. Same parameter
    (``kernel`` of shape (1,…,1, ca + cb, features)) and numbers as the Conv on the concat."""
    features: int
    spatial_dims: int          # the conv's N (kernel (1,)*N + (in, out)); leading axes are batch
    kernel_init: Callable = he_normal
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, a, b):
        nd = self.spatial_dims
        if a.ndim != b.ndim or a.ndim < nd + 2:
            raise ValueError(f"ConcatPointwiseConv{nd}D needs inputs of equal rank >= {nd + 2}, "
                             f"got {a.shape} and {b.shape}")
        ca, cb = a.shape[-1], b.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (1,) * nd + (ca + cb, self.features),
                            self.param_dtype)
        full = jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        shape = (math.prod(full[:len(full) - nd]),) + full[len(full) - nd:] + (ca + cb,)
        _record(kind="conv", name="/".join(self.scope.path), x_shape=shape,
                kernel_shape=kernel.shape, strides=(1,) * nd, pads=[(0, 0)] * nd, impl=None)
        dtype = self.dtype or a.dtype
        k = kernel.reshape(ca + cb, self.features).astype(dtype)
        return a.astype(dtype) @ k[:ca] + b.astype(dtype) @ k[ca:]


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
        _record(kind="conv_transpose", name="/".join(self.scope.path), x_shape=x.shape,
                kernel_shape=kernel.shape, strides=strides, pads=crop, impl=self.impl)
        y = conv_transpose(x.astype(dtype), kernel.astype(dtype), strides, crop, self.impl)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(dtype)
        return y


def max_pool_reference(x, window, strides, pads):
    """lax.reduce_window max (-inf padding); its gradient is XLA's select_and_scatter."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + tuple(window) + (1,),
                             (1,) + tuple(strides) + (1,), [(0, 0)] + list(pads) + [(0, 0)])


def max_pool(x, window: Sequence[int], strides: Sequence[int], padding: str = "VALID",
             impl: str | None = None):
    """Max pool over the spatial dims of a channels-last array ("SAME" pads at the end, TF-style).

    "fast" (CPU default) is the max of strided views with a gradient that routes each output to
    the first maximal input of its window, exactly as the reference's select_and_scatter does
    (conv_fast.max_pool; reverse-mode only: forward-mode autodiff needs impl="reference")."""
    pads = conv_padding(padding, x.shape[1:-1], window, strides)
    _record(kind="max_pool", name="max_pool", x_shape=x.shape, kernel_shape=tuple(window),
            strides=tuple(strides), pads=pads, impl=impl)
    if resolve_impl(impl) == "fast":
        return conv_fast.max_pool(x, window, strides, pads)
    return max_pool_reference(x, window, strides, pads)
