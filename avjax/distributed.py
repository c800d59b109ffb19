"""Multi-host start-up driven by the environment, so one command serves laptops and pods.

- avjax launch scripts (launch/local_multiprocess.sh, SLURM) set JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID.
- On a TPU pod or under SLURM without those, jax.distributed.initialize() detects the cluster.
CPU processes talk through gloo.
"""
from __future__ import annotations

import os

import jax

_done = False


def _cluster_detected() -> bool:
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    return bool(os.environ.get("TPU_WORKER_HOSTNAMES", "").count(","))


def maybe_initialize() -> None:
    global _done
    if _done:
        return
    _done = True
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    nprocs = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
    if addr and nprocs > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=addr, num_processes=nprocs,
                                   process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif _cluster_detected():
        jax.distributed.initialize()
