"""CPU formulations of strided convolutions that XLA:CPU runs near its matmul peak.

XLA:CPU runs GEMMs (and their transposes) near peak, but its own convolution is erratic: strided
input-gradients and transposed-conv gradients are 30-100x slower than the forward, and even
stride-1 convs swing 2-4x with the spatial size. Everything here is an exact re-indexing of the
same sums into GEMMs plus cheap slicing, so forward *and* autodiff gradients are GEMMs:

- ``conv_im2col``: strided conv as patches (M_out, T*ci) @ kernel (T*ci, co). Patches are taken
  in the kernel's own (taps, in) order, so the kernel is only reshaped, never copied: the choice
  for weight-heavy layers (small spatial, big kernels).
- ``conv_space_to_depth``: strided conv = stride-1 conv on the space-to-depth input with a
  rearranged kernel (y[o] = sum_{q,p} X[o+q, p] k[q*s+p]); its gradients stay stride-1. The
  choice for activation-heavy layers, where strided-slice gradients would dominate.
- ``conv_transpose_taps``: transposed conv as one product per kernel tap, Z_t = x @ k_t, added
  into the output phases (output position i*s + t gets Z_t[i]): no wasted multiply by zeros, and
  for small inputs the taps are a batched GEMM over the kernel in its own layout (no 32 MB kernel
  transposes per step for the U-Net's bottleneck layers).
- ``conv_transpose_subpixel``: kept as an alternative (one stride-1 conv producing the s^d
  phases as channels), tested against the reference like the others.

The layer-shape heuristics were calibrated with ``python -m avjax.bench --per-layer`` on a 2-core
AVX-512 machine (≈200 GFLOP/s f32 GEMM); ``conv``/``conv_transpose`` accept ``form=`` to force one.
"""
from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax


def dimension_numbers(nd: int):
    sp = "DHW"[-nd:]
    return lax.conv_dimension_numbers((1,) * (nd + 2), (1,) * (nd + 2),
                                      (f"N{sp}C", f"{sp}IO", f"N{sp}C"))


def xla_conv(x, kernel, strides, pads):
    return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=dimension_numbers(kernel.ndim - 2))


def _pad(x, cfg):
    """lax.pad on the spatial axes of (N, *sp, C); negative pads crop."""
    return lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] + [tuple(c) for c in cfg] + [(0, 0, 0)])


