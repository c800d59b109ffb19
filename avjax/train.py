"""The one training loop every task runs through.

State is an explicit pytree, created already sharded (jit with out_shardings over the mesh); the
step is jitted once, donates its state and folds the step into the rng, so a resumed run repeats
an uninterrupted one exactly (data order included: the grain iterator state is checkpointed).
"""
from __future__ import annotations

import functools
import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax import checkpointing, distributed, optim, sharding, tasks
from avjax.config_cli import config_to_json
from avjax.errors import UserError
from avjax.metrics_log import MetricsWriter
from avjax.step_timing import DeviceIdleMeter


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any      # non-trainable collections (batch statistics)
    opt_state: Any


class TrainingDiverged(UserError):
    pass


def _train_step(task, tx, state: TrainState, batch, rng):
    step_rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(task.loss, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch,
                                                    step_rng, True)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
    return state.replace(step=state.step + 1, params=params, model_state=model_state,
                         opt_state=opt_state), metrics


class Trainer:
    """Builds the sharded state and compiled steps for a config; used by train and evaluate."""

    def __init__(self, config):
        distributed.maybe_initialize()
        self.config = config
        self.task = tasks.load(config)
        self.mesh = sharding.make_mesh(config.mesh)
        self.local_batch = sharding.check_batch_size(int(config.batch_size), self.mesh)
        labels = getattr(self.task, "param_labels", None)
        self.tx = optim.make_optimizer(config.optimizer, int(config.total_steps), labels)
        example = self.task.example_batch(1)

        def init_state(rng):
            variables = dict(self.task.init(rng, example))
            params = variables.pop("params")
            return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=variables,
                              opt_state=self.tx.init(params))

        self._init_state = init_state
        self.abstract_state = jax.eval_shape(init_state, jax.random.key(0))
        self.state_sharding = sharding.state_shardings(self.abstract_state, self.mesh)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.replicated = sharding.replicated(self.mesh)
        self.train_step = jax.jit(
            functools.partial(_train_step, self.task, self.tx),
            in_shardings=(self.state_sharding, self.batch_sharding, self.replicated),
            out_shardings=(self.state_sharding, self.replicated),
            donate_argnums=0)
        # Metrics that only exist on the host (bss_eval's SDR/SIR/SAR, confusion matrices): the
        # task's jitted ``eval_outputs`` gives arrays, an evaluator object from its
        # ``make_evaluator()`` accumulates them (see tasks/base.py).
        self.host_eval = hasattr(self.task, "eval_outputs")
        self.eval_step = jax.jit(self.task.eval_outputs if self.host_eval
                                 else self.task.eval_metrics, out_shardings=self.replicated)
        self.last_evaluator = None

    def initial_state(self) -> TrainState:
        rng = jax.random.key(int(self.config.seed))
        return jax.jit(self._init_state, out_shardings=self.state_sharding)(rng)

    def abstract_target(self):
        return checkpointing.abstract_with_shardings(self.abstract_state, self.state_sharding)

    def evaluate(self, state: TrainState) -> dict[str, float]:
        """Weighted means of the task's eval metrics over one pass of the held-out split (or, for
        a host-side evaluator, whatever its ``result()`` reports)."""
        variables = {"params": state.params, **state.model_state}
        evaluator = self.task.make_evaluator() if self.host_eval else _WeightedMeans()
        seen = False
        for local in self.task.eval_data(jax.process_index(), jax.process_count(),
                                         self.local_batch):
            seen = True
            evaluator.update(jax.device_get(
                self.eval_step(variables, sharding.global_batch(local, self.mesh))))
        if not seen:
            raise UserError("the held-out split is empty; check data.eval_path")
        self.last_evaluator = evaluator
        return evaluator.result()


