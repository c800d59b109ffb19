"""Grain pipelines: global shuffle, per-process split, per-example randomness tied to the
global example index, batching and read-ahead.

Process p of P takes rows [p·L, (p+1)·L) of every global batch of G = P·L examples, so the
global batch (and, with the rng keyed on the global index, every crop and shift) is the same
whatever the number of processes or devices.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import grain
import numpy as np


class _ProcessRows(grain.MapDataset):
    """Element k of this process = global element (k // L)·G + p·L + k % L."""

    def __init__(self, parent: grain.MapDataset, process_index: int, process_count: int,
                 local_batch: int):
        super().__init__(parent)
        self._p, self._n, self._l = process_index, process_count, local_batch

    def __len__(self) -> int:
        return len(self._parent) // self._n

    def __getitem__(self, k):
        if isinstance(k, slice):
            return self.slice(k)
        g = (k // self._l) * self._l * self._n + self._p * self._l + k % self._l
        return self._parent[g]


class _IndexedRandomMap(grain.MapDataset):
    """fn(element, rng) with rng from (seed, global index): identical on any process layout."""

    def __init__(self, parent: grain.MapDataset, fn: Callable, seed: int):
        super().__init__(parent)
        self._fn, self._seed = fn, seed

    def __len__(self) -> int:
        return len(self._parent)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        rng = np.random.default_rng([self._seed, index])
        return self._fn(self._parent[index], rng)


def stack(examples: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def train_dataset(source, transform: Callable[[Any, np.random.Generator], dict], *, seed: int,
                  process_index: int, process_count: int, local_batch: int,
                  shuffle: bool = True, workers: int = 0, prefetch: int = 2) -> grain.IterDataset:
    """Infinite, checkpointable batches for this process."""
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat()
    ds = _IndexedRandomMap(ds, transform, seed)
    ds = _ProcessRows(ds, process_index, process_count, local_batch)
    ds = ds.batch(local_batch, drop_remainder=True, batch_fn=stack)
    # Read-ahead of `prefetch` batches by at most one thread per core: more threads than cores
    # only add GIL hand-overs that the training loop's own thread then waits on.
    threads = max(1, min(prefetch, os.cpu_count() or 1))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                              prefetch_buffer_size=max(1, prefetch)))
    if workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return it


def eval_batches(source, transform: Callable[[Any, np.random.Generator], dict], *, seed: int,
                 process_index: int, process_count: int, local_batch: int,
                 max_batches: int = 0):
    """One deterministic pass; the last global batch is padded with weight-0 copies so every
    process runs the same number of steps."""
    n = len(source)
    global_batch = local_batch * process_count
    num_batches = -(-n // global_batch)
    if max_batches:
        num_batches = min(num_batches, max_batches)
    for b in range(num_batches):
        rows = []
        for j in range(local_batch):
            g = b * global_batch + process_index * local_batch + j
            ex = transform(source[min(g, n - 1)], np.random.default_rng([seed, g]))
            ex["weight"] = np.float32(g < n)
            rows.append(ex)
        yield stack(rows)


def train_dataset_for(config, source, transform, *, process_index: int, process_count: int,
                      local_batch: int) -> grain.IterDataset:
    """``train_dataset`` with the seed and ``data.*`` settings every task takes from its config."""
    d = config.data
    return train_dataset(source, transform, seed=int(config.seed), process_index=process_index,
                         process_count=process_count, local_batch=local_batch,
                         shuffle=bool(d.shuffle), workers=int(d.workers), prefetch=int(d.prefetch))


def eval_batches_for(config, source, transform, *, process_index: int, process_count: int,
                     local_batch: int):
    """``eval_batches`` with the held-out seed and ``data.eval_batches`` from the config."""
    return eval_batches(source, transform, seed=int(config.seed) + 17,
                        process_index=process_index, process_count=process_count,
                        local_batch=local_batch, max_batches=int(config.data.eval_batches))