def conv_out_sizes(sizes, kernel, strides, pads):
    return [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(sizes, kernel, strides, pads)]


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
    """Zero-pad each spatial axis of a kernel to a multiple of its stride and split tap t = q*s+p:
    -> (*[q_i, p_i], in, out). Returns (array, [ceil(k_i/s_i)])."""
    nd = len(strides)
    k = kernel.shape[:nd]
    kq = [-(-kk // s) for kk, s in zip(k, strides)]
    if any(q * s != kk for q, s, kk in zip(kq, strides, k)):
        kernel = jnp.pad(kernel, [(0, q * s - kk) for q, s, kk in zip(kq, strides, k)] + [(0, 0)] * 2)
    shape = sum(((q, s) for q, s in zip(kq, strides)), ()) + kernel.shape[nd:]
    return kernel.reshape(shape), kq


def _window_slices(x, window, out, strides=None):
    """The prod(window) views x[:, t_1 : t_1 + s_1*out_1 : s_1, ..., :] in row-major tap order."""
    n, c = x.shape[0], x.shape[-1]
    strides = strides or (1,) * len(window)
    return [lax.slice(x, (0,) + t + (0,),
                      (n,) + tuple(ti + (o - 1) * s + 1 for ti, o, s in zip(t, out, strides)) + (c,),
                      (1,) + tuple(strides) + (1,))
            for t in itertools.product(*[range(w) for w in window])]


# ---- the stride-1 VALID core of the space-to-depth formulation --------------------------------
# "im2col": patches (M_out, T*ci) @ (T*ci, co); "shift": one GEMM over all input positions
# (M_in, ci) @ (ci, T*co), then add the T shifted output slices (no patch copy; cheaper when the
# output has few channels). The cost model counts GEMM flops plus the memory each intermediate
# costs (≈200 GFLOP/s GEMM, ≈10 GB/s for XLA:CPU copies); shapes whose intermediates would not
# fit fall back to XLA's convolution.
_CORE_MAX_BYTES = 512 * 2 ** 20
_PEAK_FLOPS, _COPY_BYTES_PER_S = 200e9, 10e9


def core_choice(x_shape, k_shape) -> str:
    """Which core computes a stride-1 VALID conv of this input and kernel shape."""
    nd = len(k_shape) - 2
    window, (ci, co) = k_shape[:nd], k_shape[nd:]
    taps = math.prod(window)
    m_in = x_shape[0] * math.prod(x_shape[1:-1])
    m_out = x_shape[0] * math.prod(n - w + 1 for n, w in zip(x_shape[1:-1], window))
    if taps == 1:
        return "im2col"
    costs = {}
    for name, flops, extra in (("im2col", 2 * m_out * taps * ci * co, m_out * taps * ci),
                               ("shift", 2 * m_in * taps * ci * co, m_in * taps * co)):
        if extra * 4 <= _CORE_MAX_BYTES:  # bytes moved: written, read, and twice in backward
            costs[name] = flops / _PEAK_FLOPS + 16 * extra / _COPY_BYTES_PER_S
    return min(costs, key=costs.get) if costs else "xla"


def conv_valid(x, kernel, core: str | None = None):
    """Stride-1, unpadded convolution (correlation) of channels-last ``x`` with ``kernel``."""
    nd = kernel.ndim - 2
    window, (ci, co) = kernel.shape[:nd], kernel.shape[nd:]
    out = tuple(n - w + 1 for n, w in zip(x.shape[1:-1], window))
    core = core or core_choice(x.shape, kernel.shape)
    taps = math.prod(window)
    if core == "xla":
        return xla_conv(x, kernel, (1,) * nd, [(0, 0)] * nd)
    if core == "im2col" or taps == 1:
        views = _window_slices(x, window, out)
        p = views[0] if taps == 1 else jnp.concatenate(views, axis=-1)
        y = p.reshape(-1, taps * ci) @ kernel.reshape(taps * ci, co)
        return y.reshape((x.shape[0],) + out + (co,))
    if core == "shift":
        k_all = kernel.reshape(taps, ci, co).transpose(1, 0, 2).reshape(ci, taps * co)
        y = (x.reshape(-1, ci) @ k_all).reshape(x.shape[:-1] + (taps * co,))
        parts = _window_slices(y, window, out)
        return sum(p[..., t * co:(t + 1) * co] for t, p in enumerate(parts))
    raise ValueError(f"unknown conv core {core!r}")


# ---- strided convolution ------------------------------------------------------------------------

def conv_space_to_depth(x, kernel, strides, pads, core: str | None = None):
    """Strided conv as a stride-1 VALID conv: y[o] = sum_{q,p} X[o+q, p] * k[q*s+p], where X is the
    padded input split into stride-sized blocks (space-to-depth)."""
    nd = kernel.ndim - 2
    out = conv_out_sizes(x.shape[1:-1], kernel.shape[:nd], strides, pads)
    taps, kq = _kernel_taps(kernel, strides)
    # Pad (or crop: negative pads) each axis to exactly (out + kq - 1) blocks of s.
    xp = _pad(x, [(lo, (o + q - 1) * s - n - lo, 0)
                  for n, (lo, _), o, q, s in zip(x.shape[1:-1], pads, out, kq, strides)])
    perm = tuple(2 * i for i in range(nd)) + tuple(2 * i + 1 for i in range(nd)) + (2 * nd, 2 * nd + 1)
    ks = taps.transpose(perm).reshape(tuple(kq) + (math.prod(strides) * kernel.shape[-2],
                                                   kernel.shape[-1]))
    return conv_valid(space_to_depth(xp, strides), ks, core)


def conv_im2col(x, kernel, strides, pads):
    """Conv as patches (M_out, T*ci) @ kernel.reshape(T*ci, co), patches gathered with strided
    slices in the kernel's (taps, in) order."""
    nd = kernel.ndim - 2
    window, (ci, co) = kernel.shape[:nd], kernel.shape[nd:]
    out = conv_out_sizes(x.shape[1:-1], window, strides, pads)
    xp = _pad(x, [(lo, hi, 0) for lo, hi in pads])
    views = _window_slices(xp, window, out, strides)
    p = views[0] if len(views) == 1 else jnp.concatenate(views, axis=-1)
    y = p.reshape(-1, p.shape[-1]) @ kernel.reshape(-1, co)
    return y.reshape((x.shape[0],) + tuple(out) + (co,))


def conv_choice(x_shape, k_shape, strides) -> str:
    """im2col for weight-heavy layers (kernel outweighs 4x the output positions), else
    space-to-depth; stride-1 layers use the stride-1 core directly."""
    nd = len(k_shape) - 2
    if all(s == 1 for s in strides):
        return "stride1"
    taps, co = math.prod(k_shape[:nd]), k_shape[-1]
    m_out = x_shape[0] * math.prod(-(-n // s) for n, s in zip(x_shape[1:-1], strides))
    return "im2col" if taps * co > 4 * m_out else "space_to_depth"


def conv(x, kernel, strides, pads, form: str | None = None):
    """Any conv (explicit pads) in the fastest CPU formulation for its shape."""
    nd = kernel.ndim - 2
    form = form or conv_choice(x.shape, kernel.shape, strides)
    if form == "stride1":
        return conv_valid(_pad(x, [(lo, hi, 0) for lo, hi in pads]), kernel)
    if form == "im2col":
        return conv_im2col(x, kernel, strides, pads)
    if form == "space_to_depth":
        return conv_space_to_depth(x, kernel, strides, pads)
    if form == "xla":
        return xla_conv(x, kernel, strides, pads)
    raise ValueError(f"unknown conv form {form!r}")


# ---- transposed convolution (PyTorch semantics: crop (lo, hi) from the full output) ------------

def transpose_out_sizes(sizes, kernel, strides, crop):
    return [(n - 1) * s + k - lo - hi for n, k, s, (lo, hi) in zip(sizes, kernel, strides, crop)]


def _interleave_phases(phases, strides, co):
    """[(N, *nb, co) per phase (row-major over phase tuples)] -> (N, *(nb*s), co)."""
    nd = len(strides)
    n, nb = phases[0].shape[0], phases[0].shape[1:-1]
    y = jnp.stack(phases, axis=-2).reshape((n,) + tuple(nb) + tuple(strides) + (co,))
    perm = (0,) + sum(((1 + i, 1 + nd + i) for i in range(nd)), ()) + (2 * nd + 1,)
    return y.transpose(perm).reshape((n,) + tuple(b * s for b, s in zip(nb, strides)) + (co,))


def conv_transpose_taps(x, kernel, strides, crop, form: str | None = None):
    """Transposed conv as one GEMM per kernel tap, summed into the output phases.

    Full output position f = i*s + t gets x[i] @ k[t]. Writing t = q*s + p, phase p of output
    block b is sum_q Z_{q,p}[b - q] with Z_t = x @ k[t]. ``form``: "batched" computes the Z_t as a
    batched GEMM over the kernel in its own layout (for small inputs and big kernels), "gemm" as
    one GEMM (M, ci) @ (ci, T*co) (for big inputs: the kernel transpose is then cheap)."""
    nd = kernel.ndim - 2
    k, (ci, co) = kernel.shape[:nd], kernel.shape[nd:]
    n, sizes = x.shape[0], x.shape[1:-1]
    taps, kq = _kernel_taps(kernel, strides)
    kp = [q * s for q, s in zip(kq, strides)]
    t_all, m = math.prod(kp), n * math.prod(sizes)
    kt = taps.reshape(t_all, ci, co)
    form = form or ("batched" if 4 * m <= co else "gemm")
    if form == "gemm":
        z = (x.reshape(m, ci) @ kt.transpose(1, 0, 2).reshape(ci, t_all * co))
        z = z.reshape((n,) + tuple(sizes) + tuple(kp) + (co,))
        ztap = lambda t: z[(slice(None),) * (1 + nd) + t]
    elif form == "batched":
        xb = jnp.broadcast_to(x.reshape(1, m, ci), (t_all, m, ci))
        z = lax.dot_general(xb, kt, (((2,), (1,)), ((0,), (0,))))
        z = z.reshape(tuple(kp) + (n,) + tuple(sizes) + (co,))
        ztap = lambda t: z[t]
    else:
        raise ValueError(f"unknown transposed-conv form {form!r}")
    phases = []
    for p in itertools.product(*[range(s) for s in strides]):
        acc = None
        for q in itertools.product(*[range(qq) for qq in kq]):
            zt = ztap(tuple(qi * s + pi for qi, pi, s in zip(q, p, strides)))
            zt = jnp.pad(zt, [(0, 0)] + [(qi, qq - 1 - qi) for qi, qq in zip(q, kq)] + [(0, 0)])
            acc = zt if acc is None else acc + zt
        phases.append(acc)
    y = _interleave_phases(phases, strides, co)
    out = transpose_out_sizes(sizes, k, strides, crop)
    return _crop_or_pad(y, crop, out)


def _crop_or_pad(y, crop, out):
    """Positions [lo, lo + out) of each spatial axis (zeros where that runs past the array)."""
    return _pad(y, [(-lo, lo + o - size, 0) for (lo, _), o, size in zip(crop, out, y.shape[1:-1])])


def conv_transpose_subpixel(x, kernel, strides, crop, core: str | None = None):
    """Strided transposed conv as one stride-1 conv producing every output phase as channels:
    y_full[b, p] = sum_q x[b - q] * k[q*s + p], a correlation with the q-flipped taps; only the
    blocks covering the cropped output are computed, then depth-to-space interleaves phases."""
    nd = kernel.ndim - 2
    sizes = x.shape[1:-1]
    k, (ci, co) = kernel.shape[:nd], kernel.shape[nd:]
    out = transpose_out_sizes(sizes, k, strides, crop)
    taps, kq = _kernel_taps(kernel, strides)
    taps = jnp.flip(taps, axis=tuple(2 * i for i in range(nd)))
    perm = tuple(2 * i for i in range(nd)) + (2 * nd,) + tuple(2 * i + 1 for i in range(nd)) + (2 * nd + 1,)
    ks = taps.transpose(perm).reshape(tuple(kq) + (ci, math.prod(strides) * co))
    b0 = [lo // s for (lo, _), s in zip(crop, strides)]
    nb = [(lo + o - 1) // s - b + 1 for (lo, _), o, s, b in zip(crop, out, strides, b0)]
    # Conv output block j reads x[b0 + j - (q-1) .. b0 + j]: pad left q-1-b0, length nb+q-1.
    xp = _pad(x, [(q - 1 - b, nbl + b - n, 0) for q, b, nbl, n in zip(kq, b0, nb, sizes)])
    y = depth_to_space(conv_valid(xp, ks, core), strides)
    return _crop_or_pad(y, [(lo - b * s, 0) for (lo, _), b, s in zip(crop, b0, strides)], out)


def conv_transpose(x, kernel, strides, crop, form: str | None = None):
    """Any transposed conv (explicit crops) in the fastest CPU formulation for its shape."""
    if form == "subpixel":
        return conv_transpose_subpixel(x, kernel, strides, crop)
    if form == "xla":
        nd = kernel.ndim - 2
        pads = [(kk - 1 - lo, kk - 1 - hi) for kk, (lo, hi) in zip(kernel.shape[:nd], crop)]
        flipped = jnp.flip(kernel, axis=tuple(range(nd)))
        return lax.conv_general_dilated(x, flipped, (1,) * nd, pads, lhs_dilation=strides,
                                        dimension_numbers=dimension_numbers(nd))
    return conv_transpose_taps(x, kernel, strides, crop, form)
