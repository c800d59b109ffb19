"""The device mesh and where every array lives on it.

Batches are split over all devices (axes "data" and "model" together); parameters are replicated,
or, with mesh.model > 1, split FSDP-style along their largest divisible axis over "model".
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from avjax.errors import UserError

BATCH_AXES = ("data", "model")


def make_mesh(mesh_cfg) -> Mesh:
    devices = jax.devices()
    n = len(devices)
    model = int(mesh_cfg.model)
    data = int(mesh_cfg.data) if int(mesh_cfg.data) > 0 else n // max(model, 1)
    if model < 1 or data * model != n:
        raise UserError(f"mesh data={mesh_cfg.data} × model={mesh_cfg.model} does not cover the "
                        f"{n} devices; set --config.mesh.data=-1 and a --config.mesh.model "
                        f"that divides {n}")
    grid = np.asarray(devices).reshape(data, model)
    return Mesh(grid, ("data", "model"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _param_spec(shape, model_size: int, min_size: int = 2 ** 14) -> P:
    if model_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    axes = sorted(range(len(shape)), key=lambda a: -shape[a])
    for a in axes:
        if shape[a] % model_size == 0:
            spec = [None] * len(shape)
            spec[a] = "model"
            return P(*spec)
    return P()


def state_shardings(abstract_state, mesh: Mesh):
    """NamedShardings for a train-state pytree of ShapeDtypeStructs."""
    model_size = mesh.shape["model"]
    return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(x.shape, model_size)),
                        abstract_state)


def put(tree, shardings):
    """Host values that every process holds identically → global arrays (works multi-host,
    where device_put onto non-addressable devices is refused)."""
    def one(x, s):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])
    return jax.tree.map(one, tree, shardings)


def global_batch(local_batch, mesh: Mesh):
    """This process's numpy rows → one global jax.Array per leaf, split over the mesh."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        local_batch)


def check_batch_size(batch_size: int, mesh: Mesh) -> int:
    """The per-process batch; refuses sizes the devices or processes cannot split evenly."""
    n, procs = mesh.size, jax.process_count()
    if batch_size % n or batch_size % procs:
        raise UserError(f"batch_size {batch_size} does not split over {n} devices in {procs} "
                        f"processes; use a multiple of {n}")
    return batch_size // procs
