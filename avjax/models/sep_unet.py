"""The multisensory separation U-Net (spec/multisensory.md §2.2), with optional video fusion.

Input (B, T, F, 2): normalised magnitude and phase/π of the mixture spectrogram (paper:
T=128, F=1024). Output {"fg", "bg"}: (B, T, F, 2) each, tanh-squashed, i.e. in the
[-1, 1]-normalised space the losses are taken in (channel 0: dB, channel 1: phase/π).
4×4 kernels, SAME padding; strides and widths follow the spec table.

Video fusion ("full" model): ``video`` is a sequence of three shift-net feature maps
(B, Tv, H, W, C) or already H,W-averaged (B, Tv, C), merged after conv3, conv4 and conv5
(``fuse_after``): averaged over H, W, resized along time to the U-Net's time size (linear,
half-pixel centres), tiled along frequency and concatenated on channels. The concatenation
(BN output ‖ video) is both the skip and, through LeakyReLU, the next encoder layer's input
(the video features are ReLU outputs, so LeakyReLU leaves them unchanged). Without ``video``
this is the audio-only ("unet_pit") U-Net; both have the same parameter names.

``output="mask"`` (CPU-sized configs) keeps the heads' meaning and space but computes the
magnitude channel as a ratio mask applied to the mixture (see ``masked``): regressing absolute
dB to within ~1 dB (the [-1, 1] scale spans 180 dB) takes the paper's 100k+ steps; a mask gets
there in a CPU-sized run.

Sizes: ``width`` multiplies every layer's channels (heads stay 2), ``num_layers`` keeps the
first L encoder layers of the spec (the decoder mirrors them: deconv i has the stride of encoder
layer L-i+1 and the shape of encoder layer L-i), so a smaller spectrogram can keep the structure
(L=8 for F=256). Needs T % 2^(L-2) == 0 and F % 2^L == 0 so the strides stay exact.
Convolutions go through avjax's layer module (CPU formulation chosen there).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import layers
from avjax.models.asmp_unet import gamma_init, normal_002

#            name     features stride (time, freq)
ENCODER = (("conv1", 64, (1, 2)), ("conv2", 128, (1, 2)), ("conv3", 256, (2, 2)),
           ("conv4", 512, (2, 2)), ("conv5", 512, (2, 2)), ("conv6", 512, (2, 2)),
           ("conv7", 512, (2, 2)), ("conv8", 512, (2, 2)), ("conv9", 512, (2, 2)))


def channels(c: int, width: float) -> int:
    """Channel count ``c`` scaled by the width multiplier, rounded, at least 8."""
    return c if width == 1.0 else max(8, int(round(c * width)))


def layer_plan(num_layers: int = 9):
    """(encoder, decoder) lists of (name, features, stride) for the first ``num_layers``."""
    if not 3 <= num_layers <= len(ENCODER):
        raise ValueError(f"num_layers must be in 3..{len(ENCODER)}, got {num_layers}")
    enc = ENCODER[:num_layers]
    dec = tuple((f"deconv{i}", enc[num_layers - 1 - i][1], enc[num_layers - i][2])
                for i in range(1, num_layers))
    return enc, dec


def pool_video(feat):
    """(B, Tv, H, W, C) → (B, Tv, C) mean over H, W; (B, Tv, C) passes through."""
    return feat.mean(axis=(2, 3)) if feat.ndim == 5 else feat


def tile_video(feat, time_size: int, freq_size: int):
    """(B, Tv, C) → (B, time_size, freq_size, C): linear resize along time, tiled along freq."""
    b, tv, c = feat.shape
    if tv != time_size:
        feat = jax.image.resize(feat, (b, time_size, c), method="linear")
    return jnp.broadcast_to(feat[:, :, None, :], (b, time_size, freq_size, c))


class SepUNet(nn.Module):
    """Encoder: conv → BN (kept as the skip) → LeakyReLU 0.2. Decoder: ReLU(concat(x, skip)) →
    transposed conv → BN; deconv1 takes the last encoder layer alone. Heads: transposed conv
    (stride of conv1, bias, no BN) on ReLU(concat(deconv_last, conv1 skip))."""
    out_channels: int = 2
    bn_momentum: float = 0.9997
    impl: str | None = None
    width: float = 1.0
    num_layers: int = 9
    fuse_after: Sequence[str] = ("conv3", "conv4", "conv5")
    output: str = "spec"       # "spec": tanh(head) (paper) | "mask": ratio mask on the mixture

    def _bn(self, train: bool, name: str):
        return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                            epsilon=1e-5, scale_init=gamma_init, name=name)

    @nn.compact
    def __call__(self, spec, video=None, train: bool = True):
        enc, dec = layer_plan(self.num_layers)
        t_div, f_div = 2 ** max(self.num_layers - 2, 0), 2 ** self.num_layers
        if spec.shape[1] % t_div or spec.shape[2] % f_div:
            raise ValueError(f"SepUNet with {self.num_layers} layers needs T % {t_div} == 0 and "
                             f"F % {f_div} == 0, got {spec.shape}")
        fuse = {}
        if video is not None:
            if len(video) != len(self.fuse_after):
                raise ValueError(f"expected {len(self.fuse_after)} video feature maps "
                                 f"({', '.join(self.fuse_after)}), got {len(video)}")
            fuse = dict(zip(self.fuse_after, (pool_video(v) for v in video)))
        ch = lambda f: channels(f, self.width)
        x, skips = spec, []
        for name, f, s in enc:
            x = layers.Conv(ch(f), (4, 4), s, "SAME", kernel_init=normal_002, impl=self.impl,
                            name=name)(x)
            x = self._bn(train, name + "_bn")(x)
            if name in fuse:
                v = tile_video(fuse[name].astype(x.dtype), x.shape[1], x.shape[2])
                x = jnp.concatenate([x, v], axis=-1)
            skips.append(x)
            x = nn.leaky_relu(x, 0.2)
        x = skips.pop()                                     # last encoder layer's BN output
        for name, f, s in dec:
            if name != "deconv1":
                x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = layers.ConvTranspose(ch(f), (4, 4), s, "SAME", kernel_init=normal_002,
                                     impl=self.impl, name=name)(nn.relu(x))
            x = self._bn(train, name + "_bn")(x)
        x = nn.relu(jnp.concatenate([x, skips.pop()], axis=-1))     # + conv1 skip
        head = lambda name: layers.ConvTranspose(self.out_channels, (4, 4), enc[0][2], "SAME",
                                                 use_bias=True, kernel_init=normal_002,
                                                 impl=self.impl, name=name)
        if self.output == "spec":
            return {"fg": jnp.tanh(head("fg")(x)), "bg": jnp.tanh(head("bg")(x))}
        if self.output != "mask":
            raise ValueError(f"output must be 'spec' or 'mask', got {self.output!r}")
        return {"fg": masked(spec, head("fg")(x)), "bg": masked(spec, head("bg")(x))}


_DB_PER_UNIT = 2.0 / 180.0 * 20.0 / math.log(10.0)   # normalised units per ln(amplitude), 180 dB


def masked(spec, raw):
    """The "mask" output: magnitude = sigmoid(raw₀)·|mixture|, written in the same normalised-dB
    space as the "spec" output (so losses and synthesis are unchanged): N(dB(m·|X|)) =
    N(dB|X|) + (2/180)·20·log10(m) = N(dB|X|) − c·softplus(−raw₀), clipped at −1 (−100 dB);
    phase = tanh(raw₁) as before."""
    mag = jnp.maximum(spec[..., 0] - _DB_PER_UNIT * jax.nn.softplus(-raw[..., 0]), -1.0)
    return jnp.stack([mag, jnp.tanh(raw[..., 1])], axis=-1)


def l1(a, b):
    """(B,) per-example mean absolute error over every axis but the first."""
    return jnp.abs(a - b).reshape(a.shape[0], -1).mean(axis=1)


def head_loss(pred, tgt, phase_weight: float = 0.01):
    """(B,) l1(N S, N G) + phase_weight · l1(N Φ, N Φ_G) for one head; last axis (dB, phase)."""
    return l1(pred[..., 0], tgt[..., 0]) + phase_weight * l1(pred[..., 1], tgt[..., 1])


def full_loss(out, target, phase_weight: float = 0.01):
    """On/off-screen objective (per example): fg vs the on-screen source, bg vs the off-screen
    one. ``target``: (B, 2, T, F, 2) normalised (dB, phase/π) of [on-screen, off-screen]."""
    return (head_loss(out["fg"], target[:, 0], phase_weight)
            + head_loss(out["bg"], target[:, 1], phase_weight))


def pit_losses(out, target, phase_weight: float = 0.01):
    """(per-example loss (B,), assignment (B,) 0 = fg↔source 0, 1 = fg↔source 1): the better of
    the two source assignments, each summing both heads' terms."""
    fg, bg, t0, t1 = out["fg"], out["bg"], target[:, 0], target[:, 1]
    a = head_loss(fg, t0, phase_weight) + head_loss(bg, t1, phase_weight)
    b = head_loss(fg, t1, phase_weight) + head_loss(bg, t0, phase_weight)
    return jnp.minimum(a, b), (b < a).astype(jnp.int32)


def pit_loss(out, target, phase_weight: float = 0.01):
    """unet_pit objective: per example the better of the two source assignments of
    l1(mag) + phase_weight·l1(phase) summed over both heads; batch mean. ``target``: (B, 2, T, F, 2)
    normalised (magnitude, phase/π) of the two sources."""
    return pit_losses(out, target, phase_weight)[0].mean()
