"""Where a task's records come from: the configured paths, or the built-in synthetic world,
generated once into a cache and reused (process 0 writes; the others wait)."""
from __future__ import annotations

import os

import jax

from avjax.errors import UserError


def cache_root(data_cfg) -> str:
    return data_cfg.cache_dir or os.environ.get(
        "AVJAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "avjax"))


def _synthetic(data_cfg, split: str, seed: int) -> str:
    from data_pipelines import synthetic
    num = int(data_cfg.synthetic_train_clips if split == "train" else data_cfg.synthetic_eval_clips)
    if num <= 0:
        raise UserError(f"no data: set --config.data.{split}_path=RECORDS or "
                        f"--config.data.synthetic_{split}_clips=N")
    preset = data_cfg.synthetic_preset
    # Held-out clips come from a disjoint seed so they are never training clips.
    split_seed = seed if split == "train" else seed + 1_000_003
    out = os.path.join(cache_root(data_cfg), "synthetic", f"{preset}-s{split_seed}-n{num}")
    manifest = os.path.join(out, f"synthetic-{split}.manifest.json")
    if jax.process_index() == 0:
        if not os.path.exists(manifest):
            print(f"generating the synthetic {split} set ({num} clips, preset {preset}) in "
                  f"{out}", flush=True)
        # Reuses the cached set when its world version and settings match.
        manifest = synthetic.generate_dataset(out, synthetic.preset(preset), num, split=split,
                                              seed=split_seed, name="synthetic",
                                              workers=max(1, min(4, os.cpu_count() or 1)))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(f"synthetic-{split}")
    return manifest


def resolve(data_cfg, split: str, seed: int) -> str:
    """A path RecordSource can open for `split` ("train" or "eval")."""
    path = data_cfg.train_path if split == "train" else data_cfg.eval_path
    if path:
        return path
    if split == "eval" and data_cfg.train_path:
        raise UserError("data.train_path is set but data.eval_path is not; give held-out "
                        "records with --config.data.eval_path=PATH")
    return _synthetic(data_cfg, split, seed)


def open_source(data_cfg, split: str, seed: int):
    from data_pipelines.records import RecordSource
    return RecordSource(resolve(data_cfg, split, seed), skip_corrupt=bool(data_cfg.skip_corrupt))
