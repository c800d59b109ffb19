"""avjax's convolution layers: every model's convolutions go through here.

The parameters (``kernel`` laid out ``(*kernel_size, in_features, features)``, optional ``bias``)
are the same whatever formulation computes the layer, so checkpoints move between platforms.
``impl="reference"`` is the straightforward XLA formulation, kept as the ground truth in tests.

ConvTranspose follows PyTorch's definition (the input-gradient of a Conv): with a kernel converted
from torch's ``weight[in, out, *k]`` to ``kernel[*k, in, out]`` it gives torch's numbers.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Padding = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


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
        y = conv_reference(x.astype(dtype), kernel.astype(dtype), strides, pads)
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
        y = conv_transpose_reference(x.astype(dtype), kernel.astype(dtype), strides, crop)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,), self.param_dtype).astype(dtype)
        return y


def max_pool(x, window: Sequence[int], strides: Sequence[int], padding: str = "VALID"):
    """Max pool over the spatial dims of a channels-last array ("SAME" pads at the end, TF-style)."""
    nd = len(window)
    pads = conv_padding(padding, x.shape[1:-1], window, strides)
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + tuple(window) + (1,),
                             (1,) + tuple(strides) + (1,), [(0, 0)] + pads + [(0, 0)])
