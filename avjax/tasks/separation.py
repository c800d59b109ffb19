"""Audio-visual source separation (multisensory §2): one task, two variants (config.variant).

- "full": on/off-screen separation. The shift net sees the frames and the stereo mixture; its
  features are fused into the U-Net, whose fg head predicts the on-screen sound and bg head the
  off-screen sound. Loss: l1 on normalised dB + 0.01·l1 on phase/π for both heads, + L2.
- "unet_pit": blind two-source separation without video; the same terms under both
  assignments, per example the smaller (permutation-invariant), batch mean; + L2.
- model.sisdr_weight > 0 (not in the paper; the `local` configs): + that weight × the negative
  SI-SDR (dB) of each head's waveform (synthesised as at evaluation) against its source (for
  unet_pit under the assignment the spectrogram loss picked). The dB-domain l1 weighs every bin
  above min_db alike, while SI-SDR, the figure we report, is set by the loud bins.

Batches: see data_pipelines/sep_mix.py (mixtures are made in the grain pipeline). config.batch_size
counts mixtures (the step's batch): full reads B clips for B mixtures, unet_pit 2B clips.
The spectrogram front end (avjax.spectral, config.stft) runs inside the jitted step.

Held-out evaluation is host-side (``eval_outputs`` + ``make_evaluator``, see
avjax/sep_metrics.py): SDR/SIR/SAR (bss_eval), SI-SDR and its improvement, and spectrogram
L1, for the model and three baselines on the same mixtures: the mixture as the estimate, the
oracle ideal ratio mask, and (full) the model with its video blanked.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from avjax import spectral
from avjax.audio import audio_samples_for_frames
from avjax.errors import UserError
from avjax.models import sep_unet, shift_net
from avjax.models.sep_av import AVSeparator
from avjax.sep_metrics import si_sdr
from avjax.tasks.base import apply_model
from avjax.models.sep_unet import SepUNet
from data_pipelines import default_data, pipeline, sep_mix

VARIANTS = ("full", "unet_pit")


def frames_to_unit(video_uint8):
    return video_uint8.astype(jnp.float32) / 127.5 - 1.0


def sep_spec_from_config(config) -> sep_mix.SepSpec:
    d = config.data
    variant = str(config.variant)
    if variant not in VARIANTS:
        raise UserError(f"unknown separation variant {variant!r}; set --config.variant to one "
                        f"of {', '.join(VARIANTS)}")
    n = int(d.num_samples) if int(d.get("num_samples", 0)) else audio_samples_for_frames(
        int(d.num_frames), float(d.fps), int(d.sample_rate))
    return sep_mix.SepSpec(variant=variant, num_frames=int(d.num_frames), fps=float(d.fps),
                           sample_rate=int(d.sample_rate), num_samples=n,
                           num_channels=int(d.num_channels), crop_size=int(d.crop_size),
                           random_flip=bool(d.random_flip))


def build_model(config):
    m = config.model
    if str(config.variant) == "full":
        return AVSeparator(shift_width=float(m.shift_width),
                           shift_bn_momentum=float(m.shift_bn_momentum),
                           unet_width=float(m.unet_width), unet_layers=int(m.unet_layers),
                           unet_bn_momentum=float(m.unet_bn_momentum), output=str(m.output))
    return SepUNet(width=float(m.unet_width), num_layers=int(m.unet_layers),
                   bn_momentum=float(m.unet_bn_momentum), output=str(m.output))


def load_shift_init(path: str, variables: dict) -> dict:
    """Copy a shift-net export's params and batch statistics into ``variables["*"]["shift"]``.

    Shapes must match (same shift-net width); the separation run's own config is kept."""
    exported = _load_export(path)
    if str(exported.config.task) != "shift":
        raise UserError(f"model.shift_init {path!r} is a {exported.config.task!r} export; it "
                        f"must be a shift-net export (python -m avjax.export on a shift run)")
    out = {k: dict(v) for k, v in variables.items()}
    for col in ("params", "batch_stats"):
        src = exported.variables.get(col)
        if src is None or col not in out:
            continue
        dst = out[col]["shift"]
        want = jax.tree.map(lambda x: x.shape, dst)
        got = jax.tree.map(lambda x: tuple(np.shape(x)), src)
        if want != got:
            raise UserError(f"model.shift_init {path!r}: shift-net {col} do not match this "
                            f"config's (was it trained with model.width="
                            f"{exported.config.model.width}? set model.shift_width to that)")
        out[col]["shift"] = jax.tree.map(lambda x, y: jnp.asarray(x, y.dtype), src, dst)
    return out


@functools.lru_cache(maxsize=2)
def _load_export(path: str):
    from avjax import export
    return export.load(path)


