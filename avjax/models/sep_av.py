"""The on/off-screen ("full") separator of spec/multisensory.md §2: the shift net (§1) run on
the frames and the stereo mixture waveform, its scale0/scale1/scale2 features fused into the
separation U-Net after conv3/conv4/conv5. The whole shift net is trained end to end.

Parameters: {"shift": ShiftNet params, "unet": SepUNet params} (same for batch_stats), so a
shift-net export drops into ``params["shift"]`` (see avjax.tasks.separation.load_shift_init).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from avjax.models.sep_unet import SepUNet
from avjax.models.shift_net import ShiftNet


class AVSeparator(nn.Module):
    shift_width: float = 1.0
    shift_bn_momentum: float = 0.9997
    unet_width: float = 1.0
    unet_layers: int = 9
    unet_bn_momentum: float = 0.9997
    impl: str | None = None
    output: str = "spec"

    def setup(self):
        self.shift = ShiftNet(width=self.shift_width, bn_momentum=self.shift_bn_momentum)
        self.unet = SepUNet(width=self.unet_width, num_layers=self.unet_layers,
                            bn_momentum=self.unet_bn_momentum, impl=self.impl,
                            output=self.output)

    def video_features(self, video, wave, train: bool):
        """video (B, T, H, W, 3) in [-1, 1], wave (B, N, C) → [(B, Tv, C) × 3] pooled features."""
        feats = self.shift(video, wave[:, None], train=train)
        return [feats["scale0"].mean(axis=(2, 3)), feats["scale1"][:, 0].mean(axis=(2, 3)),
                feats["scale2"][:, 0].mean(axis=(2, 3))]

    def __call__(self, spec, video, wave, train: bool = True):
        return self.unet(spec, self.video_features(video, wave, train), train=train)

    def features_and_cam(self, video, wave):
        """Shift-net outputs (incl. "cam") at inference, for the separation tool's overlay."""
        return self.shift(video, wave[:, None], train=False)
