"""ASMP's audio separator: the 7-layer conditional U-Net of spec/asmp.md §5 (ngf = 64).

Input: log warped mixture magnitude (B, 256, 256, 1), channels last, and the slot's 512-d
conditioning vector (B, 512); output: a ratio mask in [0, 1] of the same size. A condition of
shape (B, K, 512) gives K masks per input (B, K, 256, 256, 1) with the encoder run once per input
(the same numbers, and batch statistics, as repeating each input K times). The condition is
tiled over the 2×2 bottleneck and concatenated (condition first, as in the reference code) before
the first decoder block, its only injection point. Convolutions go through avjax's layer module,
so the CPU formulation (space-to-depth / sub-pixel) is chosen there, not here.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import layers

normal_002 = nn.initializers.normal(0.02)


def gamma_init(key, shape, dtype=jnp.float32):
    """BN scale ~ N(1, 0.02), as the spec's (pix2pix-style) init."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def batch_norm(train: bool, name: str = "bn") -> nn.BatchNorm:
    # PyTorch BN momentum 0.1 == Flax momentum 0.9; eps 1e-5.
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        scale_init=gamma_init, name=name)


class Down(nn.Module):
    """Conv 4×4 stride 2 pad 1 → BN → LeakyReLU(0.2)."""
    features: int
    impl: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = layers.Conv(self.features, (4, 4), 2, padding=1, use_bias=True, kernel_init=normal_002,
                        impl=self.impl, name="conv")(x)
        return nn.leaky_relu(batch_norm(train)(x), 0.2)


class Up(nn.Module):
    """Transposed conv 4×4 stride 2 pad 1 → BN → ReLU (the last block: → sigmoid, no BN).
    With ``film`` (B, D) given: BN output × (1 + γ) + β, (γ, β) = Linear(film), before the ReLU."""
    features: int
    last: bool = False
    impl: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = True, film=None):
        x = layers.ConvTranspose(self.features, (4, 4), 2, padding=1, use_bias=True,
                                 kernel_init=normal_002, impl=self.impl, name="conv")(x)
        if self.last:
            return nn.sigmoid(x)
        x = batch_norm(train)(x)
        if film is not None:
            gb = nn.Dense(2 * self.features, kernel_init=nn.initializers.zeros, name="film")(film)
            g, b = jnp.split(gb[:, None, None, :].astype(x.dtype), 2, axis=-1)
            x = x * (1 + g) + b
        return nn.relu(x)


class ASMPUNet(nn.Module):
    """7 encoder blocks c1..c7 (64, 128, 256, 512, 512, 512, 512 channels, each halving H and W),
    6 decoder blocks u1..u6 fed [previous, skip] and a last transposed conv u7 → sigmoid."""
    ngf: int = 64
    out_channels: int = 1
    impl: str | None = None
    film: bool = False   # also FiLM-modulate every decoder block by the condition (not in the
                         # paper: its only injection point is the bottleneck; a CPU-run option)

    @nn.compact
    def __call__(self, x, cond, train: bool = True):
        g = self.ngf
        enc: Sequence[int] = (g, 2 * g, 4 * g, 8 * g, 8 * g, 8 * g, 8 * g)
        dec: Sequence[int] = (8 * g, 8 * g, 8 * g, 4 * g, 2 * g, g)
        if x.shape[1] % 2 ** len(enc) or x.shape[2] % 2 ** len(enc):
            raise ValueError(f"ASMPUNet needs H and W divisible by 128, got {x.shape}")
        skips = []
        for i, f in enumerate(enc):
            x = Down(f, impl=self.impl, name=f"c{i + 1}")(x, train)
            skips.append(x)
        per_input = cond.ndim == 3   # (B, K, D): K conditions per input, encoder run once
        if per_input:
            b, k = cond.shape[:2]
            # Repeating rows leaves the decoder's batch statistics as if x had been repeated.
            skips = [jnp.repeat(s, k, axis=0) for s in skips]
            x, cond = skips[-1], cond.reshape(b * k, cond.shape[-1])
        c = jnp.broadcast_to(cond[:, None, None, :].astype(x.dtype),
                             x.shape[:3] + (cond.shape[-1],))
        x = jnp.concatenate([c, x], axis=-1)
        for i, f in enumerate(dec):
            x = Up(f, impl=self.impl, name=f"u{i + 1}")(x, train, cond if self.film else None)
            x = jnp.concatenate([x, skips[-(i + 2)]], axis=-1)
        out = Up(self.out_channels, last=True, impl=self.impl, name=f"u{len(dec) + 1}")(x, train)
        return out.reshape((b, k) + out.shape[1:]) if per_input else out
