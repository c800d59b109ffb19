"""The multisensory separation U-Net (spec/multisensory.md §2.2), audio-only ("unet_pit") variant.

Input (B, T=128, F=1024, 2): normalised magnitude and phase/π of the mixture spectrogram.
Output {"fg", "bg"}: (B, T, F, 2) each, tanh-squashed, i.e. in the [-1, 1]-normalised space the
losses are taken in. 4×4 kernels, SAME padding; strides and widths follow the spec table. The full
(video-fused) variant adds shift-net features after conv3..conv5; this module leaves them out.
Convolutions go through avjax's layer module (CPU formulation chosen there).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.models import layers
from avjax.models.asmp_unet import gamma_init, normal_002

#            name     features stride
ENCODER = (("conv1", 64, (1, 2)), ("conv2", 128, (1, 2)), ("conv3", 256, (2, 2)),
           ("conv4", 512, (2, 2)), ("conv5", 512, (2, 2)), ("conv6", 512, (2, 2)),
           ("conv7", 512, (2, 2)), ("conv8", 512, (2, 2)), ("conv9", 512, (2, 2)))
DECODER = (("deconv1", 512, (2, 2)), ("deconv2", 512, (2, 2)), ("deconv3", 512, (2, 2)),
           ("deconv4", 512, (2, 2)), ("deconv5", 512, (2, 2)), ("deconv6", 256, (2, 2)),
           ("deconv7", 128, (2, 2)), ("deconv8", 64, (1, 2)))


class SepUNet(nn.Module):
    """Encoder: conv → BN (kept as the skip) → LeakyReLU 0.2. Decoder: ReLU(concat(x, skip)) →
    transposed conv → BN; deconv1 takes conv9 alone. Heads: transposed conv (stride 1,2, bias)."""
    out_channels: int = 2
    bn_momentum: float = 0.9997
    impl: str | None = None

    def _bn(self, train: bool, name: str):
        return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                            epsilon=1e-5, scale_init=gamma_init, name=name)

    @nn.compact
    def __call__(self, spec, train: bool = True):
        if spec.shape[1] % 128 or spec.shape[2] % 512:
            raise ValueError(f"SepUNet needs T % 128 == 0 and F % 512 == 0, got {spec.shape}")
        x, skips = spec, []
        for name, f, s in ENCODER:
            x = layers.Conv(f, (4, 4), s, "SAME", kernel_init=normal_002, impl=self.impl,
                            name=name)(x)
            x = self._bn(train, name + "_bn")(x)
            skips.append(x)
            x = nn.leaky_relu(x, 0.2)
        x = skips.pop()                                     # conv9's BN output
        for name, f, s in DECODER:
            if name != "deconv1":
                x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = layers.ConvTranspose(f, (4, 4), s, "SAME", kernel_init=normal_002,
                                     impl=self.impl, name=name)(nn.relu(x))
            x = self._bn(train, name + "_bn")(x)
        x = nn.relu(jnp.concatenate([x, skips.pop()], axis=-1))     # + conv1 skip: 128 ch
        head = lambda name: layers.ConvTranspose(self.out_channels, (4, 4), (1, 2), "SAME",
                                                 use_bias=True, kernel_init=normal_002,
                                                 impl=self.impl, name=name)
        return {"fg": jnp.tanh(head("fg")(x)), "bg": jnp.tanh(head("bg")(x))}


def pit_loss(out, target, phase_weight: float = 0.01):
    """unet_pit objective: per example the better of the two source assignments of
    l1(mag) + phase_weight·l1(phase) summed over both heads; batch mean. ``target``: (B, 2, T, F, 2)
    normalised (magnitude, phase/π) of the two sources."""
    def l1(a, b):  # (B,) per-example mean over time×frequency
        return jnp.abs(a - b).mean(axis=(1, 2))

    def term(pred, tgt):
        return l1(pred[..., 0], tgt[..., 0]) + phase_weight * l1(pred[..., 1], tgt[..., 1])

    fg, bg, t0, t1 = out["fg"], out["bg"], target[:, 0], target[:, 1]
    return jnp.minimum(term(fg, t0) + term(bg, t1), term(fg, t1) + term(bg, t0)).mean()