class Task:
    name = "separation"

    def __init__(self, config):
        self.config = config
        self.variant = str(config.variant)
        self.spec = sep_spec_from_config(config)
        s = config.stft
        self.stft = spectral.SpecParams(frame_length=int(s.frame_length), hop=int(s.hop),
                                        fft_length=int(s.fft_length), min_db=float(s.min_db),
                                        max_db=float(s.max_db))
        if self.spec.num_samples < self.stft.frame_length:
            raise UserError(f"a window of {self.spec.num_samples} samples is shorter than one "
                            f"STFT frame ({self.stft.frame_length})")
        self.frames = self.stft.frames(self.spec.num_samples)
        layers_ = int(config.model.unet_layers)
        t_div, f_div = 2 ** max(layers_ - 2, 0), 2 ** layers_
        if self.frames % t_div or self.stft.bins % f_div:
            raise UserError(
                f"the U-Net's {layers_} layers need STFT frames % {t_div} == 0 and bins % "
                f"{f_div} == 0, but {self.spec.num_samples} samples give {self.frames} frames "
                f"of {self.stft.bins} bins; change stft.hop / stft.fft_length / data.num_frames "
                f"(frames = 1 + (samples - frame_length) // hop) or model.unet_layers")
        self.covered = self.stft.samples_for_frames(self.frames)   # samples the STFT sees
        self.model = build_model(config)
        self.phase_weight = float(config.model.phase_weight)
        self.mixture_phase = str(config.model.phase) == "mixture"
        self.sisdr_weight = float(config.model.get("sisdr_weight", 0.0))
        if str(config.model.phase) not in ("pred", "mixture"):
            raise UserError(f"model.phase must be 'pred' or 'mixture', got {config.model.phase!r}")

    # -- shapes and variables ------------------------------------------------------------
    def example_batch(self, batch_size: int):
        s = self.spec
        b = {"mix": np.zeros((batch_size, s.num_samples, s.num_channels), np.float32),
             "sources": np.zeros((batch_size, 2, s.num_samples), np.float32)}
        if self.variant == "full":
            b["video"] = np.zeros((batch_size, s.num_frames, s.crop_size, s.crop_size, 3),
                                  np.uint8)
        return b

    def _inputs(self, batch, blank: bool = False):
        mono = batch["mix"].mean(axis=-1)
        feat, mix_spec = spectral.analyze(mono, self.stft)
        args = (feat,)
        if self.variant == "full":
            video = frames_to_unit(batch["video"])
            if blank:
                video = jnp.zeros_like(video)        # mid-grey: the blanked-video ablation
            args = (feat, video, batch["mix"])
        return args, mix_spec

    def init(self, rng, batch):
        args, _ = self._inputs(batch)
        # Parameters are drawn with the "rbg" generator seeded from rng: same distributions,
        # deterministic per seed, but XLA:CPU compiles it ~5x faster than threefry, which costs
        # about a second of compilation per parameter tensor here (measured: U-Net init
        # 12.4 s → 2.5 s).
        seed = jax.random.bits(rng, (), jnp.uint32)
        variables = self.model.init(jax.random.key(seed, impl="rbg"), *args, train=False)
        path = str(self.config.model.get("shift_init", "") or "")
        if path and self.variant == "full":
            variables = load_shift_init(path, variables)
        return variables

    def _apply(self, params, model_state, args, train):
        return apply_model(self.model, params, model_state, *args, train=train)

    def targets(self, batch):
        """(B, 2, T, F, 2) normalised (dB, phase/π) and complex (B, 2, T, F+1) of the sources."""
        return spectral.analyze(batch["sources"], self.stft)

    # -- objective -------------------------------------------------------------------------
    def _per_example(self, out, target):
        if self.variant == "full":
            return sep_unet.full_loss(out, target, self.phase_weight), None
        return sep_unet.pit_losses(out, target, self.phase_weight)

    def loss(self, params, model_state, batch, rng, train):
        args, mix_spec = self._inputs(batch)
        out, model_state = self._apply(params, model_state, args, train)
        target, _ = self.targets(batch)
        per, assignment = self._per_example(out, target)
        sep = per.mean()
        l2 = shift_net.l2_penalty(params, float(self.config.model.weight_decay))
        mag = sep_unet.l1(out["fg"][..., 0], target[:, 0, ..., 0]).mean()
        metrics = {"sep_loss": sep, "l2": l2, "fg_mag_l1": mag}
        total = sep + l2
        if self.sisdr_weight > 0:
            wav = self.waveforms(out, mix_spec)                                   # (B, 2, N)
            refs = batch["sources"][:, :, :self.covered]
            if assignment is not None:     # unet_pit: fg ↔ source 1 where the loss swapped
                refs = jnp.where(assignment[:, None, None] == 1, refs[:, ::-1], refs)
            snr = si_sdr(refs, wav, 1e-8, xp=jnp)                                 # (B, 2)
            # A silent reference has no SI-SDR (its scale is undefined): the spectrogram loss
            # alone trains that head.
            heard = (jnp.square(refs).sum(-1) > 1e-6).astype(snr.dtype)
            metrics["fg_si_sdr"] = (snr[:, 0] * heard[:, 0]).sum() / jnp.maximum(
                heard[:, 0].sum(), 1)
            total = total - self.sisdr_weight * (snr * heard).sum() / jnp.maximum(heard.sum(), 1)
        return total, (metrics, model_state)

    def eval_metrics(self, variables, batch):
        """Device-side summary (the default evaluator's path; evaluation uses eval_outputs)."""
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        args, _ = self._inputs(batch)
        out, _ = self._apply(params, state, args, False)
        per, _ = self._per_example(out, self.targets(batch)[0])
        w = batch["weight"]
        return {"sep_loss": (per * w).sum() / jnp.maximum(w.sum(), 1), "weight": w.sum()}

    # -- waveforms -------------------------------------------------------------------------
    def synthesize(self, head, mix_spec):
        """One head's (B, T, F, 2) output → (B, covered samples) waveform."""
        last_phase = jnp.angle(mix_spec[..., -1])
        phase = (jnp.angle(mix_spec[..., :-1]) / math.pi if self.mixture_phase
                 else head[..., 1])
        return spectral.synthesize(head[..., 0], phase, self.stft, length=self.covered,
                                   last_bin_phase=last_phase)

    def waveforms(self, out, mix_spec):
        """(B, 2, covered samples) waveforms [fg, bg] of the heads (loss and inference)."""
        return jnp.stack([self.synthesize(out["fg"], mix_spec),
                          self.synthesize(out["bg"], mix_spec)], axis=1)

    def separate(self, variables, batch, blank: bool = False):
        """(B, 2, covered) waveforms [fg, bg] and the raw head outputs (inference)."""
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        args, mix_spec = self._inputs(batch, blank)
        out, _ = self._apply(params, state, args, False)
        wav = self.waveforms(out, mix_spec)
        return wav, out, mix_spec

    def eval_outputs(self, variables, batch):
        p, f = self.stft, self.stft.bins
        target, tspec = self.targets(batch)
        est, out, mix_spec = self.separate(variables, batch)
        ndb = lambda s: spectral.normalize_db(spectral.db_from_amp(jnp.abs(s[..., :f])), p)
        tdb = target[..., 0]                                            # (B, 2, T, F)

        def spec_l1(pred_db):   # (B, 2, T, F) → (B,) mean over both sources
            return jnp.abs(pred_db - tdb).mean(axis=(1, 2, 3))

        mag = jnp.abs(tspec)
        irm = mag / jnp.maximum(mag.sum(axis=1, keepdims=True), 1e-8)    # ideal ratio mask
        irm_spec = irm * mix_spec[:, None]
        irm_wav = spectral.frame_istft(irm_spec, p.frame_length, p.hop, p.fft_length,
                                       length=self.covered)
        model_db = jnp.stack([out["fg"][..., 0], out["bg"][..., 0]], axis=1)
        res = {"mix": batch["mix"].mean(-1)[:, :self.covered],
               "sources": batch["sources"][:, :, :self.covered],
               "model": est, "irm": irm_wav,
               "spec_l1_model": spec_l1(model_db),
               "spec_l1_mix": spec_l1(jnp.broadcast_to(ndb(mix_spec)[:, None], tdb.shape)),
               "spec_l1_irm": spec_l1(ndb(irm_spec)),
               "weight": batch["weight"]}
        if self.variant == "full":
            est_b, out_b, _ = self.separate(variables, batch, blank=True)
            res["blank"] = est_b
            res["spec_l1_blank"] = spec_l1(jnp.stack([out_b["fg"][..., 0],
                                                      out_b["bg"][..., 0]], axis=1))
        else:   # the permutation the loss picks (host metrics choose by SI-SDR themselves)
            res["spec_l1_model"] = jnp.minimum(
                res["spec_l1_model"],
                spec_l1(jnp.stack([out["bg"][..., 0], out["fg"][..., 0]], axis=1)))
        return res

    def make_evaluator(self):
        from avjax.sep_metrics import SepEvaluator
        return SepEvaluator(self.variant, self.spec.sample_rate)

    # -- data ----------------------------------------------------------------------------
    def _clips_per_step(self, local_batch: int) -> int:
        if self.variant == "full" and local_batch % 2:
            raise UserError(f"the full model mixes example i with i + B/2: the per-process "
                            f"batch must be even, got {local_batch}; change batch_size")
        return local_batch if self.variant == "full" else 2 * local_batch

    def train_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = self.train_source = default_data.open_source(d, "train", int(self.config.seed))
        ds = pipeline.train_dataset_for(
            self.config, source, functools.partial(_cut, spec=self.spec, train=True),
            process_index=process_index, process_count=process_count,
            local_batch=self._clips_per_step(local_batch))
        return ds.map(functools.partial(sep_mix.mix_batch, variant=self.variant))

    def eval_data(self, process_index, process_count, local_batch):
        d = self.config.data
        source = default_data.open_source(d, "eval", int(self.config.seed))
        try:
            paired = sep_mix.PairedSource(source)
        except ValueError as e:
            raise UserError(f"{e}; check data.eval_path") from None
        return pipeline.eval_batches_for(
            self.config, paired, functools.partial(sep_mix.mix_pair, spec=self.spec),
            process_index=process_index, process_count=process_count, local_batch=local_batch)


def _cut(data, rng, *, spec, train):
    """Module-level so grain worker processes can pickle it."""
    return sep_mix.cut_clip(data, spec, rng, train)
