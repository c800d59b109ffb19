"""Shared fixtures: one tiny synthetic record set per session, and the tiny shift config.

Compile time dominates this suite (tiny models, a few steps each), so the environment below is set
when pytest imports this file, before any test module imports jax; subprocesses inherit it:

* LLVM backend optimisation off (``--xla_backend_optimization_level=0``): XLA:CPU compiles the
  test models ~2x faster. XLA's own HLO passes (fusion, layout, SPMD partitioning) still run, so
  the programs are the same computations; no fast-math is involved either way (measured on the
  shift training run: losses agree with the optimised build to ~1e-6 relative).
* One persistent compilation cache for the session, in this process and its subprocesses, so a
  program compiled by one test (or one subprocess run) is loaded by the next one that needs it.
"""
import dataclasses
import os
import shutil
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAST_COMPILE_FLAG = "--xla_backend_optimization_level=0"


def xla_flags(*flags: str) -> str:
    """XLA_FLAGS for a subprocess: the inherited ones (with the suite's compile flag) less any
    fake-device count, plus ``flags`` (where a flag repeats, XLA takes the last value)."""
    inherited = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count=")]
    return " ".join(inherited + list(flags))


if FAST_COMPILE_FLAG not in os.environ.get("XLA_FLAGS", "").split():
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE_FLAG).strip()
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="avjax_test_xla_cache_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
if "jax" in sys.modules:     # imported before this file (a plugin): tell it directly
    import jax
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory):
    """(train manifest, eval manifest) of a short multisensory_local world."""
    from data_pipelines import synthetic
    out = str(tmp_path_factory.mktemp("records"))
    world = dataclasses.replace(synthetic.preset("multisensory_local"), duration_s=5.0)
    train = synthetic.generate_dataset(out, world, 24, split="train", seed=0, name="tiny",
                                       num_shards=2)
    held = synthetic.generate_dataset(out, world, 8, split="eval", seed=99, name="tiny",
                                      num_shards=1)
    return train, held


def tiny_overrides(records, **extra):
    train, held = records
    o = {"model.width": 0.125, "data.num_frames": 4, "data.crop_size": 32, "batch_size": 8,
         "total_steps": 20, "log_every": 1, "checkpoint_every": 10, "eval_every": 20,
         "progress_bar": False, "data.train_path": train, "data.eval_path": held,
         "data.eval_batches": 1, "data.prefetch": 1, "optimizer.name": "sgd",
         # float32 sums run in a different order on 1 and 8 devices (gradients differ ~5e-6);
         # at lr >= 1e-4 this net at init amplifies that chaotically within 20 steps
         # (measured: 1e-4 at step 20 with lr 1e-4, 1e-2 with lr 1e-3), so the layout tests
         # use a small step and check the accumulated updates as well as the losses.
         "optimizer.lr": 3e-5}
    o.update(extra)
    return [f"--config.{k}={v}" for k, v in o.items()]