class _WeightedMeans:
    """The default evaluator: per-batch metric means weighted by the batch's ``weight``."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.total = 0.0

    def update(self, metrics) -> None:
        m = dict(metrics)
        w = float(m.pop("weight"))
        self.total += w
        for k, v in m.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * w

    def result(self) -> dict[str, float]:
        if self.total == 0:
            raise UserError("the held-out split is empty; check data.eval_path")
        return {k: v / self.total for k, v in self.sums.items()} | {"num_examples": self.total}


class _StopRequest:
    """SIGTERM/SIGINT → finish the current step, checkpoint, exit (preemption-safe)."""

    def __init__(self):
        self.signum = None
        self._old = {}
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum, frame):
        self.signum = signum

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


def _prepare_workdir(workdir: str, config) -> None:
    os.makedirs(workdir, exist_ok=True)
    if jax.process_index() == 0:
        tmp = os.path.join(workdir, "config.json.tmp")
        with open(tmp, "w") as f:
            f.write(config_to_json(config))
        os.replace(tmp, os.path.join(workdir, "config.json"))


def _first_bad(history: list[tuple[int, dict]]):
    for step, m in history:
        if not np.isfinite(float(m["loss"])):
            return step
    return None


def _progress(config, start, total):
    if jax.process_index() != 0 or not config.progress_bar:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, mininterval=1.0)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
    """Train to config.total_steps (resuming from DIR/checkpoints), evaluating and checkpointing
    on the way. Returns the last train and eval metrics."""
    trainer = Trainer(config)
    # Open both splits before writing anything, so bad data paths leave no workdir behind.
    data = trainer.task.train_data(jax.process_index(), jax.process_count(), trainer.local_batch)
    data_iter = iter(data)
    if next(iter(trainer.task.eval_data(jax.process_index(), jax.process_count(), 1)), None) is None:
        raise UserError("the held-out split is empty; check data.eval_path")
    _prepare_workdir(workdir, config)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                      int(config.keep_checkpoints))
    start = ckpt.latest_step()
    if start is not None:
        state = ckpt.restore(start, trainer.abstract_target(), data_iter)
    else:
        state = trainer.initial_state()
        start = 0
    writer = MetricsWriter(workdir, resume_step=start if start else None)
    total = int(config.total_steps)
    rng = jax.jit(lambda: jax.random.key(int(config.seed) + 1),
                  out_shardings=trainer.replicated)()
    last_saved = start if start else None
    history: list[tuple[int, Any]] = []
    stop = _StopRequest()
    bar = _progress(config, start, total)
    t_interval, input_time = time.perf_counter(), 0.0
    idle_meter = DeviceIdleMeter()
    result: dict[str, Any] = {}

    def check_finite(fetched):
        bad = _first_bad([(s, m) for (s, _), m in zip(history, fetched)])
        if bad is not None:
            ckpt.wait()
            where = (f"step {last_saved} in {ckpt.directory}" if last_saved
                     else "none (no checkpoint was written yet)")
            raise TrainingDiverged(f"loss became NaN/Inf at step {bad}; last good checkpoint: "
                                   f"{where}. Lower --config.optimizer.lr or set "
                                   f"--config.optimizer.clip_norm, then rerun")

    try:
        for step in range(start + 1, total + 1):
            t0 = time.perf_counter()
            local = next(data_iter)
            batch = sharding.global_batch(local, trainer.mesh)
            input_time += time.perf_counter() - t0
            with jax.transfer_guard("disallow"):
                state, metrics = trainer.train_step(state, batch, rng)
            idle_meter.dispatched(metrics["loss"])
            history.append((step, metrics))
            if bar is not None:
                bar.update(1)
            stop_now = _agree(stop.signum is not None)
            log_now = step % int(config.log_every) == 0 or step == total
            save_now = step % int(config.checkpoint_every) == 0 or step == total or stop_now
            if log_now or save_now:
                fetched = jax.device_get([m for _, m in history])
                if config.nan_check:
                    check_finite(fetched)
                mean = {k: float(np.mean([f[k] for f in fetched])) for k in fetched[-1]}
                elapsed = time.perf_counter() - t_interval
                idle_meter.sync()
                mean["examples_per_s"] = len(history) * int(config.batch_size) / elapsed
                # input_wait_frac: the device idle between steps (step_timing.py);
                # input_fetch_frac: the loop thread's time getting batches, mostly overlapping
                # steps still running under asynchronous dispatch.
                mean["input_wait_frac"] = idle_meter.take_idle() / elapsed
                mean["input_fetch_frac"] = input_time / elapsed
                source = getattr(trainer.task, "train_source", None)
                if getattr(source, "num_skipped", 0):   # data.skip_corrupt (threads only)
                    mean["skipped_records"] = source.num_skipped
                writer.write(step, "train", mean)
                result["train"] = mean
                if bar is not None:
                    bar.set_postfix(loss=f"{mean['loss']:.4f}",
                                    ex_s=f"{mean['examples_per_s']:.1f}")
                history.clear()
                t_interval, input_time = time.perf_counter(), 0.0
                idle_meter.restart()   # the pause for logging is not an input wait
            if save_now:
                ckpt.save(step, state, data_iter)
                last_saved = step
                idle_meter.restart()
            if step % int(config.eval_every) == 0 or step == total:
                result["eval"] = trainer.evaluate(state)
                writer.write(step, "eval", result["eval"])
                t_interval = time.perf_counter()
                idle_meter.restart()
            if stop_now:
                ckpt.wait()
                raise KeyboardInterrupt(f"stopped by signal at step {step}; checkpoint saved")
        if start >= total:
            result["eval"] = trainer.evaluate(state)
    finally:
        stop.restore()
        idle_meter.close()
        if bar is not None:
            bar.close()
        ckpt.close()
        writer.close()
        if hasattr(data_iter, "close"):
            data_iter.close()
    result["state"] = state
    return result


def _agree(flag: bool) -> bool:
    """All processes stop at the same step when any of them was signalled."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
