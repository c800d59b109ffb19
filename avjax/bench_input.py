"""Input-pipeline throughput against the train step's consumption, per task config.

For a task config (paper size by default): the task's own train pipeline (records on disk ->
decode -> crop/shift -> batch -> ``jax.device_put``) timed in examples/s, and the task's own train
step (``task.loss`` + backward + SGD-momentum update, jitted) timed in examples/s at the same
per-example size. Their ratio says how many times over the pipeline could feed the step on this
machine ("input can feed N x the step's consumption"; < 1 means the step would wait on input).
Both are measured alone, one after the other, on the same cores: in training they share them.

The records are the built-in synthetic world at the config's preset, a few clips generated once
into the cache (``data.synthetic_train_clips`` is overridden: the pipeline repeats them, and its
cost per example does not depend on how many distinct clips there are).
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.bench_timing import time_fn, wait_for_quiet

REPO = Path(__file__).resolve().parents[1]
# task label -> config file (paper-size default variant). Add a task here with one line.
INPUT_CONFIGS = {
    "shift": "configs/shift.py",
    "asmp": "configs/asmp.py",
}


def load_task(config_path: str, clips: int, cache_dir: str | None):
    """(config, task) for a config file; raises ModuleNotFoundError if the task is not written."""
    from avjax.config_cli import load_config_file
    path = Path(config_path)
    if not path.is_absolute():
        path = REPO / path
    if not path.exists():
        raise ModuleNotFoundError(f"no config {config_path}")
    config = load_config_file(str(path))
    with config.unlocked():
        config.data.synthetic_train_clips = int(clips)
        if cache_dir:
            config.data.cache_dir = str(cache_dir)
    mod = importlib.import_module(f"avjax.tasks.{config.task}")
    return config, mod.Task(config)


def input_rate(task, batch: int, n_batches: int = 10, warmup: int = 2) -> float:
    """Examples per second from the task's train pipeline to a device batch."""
    from avjax.bench import input_pipeline_rate
    return batch * input_pipeline_rate(lambda: iter(task.train_data(0, 1, batch)),
                                       n_batches=n_batches, warmup=warmup)


def step_rate(task, batch: int, steps: int = 3) -> tuple[float, float]:
    """(examples per second of the task's jitted train step at ``batch``, foreign load)."""
    example = jax.tree.map(jnp.asarray, dict(task.example_batch(batch)))
    variables = jax.jit(task.init)(jax.random.key(0), example)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    tx = optax.sgd(1e-3, momentum=0.9)

    def step(state, batch, rng):
        params, rest, opt = state
        grads, (_, rest) = jax.grad(lambda p: task.loss(p, rest, batch, rng, True),
                                    has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), rest, opt

    step = jax.jit(step, donate_argnums=0)
    box = [(params, rest, tx.init(params))]
    rng = jax.random.key(1)

    def one():
        box[0] = step(box[0], example, rng)
        return box[0][0]

    jax.block_until_ready(one())     # compile
    wait_for_quiet(timeout=30)
    t = time_fn(one, steps=steps)
    return batch / t.seconds, t.foreign_cores


def measure(label: str, config_path: str, *, clips: int = 8, input_batch: int = 4,
            step_batch: int = 1, cache_dir: str | None = None, n_batches: int = 10,
            steps: int = 3) -> dict:
    config, task = load_task(config_path, clips, cache_dir)
    t0 = time.perf_counter()
    inp = input_rate(task, input_batch, n_batches)
    input_s = time.perf_counter() - t0
    stp, busy = step_rate(task, step_batch, steps)
    shapes = {k: tuple(np.shape(v)[1:]) for k, v in task.example_batch(1).items()}
    return {"task": label, "config": config_path, "example_shapes": shapes,
            "input_batch": input_batch, "step_batch": step_batch,
            "input_examples_s": inp, "step_examples_s": stp, "feed_ratio": inp / stp,
            "input_wall_s": input_s, "busy": busy}


def print_input_table(rows: list[dict]) -> None:
    print("\ninput pipeline (records -> device batch) vs the train step, examples/s")
    hdr = f"{'task':8s} {'input ex/s':>10s} {'step ex/s':>10s} {'feeds':>7s} {'busy':>5s}  example"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        if "skipped" in r:
            print(f"{r['task']:8s} skipped: {r['skipped']}")
            continue
        print(f"{r['task']:8s} {r['input_examples_s']:10.2f} {r['step_examples_s']:10.3f} "
              f"{r['feed_ratio']:6.1f}x {r['busy']:5.2f}  {r['example_shapes']}")
        print(f"{'':8s} input can feed {r['feed_ratio']:.1f}x the train step's consumption "
              f"(input batch {r['input_batch']}, step batch {r['step_batch']}, {r['config']})")
