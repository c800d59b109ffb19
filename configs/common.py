"""Config pieces every task shares: the keys of the workdir contract, optimiser, mesh, data."""
import ml_collections


def parse_args(arg: str | None) -> set[str]:
    """`configs/x.py:local,cam` → {"local", "cam"} (big_vision style comma list)."""
    return {a.strip() for a in (arg or "").split(",") if a.strip()}


def base_config(task: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 32            # global, over all devices and processes
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.nan_check = True
    c.progress_bar = True

    c.data = ml_collections.ConfigDict()
    c.data.train_path = ""       # records: a manifest, shard glob, or folder; "" → synthetic world
    c.data.eval_path = ""
    c.data.cache_dir = ""        # where the synthetic default data set is cached ("" → ~/.cache/avjax)
    c.data.synthetic_preset = ""
    c.data.synthetic_train_clips = 0
    c.data.synthetic_eval_clips = 0
    c.data.skip_corrupt = False  # True: skip and count corrupt records instead of stopping
    c.data.workers = 0           # grain worker processes (0 = threads in this process)
    c.data.prefetch = 2          # batches read ahead
    c.data.shuffle = True
    c.data.eval_batches = 0      # 0 → one pass over the held-out split

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"     # sgd (momentum) | adam
    c.optimizer.lr = 1e-2
    c.optimizer.momentum = 0.9
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.clip_norm = 0.0  # global-norm clip; 0 = off
    c.optimizer.schedule = "constant"   # constant | step | cosine
    c.optimizer.decay_steps = (0,)      # boundaries for "step"
    c.optimizer.decay_factor = 0.1
    c.optimizer.warmup_steps = 0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1             # devices on the data axis (-1 = all that remain)
    c.mesh.model = 1             # devices parameters are sharded over (FSDP-style); 1 = replicated
    return c
