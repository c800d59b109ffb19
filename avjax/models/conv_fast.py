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
- ``conv_tfold``: a 3-D conv as one 2-D conv, temporal taps stacked into channels and frames
  folded into the batch. XLA:CPU's 2-D convolution (YNNPACK/Eigen) packs its own patches and runs
  at 0.5-0.8 of the GEMM rate where an explicit im2col of a big activation is memory-bound (the
  shift net's V1, K = 5*7*7*3 = 735 columns of 3-float chunks: 5x faster forward, 4x faster
  kernel gradient than space-to-depth; its 3x3x3 blocks at 28x28 and 14x14: 2-3x).
- ``max_pool``: max of strided views with a select_and_scatter-exact custom gradient (XLA:CPU's
  own select_and_scatter took ~50 ms for the shift net's V2 where this takes ~5 ms).

The layer-shape heuristics were calibrated with ``python -m avjax.bench --per-layer`` on a 2-core
AVX-512 machine (≈200 GFLOP/s f32 GEMM); ``conv``/``conv_transpose`` accept ``form=`` to force one.
"""
from __future__ import annotations

import functools
import itertools
import math

import jax
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
    out = [n - w + 1 for n, w in zip(x_shape[1:-1], window)]
    m_out = x_shape[0] * math.prod(out)
    if taps == 1:
        return "im2col"
    if tuple(window) == (3, 3) and min(out) >= 6 and max(ci, co) <= 128:
        # The ASMP ResNets' 3×3 blocks (16-128 channels, 6-32 wide): XLA's own conv, fwd+bwd
        # 5.5 vs 15 ms for 48×32×12×16 (im2col), 4.1 vs 8.6 for 16×32×32×16; at 2-4 wide it
        # falls behind (52 vs 6 ms for 48×4×2×128), so those stay with the GEMM cores.
        return "xla"
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


def conv_tfold(x, kernel, strides, pads):
    """3-D conv as one 2-D conv: the kt temporal taps are stacked into channels (kt strided views
    of the T-padded input, concatenated: channel = (tap, c)) and the output frames folded into
    the batch, then XLA's 2-D convolution (Eigen's spatial conv, which packs its own patches and
    runs near the GEMM rate at stride 1 and 2, forward and kernel gradient) does (H, W). Exact:
    y[t] = sum_{d,i,j} x[t*s + d, i, j] k[d, i, j] is the same sum in another order. The choice
    for activation-heavy 3-D layers, whose im2col patch matrix would cost more to write than the
    GEMM (V1: K = 5*7*7*3 = 735 columns of 3-float chunks; 3x3x3 res-blocks at large H, W)."""
    n = x.shape[0]
    kt, kh, kw, ci, co = kernel.shape
    out = conv_out_sizes(x.shape[1:-1], kernel.shape[:3], strides, pads)
    st = strides[0]
    xp = _pad(x, [(pads[0][0], pads[0][1], 0), (0, 0, 0), (0, 0, 0)])
    views = [lax.slice_in_dim(xp, d, d + (out[0] - 1) * st + 1, st, axis=1) for d in range(kt)]
    v = views[0] if kt == 1 else jnp.concatenate(views, axis=-1)        # (n, To, H, W, kt*ci)
    v = v.reshape((n * out[0],) + v.shape[2:])
    k2 = kernel.transpose(1, 2, 0, 3, 4).reshape(kh, kw, kt * ci, co)
    y = xla_conv(v, k2, tuple(strides[1:]), list(pads[1:]))
    return y.reshape((n,) + tuple(out) + (co,))


def _tfold_shift(x, kernel, strides, pads):
    """Stride-1-in-time conv_tfold computed the other way round: one 2-D conv of every padded
    frame producing all kt temporal taps as output channels (kt*co: wider GEMMs than co alone),
    then y[t] = sum_d Z[t + d, taps d]. Cheaper forward for narrow layers (co = 64)."""
    n = x.shape[0]
    kt, kh, kw, ci, co = kernel.shape
    out = conv_out_sizes(x.shape[1:-1], kernel.shape[:3], strides, pads)
    xp = _pad(x, [(pads[0][0], pads[0][1], 0), (0, 0, 0), (0, 0, 0)])
    tp = xp.shape[1]
    k2 = kernel.transpose(1, 2, 3, 0, 4).reshape(kh, kw, ci, kt * co)
    z = xla_conv(xp.reshape((n * tp,) + xp.shape[2:]), k2, tuple(strides[1:]), list(pads[1:]))
    z = z.reshape((n, tp) + z.shape[1:])
    return sum(z[:, d:d + out[0], ..., d * co:(d + 1) * co] for d in range(kt))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _tfold_shift_fwd(x, kernel, strides, pads):
    """_tfold_shift's forward with conv_tfold's derivatives (the same bilinear map, so exact):
    the shifted form's own backward is slower (its input gradient sums kt*co-wide products).
    Stride 1 in time only."""
    return _tfold_shift(x, kernel, strides, pads)


@_tfold_shift_fwd.defjvp
def _tfold_shift_jvp(strides, pads, primals, tangents):
    x, kernel = primals
    dx, dk = tangents
    y = _tfold_shift(x, kernel, strides, pads)
    return y, conv_tfold(dx, kernel, strides, pads) + conv_tfold(x, dk, strides, pads)


# 3-D layers whose im2col patch matrix would exceed this many bytes use conv_tfold.
_TFOLD_MIN_PATCH_BYTES = 24 * 2 ** 20


def conv_choice(x_shape, k_shape, strides) -> str:
    """tfold for activation-heavy 3-D layers (im2col patches over _TFOLD_MIN_PATCH_BYTES;
    tfold_shift when narrow and stride 1 in time); else stride-1 layers use the stride-1 core
    directly; strided 3-D layers im2col; other strided layers im2col when weight-heavy (kernel
    outweighs 4x the output positions), else space-to-depth."""
    nd = len(k_shape) - 2
    m_out = x_shape[0] * math.prod(-(-n // s) for n, s in zip(x_shape[1:-1], strides))
    if nd == 3 and math.prod(k_shape[:3]) > 1:
        if 4 * m_out * math.prod(k_shape[:4]) > _TFOLD_MIN_PATCH_BYTES:
            # Narrow stride-1-in-time layers (the shift net's v3 block, 64 channels at 16x28x28):
            # all kt taps as output channels makes the GEMM kt times wider; forward measured
            # 23.6 vs 33.7 ms (co = 128: 20.2 vs 16.4, so only co <= 64).
            if strides[0] == 1 and k_shape[-1] <= 64 and k_shape[0] > 1:
                return "tfold_shift"
            return "tfold"
    if all(s == 1 for s in strides):
        return "stride1"
    if nd == 3:
        # Strided 3-D layers below the tfold size (the shift net's v4, m3, m5 and their 1x1x1
        # shortcuts): im2col measured 0.4-5.2 ms against 1.2-7.8 for space-to-depth.
        return "im2col"
    taps, co = math.prod(k_shape[:nd]), k_shape[-1]
    return "im2col" if taps * co > 4 * m_out else "space_to_depth"


def conv(x, kernel, strides, pads, form: str | None = None):
    """Any conv (explicit pads) in the fastest CPU formulation for its shape."""
    nd = kernel.ndim - 2
    form = form or conv_choice(x.shape, kernel.shape, strides)
    if form == "stride1":
        return conv_valid(_pad(x, [(lo, hi, 0) for lo, hi in pads]), kernel)
    if form == "tfold":
        return conv_tfold(x, kernel, strides, pads)
    if form == "tfold_shift":
        return _tfold_shift_fwd(x, kernel, tuple(strides), tuple(tuple(p) for p in pads))
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


# ---- max pooling --------------------------------------------------------------------------------

def max_pool(x, window, strides, pads):
    """Max pool of channels-last ``x`` (explicit (lo, hi) pads, -inf padding) as the elementwise
    max of the prod(window) strided views, with a custom gradient that sends each output's
    cotangent to the *first* input of its window (row-major tap order) attaining the max: the
    rule of XLA's select_and_scatter (the gradient of lax.reduce_window max), ties included, but
    as a few masked pads that XLA:CPU fuses instead of its slow scatter loop."""
    return _max_pool(x, tuple(window), tuple(strides), tuple(tuple(p) for p in pads))


def _max_pool_views(x, window, strides, pads):
    xp = lax.pad(x, jnp.array(-jnp.inf, x.dtype),
                 [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)])
    out = conv_out_sizes(x.shape[1:-1], window, strides, pads)
    return xp.shape, out, _window_slices(xp, window, out, strides)


def _max_pool_impl(x, window, strides, pads):
    _, _, views = _max_pool_views(x, window, strides, pads)
    y = views[0]
    for v in views[1:]:
        y = jnp.maximum(y, v)
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, pads):
    return _max_pool_impl(x, window, strides, pads)


def _max_pool_fwd(x, window, strides, pads):
    y = _max_pool_impl(x, window, strides, pads)
    return y, (x, y)


def _max_pool_bwd(window, strides, pads, res, g):
    x, y = res
    xp_shape, out, views = _max_pool_views(x, window, strides, pads)
    taken = None
    dxp = None
    zero = jnp.zeros((), g.dtype)
    for t, v in zip(itertools.product(*[range(w) for w in window]), views):
        hit = v == y
        if taken is not None:
            hit = hit & ~taken
        taken = hit if taken is None else taken | hit
        # transpose of the strided slice starting at tap t: interior-pad by s-1, shift by t
        cfg = [(0, 0, 0)] + [(ti, size - ti - (o - 1) * s - 1, s - 1)
                             for ti, size, o, s in zip(t, xp_shape[1:-1], out, strides)] + [(0, 0, 0)]
        part = lax.pad(jnp.where(hit, g, zero), zero, cfg)
        dxp = part if dxp is None else dxp + part
    crop = [(0, 0, 0)] + [(-lo, -hi, 0) for lo, hi in pads] + [(0, 0, 0)]
    return (lax.pad(dxp, zero, crop),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
