"""ASMP's auxiliary networks (spec/asmp.md §6): a 1-channel ResNet-18, the audio classifier and
the motion-direction network. Convolutions go through avjax.models.layers.

- ResNet-18: conv 7×7/2 (1 input channel) → BN → ReLU → max pool 3×3/2 → 4 stages of 2 basic
  blocks (64, 128, 256, 512 channels × ``width``) → global (adaptive) max pool.
- Classifier: ResNet-18 → FC → 15 logits (0 = scene / padding).
- Direction: ResNet-18 → FC 512→512; head Linear 512→256 → BN → LeakyReLU 0.2 → Linear →
  BN → logits (28, or 10 / 8 by config).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from avjax.models import layers


def _bn(train: bool, name: str, momentum: float = 0.9):
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5, name=name)


class BasicBlock(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool):
        y = layers.Conv(self.features, (3, 3), self.strides, padding=1, name="conv1")(x)
        y = nn.relu(_bn(train, "bn1")(y))
        y = layers.Conv(self.features, (3, 3), 1, padding=1, name="conv2")(y)
        y = _bn(train, "bn2")(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            x = layers.Conv(self.features, (1, 1), self.strides, padding=0, name="down")(x)
            x = _bn(train, "down_bn")(x)
        return nn.relu(x + y)


class ResNet18(nn.Module):
    """(B, H, W, 1) → (B, 8·base) features (global max pool). ``stem_strides`` and
    ``stem_pool`` set the stem's downsampling (paper: 7×7 stride 2, then 3×3/2 max pool)."""
    base: int = 64
    stem_strides: tuple[int, int] = (2, 2)
    stem_pool: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        x = layers.Conv(self.base, (7, 7), self.stem_strides, padding=3, name="conv1")(x)
        x = nn.relu(_bn(train, "bn1")(x))
        if self.stem_pool:
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
            x = layers.max_pool(x, (3, 3), (2, 2))
        for s, mult in enumerate((1, 2, 4, 8)):
            for b in range(2):
                x = BasicBlock(self.base * mult, 2 if (s > 0 and b == 0) else 1,
                               name=f"layer{s + 1}_{b}")(x, train)
        return x.max(axis=(1, 2))


class Classifier(nn.Module):
    base: int = 64
    num_classes: int = 15

    @nn.compact
    def __call__(self, x, train: bool):
        return nn.Dense(self.num_classes, name="fc")(ResNet18(self.base, name="resnet")(x, train))


class DirectionNet(nn.Module):
    base: int = 64
    embed: int = 512
    hidden: int = 256
    num_classes: int = 28
    stem_strides: tuple[int, int] = (2, 2)
    stem_pool: bool = True

    @nn.compact
    def __call__(self, x, train: bool):
        trunk = ResNet18(self.base, self.stem_strides, self.stem_pool, name="resnet")
        f = nn.Dense(self.embed, name="fc")(trunk(x, train))
        h = nn.Dense(self.hidden, name="head1")(f)
        h = nn.leaky_relu(_bn(train, "head_bn1")(h), 0.2)
        h = nn.Dense(self.num_classes, name="head2")(h)
        return _bn(train, "head_bn2")(h)
