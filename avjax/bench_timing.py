"""Wall-clock timing for the benchmark, robust to other processes sharing the CPU.

On a shared 2-core machine a test run by someone else can double a measurement. Each timed call
also records how much CPU *other* processes used meanwhile (from /proc/stat minus our own
/proc/self/stat); samples taken while others were busy are retried a few times, and the foreign
load that remained is reported next to the number instead of being hidden.
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy ticks of the whole machine, ticks of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            s = f.read().rsplit(")", 1)[1].split()
        busy = sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # all but idle and iowait
        return busy, int(s[11]) + int(s[12])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Timing:
    seconds: float          # median of the kept samples
    foreign_cores: float    # mean CPU cores used by other processes during the kept samples
    samples: int


def time_fn(fn, *args, steps: int = 5, warmup: int = 1, max_foreign: float = 0.25,
            retries: int = 2) -> Timing:
    """Median wall time of ``fn(*args)`` (blocked until ready) over ``steps`` samples after warm-up.
    A sample during which other processes used more than ``max_foreign`` cores is retaken, at
    most ``retries`` extra times per sample."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times, foreign = [], []
    for _ in range(steps):
        for attempt in range(retries + 1):
            t0, c0 = time.perf_counter(), _cpu_ticks()
            jax.block_until_ready(fn(*args))
            dt, c1 = time.perf_counter() - t0, _cpu_ticks()
            f = 0.0 if c0 is None or c1 is None else max(
                0.0, ((c1[0] - c0[0]) - (c1[1] - c0[1])) / _HZ / max(dt, 1e-9))
            if f <= max_foreign or attempt == retries:
                break
            time.sleep(min(2.0, 5 * dt))
        times.append(dt)
        foreign.append(f)
    return Timing(statistics.median(times), sum(foreign) / len(foreign), len(times))


def matmul_peak_gflops(n: int = 2048, steps: int = 5) -> float:
    """This machine's float32 matmul rate through XLA (the ceiling the conv layers aim for)."""
    a = jnp.asarray(jax.random.normal(jax.random.key(0), (n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    t = time_fn(f, a, steps=steps, warmup=2)
    return 2 * n ** 3 / t.seconds / 1e9


def foreign_load_now(seconds: float = 0.5) -> float:
    """CPU cores used by other processes over the next ``seconds`` (0 if unknown)."""
    c0 = _cpu_ticks()
    time.sleep(seconds)
    c1 = _cpu_ticks()
    if c0 is None or c1 is None:
        return 0.0
    return max(0.0, ((c1[0] - c0[0]) - (c1[1] - c0[1])) / _HZ / seconds)


def wait_for_quiet(max_foreign: float = 0.25, timeout: float = 60.0) -> float:
    """Wait (up to ``timeout`` s) until other processes leave the CPU; returns the last load seen."""
    end = time.time() + timeout
    load = foreign_load_now()
    while load > max_foreign and time.time() < end:
        load = foreign_load_now()
    return load
