"""Per-layer view of a network for the benchmark: which conv / pool / BatchNorm layers it runs at
which shapes (traced from the model itself), their analytic FLOPs, and each layer's own forward
and forward+backward time, so a gap to the PyTorch peer can be located.

FLOPs are counted from shapes (2 per multiply-add, forward): XLA's cost analysis would count the
zeros that a dilated (transposed) convolution multiplies, which no implementation needs to do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax.bench_timing import time_fn
from avjax.models import layers


@dataclass
class LayerCall:
    kind: str                  # conv | conv_transpose | max_pool | batch_norm | dense
    name: str
    x_shape: tuple
    kernel_shape: tuple = ()
    strides: tuple = ()
    pads: tuple = ()
    impl: str | None = None

    @property
    def flops(self) -> float:
        """Forward FLOPs (2·MACs) of the layer's useful work."""
        if self.kind in ("conv", "conv_transpose"):
            nd = len(self.kernel_shape) - 2
            k, (ci, co) = self.kernel_shape[:nd], self.kernel_shape[nd:]
            if self.kind == "conv":
                sp = [(n + lo + hi - kk) // s + 1 for n, (lo, hi), kk, s
                      in zip(self.x_shape[1:-1], self.pads, k, self.strides)]
            else:  # every input pixel meets every kernel tap (cropped outputs included)
                sp = self.x_shape[1:-1]
            return 2.0 * self.x_shape[0] * math.prod(sp) * math.prod(k) * ci * co
        if self.kind == "dense":
            return 2.0 * math.prod(self.x_shape[:-1]) * math.prod(self.kernel_shape)
        return 0.0

    @property
    def signature(self):
        return (self.kind, self.x_shape, self.kernel_shape, self.strides, tuple(self.pads))


def record(model, inputs, train_kw: dict) -> list[LayerCall]:
    """Trace ``model.init`` abstractly and list every conv, pool, BatchNorm and Dense call."""
    extra: list[LayerCall] = []

    def intercept(next_fun, args, kwargs, context):
        mod = context.module
        if context.method_name == "__call__" and isinstance(mod, (nn.BatchNorm, nn.Dense)) and args:
            x = args[0]
            if isinstance(mod, nn.BatchNorm):
                extra.append(LayerCall("batch_norm", "/".join(mod.scope.path), tuple(x.shape)))
            else:
                extra.append(LayerCall("dense", "/".join(mod.scope.path), tuple(x.shape),
                                       (x.shape[-1], mod.features)))
        return next_fun(*args, **kwargs)

    with layers.record_calls() as calls, nn.intercept_methods(intercept):
        jax.eval_shape(lambda k: model.init(k, *inputs, **train_kw), jax.random.key(0))
    out = [LayerCall(c["kind"], c["name"], tuple(c["x_shape"]), tuple(c["kernel_shape"]),
                     tuple(c["strides"]), tuple(tuple(p) for p in c["pads"]), c["impl"])
           for c in calls]
    return out + extra


def layer_fn(call: LayerCall, impl: str | None):
    """(f(x, w) -> y, example args) for one recorded layer; w is None where there is none."""
    key = jax.random.key(0)
    x = jax.random.normal(key, call.x_shape, jnp.float32)
    if call.kind in ("conv", "conv_transpose"):
        w = 0.02 * jax.random.normal(key, call.kernel_shape, jnp.float32)
        op = layers.conv if call.kind == "conv" else layers.conv_transpose
        return (lambda x, w: op(x, w, call.strides, list(call.pads), impl or call.impl)), (x, w)
    if call.kind == "max_pool":
        pad = "SAME" if any(p != (0, 0) for p in call.pads) else "VALID"
        return (lambda x, w: layers.max_pool(x, call.kernel_shape, call.strides, pad)), (x, None)
    if call.kind == "batch_norm":
        bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
        v = bn.init(key, x)

        def f(x, w):
            y, _ = bn.apply({"params": w, **{k: a for k, a in v.items() if k != "params"}}, x,
                            mutable=["batch_stats"])
            return y
        return f, (x, v.get("params", {}))
    if call.kind == "dense":
        w = 0.02 * jax.random.normal(key, call.kernel_shape, jnp.float32)
        return (lambda x, w: x @ w), (x, w)
    raise ValueError(call.kind)


def time_layer(call: LayerCall, impl: str | None = None, steps: int = 3):
    """(forward seconds, forward+backward seconds) of one layer at its recorded shape; the
    backward gives gradients for the input and the weights, like in a train step."""
    f, (x, w) = layer_fn(call, impl)
    fwd = jax.jit(f)
    y = jax.eval_shape(f, x, w)
    g = jnp.ones(y.shape, y.dtype)

    def fwd_bwd(x, w, g):
        _, vjp = jax.vjp(f, x, w)
        return vjp(g)

    t_f = time_fn(fwd, x, w, steps=steps)
    t_fb = time_fn(jax.jit(fwd_bwd), x, w, g, steps=steps)
    return t_f.seconds, t_fb.seconds
