"""Shared by the separation tests: tiny configs and a randomly initialised exported model."""
import json
import os

import jax
import numpy as np

from tests.conftest import ROOT

TINY = {"model.unet_width": 0.125, "model.unet_layers": 5, "model.shift_width": 0.125,
        "data.num_frames": 16, "stft.frame_length": 128, "stft.hop": 66,
        "stft.fft_length": 128}


def tiny_config(variant: str, **extra):
    from avjax.config_cli import apply_overrides, load_config_file
    name = "sep_full.py" if variant == "full" else "sep_unet_pit.py"
    config = load_config_file(os.path.join(ROOT, "configs", name) + ":local")
    apply_overrides(config, {k: str(v) for k, v in {**TINY, **extra}.items()})
    return config


def random_variables(task, seed: int = 0):
    """Random parameters of the right shapes without compiling init (jax.eval_shape only):
    He-normal kernels, zero biases, BN scale 1 / mean 0 / var 1."""
    shapes = jax.eval_shape(task.init, jax.random.key(0), task.example_batch(2))
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = getattr(path[-1], "key", "")
        if name in ("mean", "bias"):
            return np.zeros(s.shape, s.dtype)
        if name in ("var", "scale"):
            return np.ones(s.shape, s.dtype)
        fan_in = int(np.prod(s.shape[:-1])) or 1
        return (rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in)).astype(s.dtype)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def write_random_export(out: str, config) -> str:
    """An export (python -m avjax.export's format) of a randomly initialised model."""
    import orbax.checkpoint as ocp
    from avjax import export, tasks
    from avjax.config_cli import config_to_json
    task = tasks.load(config)
    variables = random_variables(task)
    os.makedirs(out, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(os.path.abspath(out), "variables"), variables)
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config_to_json(config))
    with open(os.path.join(out, "export.json"), "w") as f:
        json.dump({"format": export.FORMAT, "task": "separation", "step": 0,
                   "num_params": int(sum(np.size(x) for x in
                                         jax.tree.leaves(variables["params"])))}, f)
    return out


def reference_convs():
    """Generator for a module-scoped fixture: the tiny test models compile 3x faster with the
    reference conv formulation (tests/test_layers.py checks that both give the same numbers)."""
    from avjax.models import layers
    layers.set_default_impl("reference")
    try:
        yield
    finally:
        layers.set_default_impl(None)
