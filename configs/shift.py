"""Self-supervised audio-visual synchronisation pretraining (multisensory spec §1).

Default: the paper's stage-1 schedule at paper size. Args (comma list):
  local  — a CPU-sized network and synthetic world that trains in minutes.
  stage2 — full frame rate (125 frames), batch 5 per GPU·8, to 650k iterations.
  cam    — the CAM variant (conv5_1 spatial stride 1).
"""
from configs import common


def get_config(arg=None):
    args = common.parse_args(arg)
    c = common.base_config("shift")

    c.model = common.ml_collections.ConfigDict()
    c.model.width = 1.0              # channel multiplier of every layer
    c.model.cam_variant = "cam" in args
    c.model.weight_decay = 1e-5      # L2 on conv kernels, wd·Σw²/2
    c.model.bn_momentum = 0.9997     # moving-statistics decay (paper); short runs need less

    # Clip and record geometry (frames at c.data.fps; audio at c.data.sample_rate).
    c.data.fps = 29.97
    c.data.sample_rate = 21000
    c.data.num_frames = 32           # stage 1: frames subsampled ×4 → 32 frames of 4.2 s
    c.data.frame_step = 4            # take every k-th frame of the record
    c.data.crop_size = 224
    c.data.random_flip = True
    c.data.shift_min_s = 2.17        # negatives: |audio shift| in [min, max] seconds
    c.data.shift_max_s = 5.87
    c.data.synthetic_preset = "multisensory"
    c.data.synthetic_train_clips = 2000
    c.data.synthetic_eval_clips = 200

    c.batch_size = 15 * 8
    c.total_steps = 30_000
    c.optimizer.name = "sgd"
    c.optimizer.lr = 1e-2
    c.optimizer.momentum = 0.9
    c.optimizer.clip_norm = 5.0
    c.log_every = 100
    c.eval_every = 2000
    c.checkpoint_every = 2000

    if "stage2" in args:
        c.data.num_frames = 125
        c.data.frame_step = 1
        c.batch_size = 5 * 8
        c.total_steps = 650_000

    if "local" in args:
        c.model.width = 0.25
        c.data.synthetic_preset = "multisensory_local"
        c.data.fps = 15.0
        c.data.sample_rate = 11025
        c.model.bn_momentum = 0.9      # moving statistics must keep up with a fast-changing net
        c.data.num_frames = 32
        c.data.frame_step = 1
        c.data.crop_size = 48
        c.data.shift_min_s = 1.0
        c.data.shift_max_s = 3.0
        c.data.synthetic_train_clips = 512
        c.data.synthetic_eval_clips = 128
        c.batch_size = 16
        c.data.prefetch = 4            # read 4 batches ahead: the local step is short, keep it fed
        c.total_steps = 700
        c.optimizer.name = "adam"
        c.optimizer.lr = 1e-3
        c.log_every = 20
        c.eval_every = 350
        c.checkpoint_every = 350
    return c
