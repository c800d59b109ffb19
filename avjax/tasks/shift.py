"""Audio-visual synchronisation (multisensory §1): is this audio aligned with the video?

Each video is seen twice, with aligned audio (label 1) and shifted audio (label 0); the video
tower up to scale 0 is shared by the two passes. Loss: sigmoid cross-entropy + L2 on conv weights.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax.models import shift_net
from avjax.tasks.base import apply_model
from data_pipelines import default_data, pipeline
from data_pipelines.shift_clips import ClipSpec, make_example

LABELS = jnp.array([1.0, 0.0])   # pass 0 aligned, pass 1 shifted


def frames_to_unit(video_uint8):
    return video_uint8.astype(jnp.float32) / 127.5 - 1.0


class Task:
    name = "shift"

    def __init__(self, config):
        self.config = config
        d = config.data
        self.spec = ClipSpec(num_frames=int(d.num_frames), frame_step=int(d.frame_step),
                             crop_size=int(d.crop_size), fps=float(d.fps),
                             sample_rate=int(d.sample_rate), shift_min_s=float(d.shift_min_s),
                             shift_max_s=float(d.shift_max_s), random_flip=bool(d.random_flip))
        self.model = shift_net.ShiftNet(width=float(config.model.width),
                                        cam_variant=bool(config.model.cam_variant),
                                        bn_momentum=float(config.model.bn_momentum))

    # -- shapes and variables ------------------------------------------------------------
    def example_batch(self, batch_size: int):
        s = self.spec
        return {"video": np.zeros((batch_size, s.num_frames, s.crop_size, s.crop_size, 3),
                                  np.uint8),
                "audio": np.zeros((batch_size, 2, s.num_samples, 2), np.float32)}

    def init(self, rng, batch):
        return self.model.init(rng, frames_to_unit(batch["video"]), batch["audio"], train=False)

    # -- objective -------------------------------------------------------------------------
    def _apply(self, params, model_state, video, audio, train):
        return apply_model(self.model, params, model_state, video, audio, train=train)

    def loss(self, params, model_state, batch, rng, train):
        out, model_state = self._apply(params, model_state, frames_to_unit(batch["video"]),
                                       batch["audio"], train)
        logits = out["logits"]
        labels = jnp.broadcast_to(LABELS, logits.shape)
        xent = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
        l2 = shift_net.l2_penalty(params, float(self.config.model.weight_decay))
        acc = ((logits > 0) == (labels > 0.5)).mean()
        return xent + l2, ({"xent": xent, "l2": l2, "accuracy": acc}, model_state)

    def eval_metrics(self, variables, batch):
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        w = batch["weight"]
        video = frames_to_unit(batch["video"])

        def stats(v):
            out, _ = self._apply(params, state, v, batch["audio"], False)
            logits = out["logits"]
            labels = jnp.broadcast_to(LABELS, logits.shape)
            xent = optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
            acc = ((logits > 0) == (labels > 0.5)).mean(-1)
            return (xent * w).sum() / jnp.maximum(w.sum(), 1), (acc * w).sum() / jnp.maximum(
                w.sum(), 1)

        xent, acc = stats(video)
        _, acc_blank = stats(jnp.zeros_like(video))   # video blanked to mid-grey
        return {"xent": xent, "accuracy": acc, "accuracy_blank_video": acc_blank,
                "weight": w.sum()}

    # -- data ----------------------------------------------------------------------------
    def train_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = self.train_source = default_data.open_source(d, "train", int(self.config.seed))
        return pipeline.train_dataset_for(
            self.config, source, functools.partial(_example, spec=self.spec, train=True),
            process_index=process_index, process_count=process_count, local_batch=local_batch)

    def eval_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = default_data.open_source(d, "eval", int(self.config.seed))
        return pipeline.eval_batches_for(
            self.config, source, functools.partial(_example, spec=self.spec, train=False),
            process_index=process_index, process_count=process_count, local_batch=local_batch)


def _example(data, rng, *, spec, train):
    """Module-level so grain worker processes can pickle it."""
    return make_example(data, spec, rng, train)
