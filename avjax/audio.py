"""Audio helpers shared by the models and the data pipeline."""
from __future__ import annotations

import math

import jax.numpy as jnp


def mu_law_compress(x, mu: float = 255.0):
    """sign(x)·log(1+μ|x|)/log(1+μ): the shift net's input compression (spec §1).

    Spreads quiet samples over more of [-1, 1] so the first conv sees them; works on numpy or JAX.
    """
    x = jnp.asarray(x)
    return jnp.sign(x) * jnp.log1p(mu * jnp.abs(x)) / math.log1p(mu)


def audio_samples_for_frames(num_frames: int, fps: float = 29.97, sample_rate: int = 21000) -> int:
    """Audio samples spanning ``num_frames`` video frames (125 → 87 588, 63 → 44 144)."""
    return int(round(num_frames * sample_rate / fps))
