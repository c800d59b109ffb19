"""ASMP (spec/asmp.md): scene-graph conditioned separation + motion-direction prediction.

Batches (data_pipelines/asmp_graphs.py): one row = a mixture of two videos, with each video's
segment, padded scene graph, class and direction labels. Loss (spec §7):
  co-separation  per video ‖Σ_slots mask − GT ratio mask‖₁ weighted by clip(log1p(warped
                 mixture), 1e-3, 10) (weight model.cosep_weight, 1);
  classification cross-entropy of the classifier on the object slots' log separated
                 spectrograms (model.cls_weight, 1);
  orthogonality  L_orth over the GRU slot outputs (model.orth_weight, 1);
  direction      cross-entropy on object slots with a motion window (model.dir_weight, 0.05);
                 with model.dir_all_windows on every 1-s window slice of the segment, each
                 with its own label (not in the paper: ASIW labels one window per video).
  displacement   (model.dir_uvd_weight > 0; not in the paper) squared error of 3 more
                 direction-head outputs against the window's displacement (u, v, d) ÷
                 model.dir_uvd_scale, on the same slices as the direction loss. The class is
                 the nearest of 26 directions to (u, v, d); the regression tells the net each
                 axis's sign and size, which it otherwise has to infer from 28 one-hot labels.
  condition      (model.cond_cls_weight > 0; not in the paper, configs/asmp.py:local) cross-
                 entropy of a linear class head on each object slot's condition.
Per-sub-network learning rates: ``param_labels`` labels the top-level sub-networks (graph, gru,
unet, classifier, direction) for optimizer.group_lr.

Evaluation (spec §8; avjax/asmp_eval.py does the host side): for each held-out pair, sliding
windows of the segment length over the full mixture (hop data.eval_hop_samples, plus a final
tail window), one GRU step per video graph → mask → inverse STFT with the mixture phase →
overlap-add ÷ overlap count → ×2, clip; the same with the graphs swapped between the two videos
and with the node features blanked (zeros); plus the oracle ideal ratio mask and the mixture as
trivial baselines. Direction: deterministic segment (r = min(w, r_max)), argmax on the slice.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from avjax import asmp_frontend as F
from avjax import spectral
from avjax.errors import UserError
from avjax.models.asmp import ASMP
from data_pipelines import asmp_graphs as G
from data_pipelines import default_data, pipeline

SUBNETS = {"graph": "graph", "cond_head": "graph", "gru": "gru", "slot_proj": "gru",
           "slot_offset": "gru", "unet": "unet", "classifier": "classifier",
           "direction": "direction"}


def example_spec(config, train: bool) -> G.ExampleSpec:
    d = config.data
    return G.ExampleSpec(
        sample_rate=int(d.sample_rate), segment_samples=int(d.segment_samples),
        clip_samples=int(d.clip_samples),
        max_principals=int(d.train_principals if train else d.eval_principals),
        max_context=int(d.max_context), context_iou=float(d.context_iou),
        context_conf=float(d.context_conf), feature_dim=int(d.feature_dim),
        sigma=float(d.sigma_train if train else d.sigma_test),
        gain_range=tuple(float(g) for g in d.gain_range),
        num_direction_classes=int(config.model.num_direction_classes),
        distinct_classes=bool(d.distinct_classes))


def build_model(config) -> ASMP:
    d, m = config.data, config.model
    fe = F.FrontEnd(int(d.n_fft), int(d.hop), int(d.warp_rows))
    frames = fe.frames(int(d.segment_samples))
    if frames % 128 or fe.warp_rows % 128:
        raise UserError(f"the U-Net needs spectrograms with multiples of 128 rows and frames; "
                        f"got {fe.warp_rows} warped rows × {frames} frames (1 + "
                        f"data.segment_samples // data.hop); adjust data.segment_samples, "
                        f"data.hop or data.warp_rows")
    r_max = int(d.segment_samples) // int(d.sample_rate)
    stride = frames // (r_max + 1)
    return ASMP(
        n_fft=fe.n_fft, hop=fe.hop, warp_rows=fe.warp_rows,
        map_hidden=int(m.map_hidden), map_out=int(m.map_out), heads=int(m.heads),
        head_features=int(m.head_features), edge_features=int(m.edge_features),
        gru_features=int(m.gru_features), unet_ngf=int(m.unet_ngf),
        unet_film=bool(m.get("unet_film", False)),
        classifier_width=int(m.classifier_width), direction_width=int(m.direction_width),
        direction_embed=int(m.direction_embed), direction_hidden=int(m.direction_hidden),
        direction_stem_strides=tuple(int(v) for v in m.get("direction_stem_strides", (2, 2))),
        direction_stem_pool=bool(m.get("direction_stem_pool", True)),
        num_audio_classes=int(m.num_audio_classes),
        num_direction_classes=int(m.num_direction_classes),
        dir_stride=stride, dir_width=frames - stride * r_max,
        dir_all_windows=bool(m.get("dir_all_windows", False)),
        dir_uvd=float(m.get("dir_uvd_weight", 0.0)) > 0,
        use_gat=bool(m.use_gat), use_edgeconv=bool(m.use_edgeconv), use_gru=bool(m.use_gru),
        node_norm=bool(m.get("node_norm", False)),
        condition_head=float(m.get("cond_cls_weight", 0.0)) > 0,
        max_slots=max(int(d.train_principals), int(d.eval_principals)) + 1)


def _masked_xent(logits, labels, valid):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    acc = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    n = jnp.maximum(valid.sum(), 1.0)
    return (ce * valid).sum() / n, (acc * valid).sum() / n


def _masked_sq_error(pred, target, valid):
    """Mean over valid rows of the per-row mean squared error (pred, target (…, k), valid (…))."""
    err = jnp.mean(jnp.square(pred - target), -1)
    return (err * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def orthogonality_loss(y):
    """L_orth = Σ_{t≥1} (mean over batch and s<t of cos(y_s, y_t))² for y (G, T, D)."""
    y = y / jnp.maximum(jnp.linalg.norm(y, axis=-1, keepdims=True), 1e-8)
    cos = jnp.einsum("gsd,gtd->st", y, y) / y.shape[0]     # batch means of cos(y_s, y_t)
    total = 0.0
    for t in range(1, y.shape[1]):
        total = total + jnp.mean(cos[:t, t]) ** 2
    return total


class Task:
    name = "asmp"

    def __init__(self, config):
        self.config = config
        d = config.data
        self.fe = F.FrontEnd(int(d.n_fft), int(d.hop), int(d.warp_rows))
        self.train_spec = example_spec(config, True)
        self.eval_spec = example_spec(config, False)
        self.model = build_model(config)
        n, hop = int(d.segment_samples), int(d.eval_hop_samples)
        length = int(d.clip_samples)
        if length < n:
            raise UserError(f"data.clip_samples ({length}) must be >= data.segment_samples ({n})")
        starts = list(range(0, length - n + 1, hop))
        if starts[-1] != length - n:
            starts.append(length - n)      # the final tail window
        self.eval_starts = np.asarray(starts, np.int32)
        # Each window's inverse STFT is weighted by its own frame coverage (spectral.
        # istft_coverage) instead of 1: a plain "divide by the overlap count" also averages the
        # last ~n_fft/2 samples of every window, where istft divides by a vanishing window sum
        # and so multiplies the mask's errors (by up to ~1e9 at 510/256 and 32 767 samples);
        # with count weighting, finer hops scored lower (1 s: 7.45 dB, 0.5 s: 6.97, 0.25 s:
        # 6.44 on one checkpoint).
        self.eval_weight = spectral.istft_coverage(self.fe.n_fft, self.fe.hop, n, center=True)
        count = np.zeros(length, np.float32)
        for s in starts:
            count[s:s + n] += self.eval_weight
        self.eval_count = np.where(count > 0, count, 1.0).astype(np.float32)

    # -- shapes and variables ------------------------------------------------------------
    def _zeros(self, spec, batch_size, train):
        return {k: np.zeros((batch_size,) + shape, dtype)
                for k, (shape, dtype) in G.example_shapes(spec, train).items()}

    def example_batch(self, batch_size: int):
        return self._zeros(self.train_spec, batch_size, True)

    def init(self, rng, batch):
        return self.model.init(rng, batch["mix"], batch["nodes"], batch["node_mask"],
                               batch["edge_w"], batch["rel"], train=False)

    def param_labels(self, params):
        out = {}
        for k, v in params.items():
            if k not in SUBNETS:
                raise UserError(f"parameter group {k!r} has no learning-rate label")
            out[k] = jax.tree.map(lambda _, lab=SUBNETS[k]: lab, v)
        return out

    # -- objective -------------------------------------------------------------------------
    def _forward(self, variables, batch, num_principals, train, rng=None):
        args = (batch["mix"], batch["nodes"], batch["node_mask"], batch["edge_w"], batch["rel"],
                num_principals, train)
        if train:
            m = self.config.model
            p_teacher = float(m.get("dir_teacher", 0.0))
            if bool(m.get("dir_teacher_both", False)):
                args = args + (self._clean(batch), None)
            elif p_teacher > 0 and rng is not None:
                mask = jax.random.bernoulli(rng, p_teacher, batch["rel"].shape)
                args = args + (self._clean(batch), mask.astype(jnp.float32))
            return self.model.apply(variables, *args, method=ASMP.forward,
                                    mutable=["batch_stats"])
        return self.model.apply(variables, *args, method=ASMP.forward), {}

    def _clean(self, batch):
        """The direction teacher (not in the paper): the log warped spectrogram of each video's
        own clean segment at its share of the mixture (½·wave, the scale a perfect mask gives).
        With model.dir_teacher each video's direction net hears it instead of the separated
        estimate with that probability; with model.dir_teacher_both it hears both, so it
        learns the motion cue from clean sound while learning to find it in the estimates."""
        # ½·|STFT(wave)|, not |STFT(½·wave)|: the same STFT as the co-separation target's, so
        # XLA computes it once per step.
        return F.log_mag(F.warp(self.fe, 0.5 * jnp.abs(F.stft(self.fe, batch["wave"]))))

    def losses(self, out, batch):
        m = self.config.model
        video_spec = F.stft(self.fe, batch["wave"])                   # (B, 2, bins, frames)
        mix_spec = out["mix_spec"]
        gt = F.ratio_mask(self.fe, video_spec, mix_spec[:, None])      # (B, 2, H, W)
        p = batch["cls"].shape[-1]
        slot_valid = jnp.concatenate([batch["cls_valid"], jnp.ones_like(batch["cls_valid"][..., :1])],
                                     -1)                                 # (B, 2, T)
        pred = (out["masks"] * slot_valid[..., None, None]).sum(2)
        weight = jnp.clip(jnp.log1p(out["mix_warped"]), 1e-3, 10.0)[:, None]
        cosep = jnp.mean(weight * jnp.abs(pred - gt))
        cls_loss, cls_acc = _masked_xent(out["cls_logits"], batch["cls"], batch["cls_valid"])
        every = "dir_logits_all" in out     # every window of the segment (model.dir_all_windows)
        sfx = "_all" if every else ""
        key = "dir_win" if every else "dir"     # dir_win, dir_win_valid, dir_win_uvd / dir, ...
        labels, valid, uvd_target = batch[key], batch[key + "_valid"], batch.get(key + "_uvd")
        logits, uvd_pred = out["dir_logits" + sfx], out.get("dir_uvd" + sfx)
        if "teacher_dir_logits" in out:     # model.dir_teacher_both: the teacher's slots too
            logits = jnp.concatenate([logits, out["teacher_dir_logits" + sfx]], 2)
            labels, valid = (jnp.concatenate([x, x], 2) for x in (labels, valid))
            if uvd_pred is not None:
                uvd_pred = jnp.concatenate([uvd_pred, out["teacher_dir_uvd" + sfx]], 2)
                uvd_target = jnp.concatenate([uvd_target, uvd_target], 2)
        dir_loss, dir_acc = _masked_xent(logits, labels, valid)
        dir_loss_total, uvd = dir_loss, None
        if uvd_pred is not None:        # model.dir_uvd_weight: regress (u, v, d) ÷ scale
            scale = jnp.asarray(tuple(m.get("dir_uvd_scale", (3.0, 3.0, 1.0))), jnp.float32)
            uvd = _masked_sq_error(uvd_pred, uvd_target / scale, valid)
            dir_loss_total = dir_loss + float(m.dir_uvd_weight) * uvd
        cond = out["cond"]
        orth = orthogonality_loss(cond.reshape((-1,) + cond.shape[2:])) if p + 1 > 1 else 0.0
        total = (float(m.cosep_weight) * cosep + float(m.cls_weight) * cls_loss
                 + float(m.orth_weight) * orth + float(m.dir_weight) * dir_loss_total)
        metrics = {"coseparation": cosep, "classification": cls_loss, "orthogonality": orth,
                   "direction": dir_loss, "class_accuracy": cls_acc,
                   "direction_accuracy": dir_acc}
        if uvd is not None:
            metrics["displacement"] = uvd
        if "cond_logits" in out:
            cond_loss, cond_acc = _masked_xent(out["cond_logits"], batch["cls"], batch["cls_valid"])
            total = total + float(m.cond_cls_weight) * cond_loss
            metrics.update(condition_classification=cond_loss, condition_accuracy=cond_acc)
        return total, metrics

    def loss(self, params, model_state, batch, rng, train):
        variables = {"params": params, **model_state}
        out, updates = self._forward(variables, batch, batch["cls"].shape[-1], train, rng)
        total, metrics = self.losses(out, batch)
        return total, (metrics, {**model_state, **updates})

    def eval_metrics(self, variables, batch):     # the loss terms on held-out segments
        out, _ = self._forward(variables, batch, batch["cls"].shape[-1], False)
        total, metrics = self.losses(out, batch)
        return {**metrics, "loss": total, "weight": batch["weight"].sum()}

    # -- evaluation (host-side evaluator: avjax/asmp_eval.py) -------------------------------
    def eval_outputs(self, variables, batch):
        model, fe = self.model, self.fe
        p = batch["cls"].shape[-1]
        b = batch["mix"].shape[0]
        n = int(self.config.data.segment_samples)
        # Direction (and class) on the deterministic segment.
        out = model.apply(variables, batch["mix"], batch["nodes"], batch["node_mask"],
                          batch["edge_w"], batch["rel"], p, False, method=ASMP.forward)

        def slots(nodes, steps):      # GRU steps per video graph → (B, 2, steps, D)
            c = model.apply(variables, nodes.reshape((2 * b,) + nodes.shape[2:]),
                            batch["node_mask"].reshape(2 * b, -1),
                            batch["edge_w"].reshape((2 * b,) + batch["edge_w"].shape[2:]), steps,
                            False, method=ASMP.condition)
            return c.reshape(b, 2, steps, -1)

        own = slots(batch["nodes"], 2)
        blank = slots(jnp.zeros_like(batch["nodes"]), 1)[:, :, 0]
        # [own graph, swapped graphs, blanked graph] (one GRU step: slot 0), and the own graph's
        # second slot (a diagnostic: the training target is the sum over slots).
        conds = jnp.concatenate([own[:, :, 0], own[:, ::-1, 0], blank, own[:, :, 1]], 1)
        full = batch["full"]
        mix_full = 0.5 * (full[:, 0] + full[:, 1])                       # (B, L)

        def window(acc, start):
            seg = jax.lax.dynamic_slice_in_dim(mix_full, start, n, axis=1)
            spec = F.stft(fe, seg)
            mix_w = F.warp(fe, jnp.abs(spec))
            masks = model.apply(variables, F.log_mag(mix_w), conds, False, method=ASMP.masks)
            est = F.istft(fe, F.unwarp(fe, masks) * spec[:, None], n)   # (B, 8, n)
            est = est * jnp.asarray(self.eval_weight)
            cur = jax.lax.dynamic_slice_in_dim(acc, start, n, axis=2)
            return jax.lax.dynamic_update_slice_in_dim(acc, cur + est, start, axis=2), None

        acc0 = jnp.zeros((b, 8, full.shape[-1]), jnp.float32)
        acc, _ = jax.lax.scan(window, acc0, jnp.asarray(self.eval_starts))
        avg = acc / jnp.asarray(self.eval_count)
        est = jnp.clip(2.0 * avg, -1.0, 1.0)
        est_slot_sum = jnp.clip(avg[:, 0:2] + avg[:, 6:8], -1.0, 1.0)
        # Oracle ideal ratio mask on the full clips (linear STFT).
        s_full = F.stft(fe, full)
        s_mix = F.stft(fe, mix_full)
        mag = jnp.abs(s_full)
        irm = mag / (mag.sum(1, keepdims=True) + 1e-10)
        oracle = jnp.clip(F.istft(fe, irm * 2.0 * s_mix[:, None], full.shape[-1]), -1.0, 1.0)
        return {"est": est[:, 0:2], "est_swapped": est[:, 2:4], "est_blank": est[:, 4:6],
                "est_slot_sum": est_slot_sum,
                "oracle": oracle, "ref": full, "mix": mix_full, "length": batch["full_len"],
                "weight": batch["weight"], "dir_logits": out["dir_logits"], "dir": batch["dir"],
                "dir_valid": batch["dir_valid"], "cls_logits": out["cls_logits"],
                "cls": batch["cls"], "cls_valid": batch["cls_valid"]}

    def make_evaluator(self):
        from avjax.asmp_eval import Evaluator
        return Evaluator(num_direction_classes=int(self.config.model.num_direction_classes),
                         sample_rate=int(self.config.data.sample_rate),
                         backend=str(self.config.data.get("bss_backend", "fast_bss_eval")))

    # -- data ----------------------------------------------------------------------------
    def train_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = self.train_source = default_data.open_source(d, "train", int(self.config.seed))
        return pipeline.train_dataset_for(
            self.config, source,
            functools.partial(G.make_example, source=source, spec=self.train_spec, train=True),
            process_index=process_index, process_count=process_count, local_batch=local_batch)

    def eval_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = default_data.open_source(d, "eval", int(self.config.seed))
        return pipeline.eval_batches_for(
            self.config, source,
            functools.partial(G.make_example, source=source, spec=self.eval_spec, train=False),
            process_index=process_index, process_count=process_count, local_batch=local_batch)
