"""What a task plugs into the one training loop (avjax.train).

A task module under avjax/tasks/ exposes ``Task(config)``, looked up by ``config.task`` with
importlib (no registry). The loop owns sharding, the optimiser, checkpoints, logging and the data
iterator; a task owns its model, its batches and its numbers.
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol

import jax
import numpy as np

Batch = Mapping[str, np.ndarray]
Variables = Mapping[str, Any]      # {"params": ..., "batch_stats": ..., ...}
Metrics = Mapping[str, jax.Array]


class Task(Protocol):
    name: str

    def example_batch(self, batch_size: int) -> Batch:
        """A batch of zeros with the exact shapes and dtypes the train step sees."""

    def init(self, rng: jax.Array, batch: Batch) -> Variables:
        """Initial model variables (called under jax.eval_shape and jit: pure)."""

    def loss(self, params, model_state, batch: Batch, rng: jax.Array, train: bool
             ) -> tuple[jax.Array, tuple[Metrics, Any]]:
        """(total objective, (metrics, new model_state)). Metrics are batch means."""

    def eval_metrics(self, variables: Variables, batch: Batch) -> Metrics:
        """Per-batch metrics for held-out data, with ``weight`` (number of examples)."""

    # Optional, for metrics computed on the host (bss_eval, confusion matrices): a task that
    # defines ``eval_outputs(variables, batch) -> {name: array}`` (jitted; replicated result) and
    # ``make_evaluator()`` gets, per held-out batch, ``evaluator.update(numpy outputs)``, and
    # reports ``evaluator.result() -> {metric: float}``. If the evaluator also has
    # ``write_report(out_dir, step, metrics)``, `python -m avjax.evaluate` calls it (tables, PNGs).

    def train_data(self, process_index: int, process_count: int, local_batch: int) -> Any:
        """A grain IterDataset of numpy batches for this process (infinite, checkpointable)."""

    def eval_data(self, process_index: int, process_count: int, local_batch: int) -> Iterator[Batch]:
        """One pass over the held-out split, as numpy batches for this process."""


def apply_model(model, params, model_state, *args, train: bool):
    """``model.apply`` with the task's explicit state: in training the mutable collections
    (BatchNorm statistics) come back updated, at evaluation they pass through unchanged."""
    variables = {"params": params, **model_state}
    if train:
        out, updates = model.apply(variables, *args, train=True, mutable=list(model_state))
        return out, {**model_state, **updates}
    return model.apply(variables, *args, train=False), model_state
