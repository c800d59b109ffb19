"""The benchmarked networks: each at the size of its PyTorch peer, with a train step built the way
the peer's is (forward, loss, backward, SGD-momentum update) so the two can be timed as a ratio.
"""
from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

PEERS_OWN = Path(__file__).resolve().parent / "bench_peers"


def shared_peers_dir() -> Path:
    """../shared/bench relative to the repository root (override with --peers_dir)."""
    return Path(__file__).resolve().parents[2] / "shared" / "bench"


@dataclass
class Net:
    name: str
    model: Any                      # a flax module: model.apply(variables, *inputs, train=...)
    inputs: tuple                   # model arguments (jax arrays)
    loss: Callable                  # loss(output, target) -> scalar
    target: Any
    lr: float
    peer_step: Callable[[Path], list[str]]       # peers_dir -> argv printing one JSON line
    peer_forward: Callable[[Path], list[str]]    # same, for forward-only timing
    notes: list[str] = field(default_factory=list)


def _rand(key, shape, scale=1.0):
    return scale * jax.random.normal(jax.random.key(key), shape, jnp.float32)


def _forward_peer(model: str, peers_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "avjax.bench_peers.forward_torch", model,
            "--peers_dir", str(peers_dir), *args]


def asmp_unet(batch: int = 4, size: int = 256) -> Net:
    from avjax.models.asmp_unet import ASMPUNet
    return Net(
        "asmp_unet", ASMPUNet(), (_rand(0, (batch, size, size, 1)), _rand(1, (batch, 512))),
        lambda y, t: jnp.abs(y - t).mean(),
        jax.random.uniform(jax.random.key(2), (batch, size, size, 1)), 1e-3,
        lambda d: [sys.executable, str(d / "asmp_unet_torch.py"), str(batch), str(size), "5"],
        lambda d: _forward_peer("asmp_unet", d, "--batch", str(batch), "--size", str(size)))


def shift(batch: int = 1, frames: int = 32, size: int = 112) -> Net:
    try:
        from avjax.models.shift_net import ShiftNet
    except ImportError as e:  # written concurrently by another part of the project
        raise ModuleNotFoundError(f"avjax.models.shift_net is not available yet ({e})") from e
    n_audio = int(round(frames * 21000 / 29.97))
    video = _rand(0, (batch, frames, size, size, 3))
    audio = _rand(1, (batch, 2, n_audio, 2), 0.1)
    labels = jnp.tile(jnp.array([1.0, 0.0]), (batch, 1))

    def loss(out, y):
        return optax.sigmoid_binary_cross_entropy(out["logits"], y).mean()

    return Net(
        "shift", ShiftNet(), (video, audio), loss, labels, 1e-2,
        lambda d: [sys.executable, str(d / "shift_torch.py"), "--batch", str(batch), "--frames",
                   str(frames), "--size", str(size), "--steps", "3"],
        lambda d: _forward_peer("shift", d, "--batch", str(batch), "--frames", str(frames),
                                "--size", str(size)),
        notes=["avjax's ShiftNet runs the video tower (V1-V4) once per video and shares it between "
               "the aligned and shifted pass (spec §1); the torch peer runs it per pass."])


def sep_unet(batch: int = 2, frames: int = 128, freqs: int = 1024) -> Net:
    from avjax.models.sep_unet import SepUNet, pit_loss
    spec = _rand(0, (batch, frames, freqs, 2), 0.5)
    target = _rand(1, (batch, 2, frames, freqs, 2), 0.5)
    return Net(
        "sep_unet", SepUNet(), (spec,), pit_loss, target, 1e-4,
        lambda d: [sys.executable, str(PEERS_OWN / "sep_unet_torch.py"), "--batch", str(batch),
                   "--frames", str(frames), "--freqs", str(freqs), "--steps", "5"],
        lambda d: [sys.executable, str(PEERS_OWN / "sep_unet_torch.py"), "--batch", str(batch),
                   "--frames", str(frames), "--freqs", str(freqs), "--steps", "5",
                   "--forward_only"])


NETS = {"asmp_unet": asmp_unet, "shift": shift, "sep_unet": sep_unet}


def _takes_train(model) -> bool:
    return "train" in inspect.signature(type(model).__call__).parameters


def init_variables(net: Net):
    kw = {"train": False} if _takes_train(net.model) else {}
    return jax.jit(lambda k: net.model.init(k, *net.inputs, **kw))(jax.random.key(0))


def make_steps(net: Net, variables):
    """(train_step(state) -> (state, loss), forward(variables) -> output), both jitted; the train
    step donates its state like avjax's training loop does."""
    model, inputs, target = net.model, net.inputs, net.target
    has_train = _takes_train(model)
    tx = optax.sgd(net.lr, momentum=0.9)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}

    def step(state):
        params, rest, opt = state

        def objective(p):
            kw = {"train": True} if has_train else {}
            out, upd = model.apply({"params": p, **rest}, *inputs, mutable=list(rest), **kw)
            return net.loss(out, target), upd

        (loss, rest), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), rest, opt), loss

    def forward(variables):
        kw = {"train": False} if has_train else {}
        return model.apply(variables, *inputs, **kw)

    state = (params, rest, tx.init(params))
    return jax.jit(step, donate_argnums=0), jax.jit(forward), state
