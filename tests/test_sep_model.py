"""Separation U-Net shapes (spec §2.2, paper size, via jax.eval_shape) and losses (§2.3)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import layers
from avjax.models.sep_av import AVSeparator
from avjax.models.sep_unet import SepUNet, full_loss, layer_plan, pit_loss, pit_losses

# spec §2.2: encoder output shapes (T × F × C; the fused channels after conv3..conv5 for full)
ENC_OUT = {"conv1": (128, 512, 64), "conv2": (128, 256, 128), "conv3": (64, 128, 256),
           "conv4": (32, 64, 512), "conv5": (16, 32, 512), "conv6": (8, 16, 512),
           "conv7": (4, 8, 512), "conv8": (2, 4, 512), "conv9": (1, 2, 512)}
DEC_OUT = {"deconv1": (2, 4, 512), "deconv2": (4, 8, 512), "deconv3": (8, 16, 512),
           "deconv4": (16, 32, 512), "deconv5": (32, 64, 512), "deconv6": (64, 128, 256),
           "deconv7": (128, 256, 128), "deconv8": (128, 512, 64)}
DEC_IN_FULL = {"deconv1": 512, "deconv2": 1024, "deconv3": 1024, "deconv4": 1024,
               "deconv5": 1536, "deconv6": 1152, "deconv7": 576, "deconv8": 256, "fg": 128,
               "bg": 128}
DEC_IN_AUDIO = dict(DEC_IN_FULL, deconv5=1024, deconv6=1024, deconv7=512)
# 63-frame / 44 144-sample shift-net features (spec §1 last paragraph)
SCALES = [(16, 28, 28, 64), (16, 28, 28, 128), (8, 7, 7, 512)]


def _trace(model, *args):
    with layers.record_calls() as calls:
        variables = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, train=False),
                                   *args)
    inputs = {c["name"].split("/")[-1]: c for c in calls}
    return variables, inputs


def _check_unet(inputs, dec_in, fused: bool):
    # a layer's input is the previous layer's output (+ video after conv3..conv5 for full)
    order = [n for n, _, _ in layer_plan(9)[0]]
    for prev, name in zip(order, order[1:]):
        t, f, c = ENC_OUT[prev]
        if fused and prev in ("conv3", "conv4", "conv5"):
            c += {"conv3": 64, "conv4": 128, "conv5": 512}[prev]
        assert tuple(inputs[name]["x_shape"][1:]) == (t, f, c), name
    for name, cin in dec_in.items():
        assert inputs[name]["x_shape"][-1] == cin, name
        assert inputs[name]["kernel_shape"][:2] == (4, 4)
    names = list(DEC_OUT) + ["fg"]
    for prev, name in zip(names, names[1:]):       # decoder outputs = next layer's input size
        assert tuple(inputs[name]["x_shape"][1:3]) == DEC_OUT[prev][:2], name


def test_paper_unet_shapes_audio_only():
    spec = jax.ShapeDtypeStruct((2, 128, 1024, 2), jnp.float32)
    model = SepUNet()
    variables, inputs = _trace(model, spec)
    _check_unet(inputs, DEC_IN_AUDIO, fused=False)
    out = jax.eval_shape(lambda v, s: model.apply(v, s, train=False), variables, spec)
    assert out["fg"].shape == out["bg"].shape == (2, 128, 1024, 2)


def test_paper_unet_shapes_with_video_fusion():
    spec = jax.ShapeDtypeStruct((2, 128, 1024, 2), jnp.float32)
    video = [jax.ShapeDtypeStruct((2,) + s, jnp.float32) for s in SCALES]
    variables, inputs = _trace(SepUNet(), spec, video)
    _check_unet(inputs, DEC_IN_FULL, fused=True)


def test_paper_full_model_end_to_end_shapes():
    """Frames + stereo waveform → shift net → fused U-Net (eval_shape only: paper size)."""
    spec = jax.ShapeDtypeStruct((1, 128, 1024, 2), jnp.float32)
    video = jax.ShapeDtypeStruct((1, 63, 224, 224, 3), jnp.float32)
    wave = jax.ShapeDtypeStruct((1, 44144, 2), jnp.float32)
    model = AVSeparator()
    variables, inputs = _trace(model, spec, video, wave)
    assert set(variables["params"]) == {"shift", "unet"}
    assert inputs["conv4"]["x_shape"][1:] == (64, 128, 320)
    assert inputs["deconv5"]["x_shape"][-1] == 1536
    out = jax.eval_shape(lambda v, *a: model.apply(v, *a, train=False), variables, spec, video,
                         wave)
    assert out["fg"].shape == (1, 128, 1024, 2)


def test_small_unet_layers_and_width():
    x = jnp.zeros((1, 32, 64, 2))
    model = SepUNet(width=0.25, num_layers=6)
    v = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(0, impl="rbg"))
    out = jax.jit(lambda v: model.apply(v, x, train=False))(v)
    assert out["fg"].shape == (1, 32, 64, 2)
    assert float(jnp.abs(out["fg"]).max()) < 1.0          # tanh
    assert v["params"]["conv2"]["kernel"].shape == (4, 4, 16, 32)
    with pytest.raises(ValueError, match="T % 16"):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 24, 64, 2)),
                                          train=False))


def _out(fg, bg):
    return {"fg": jnp.asarray(fg, jnp.float32), "bg": jnp.asarray(bg, jnp.float32)}


def test_full_loss_hand_checked():
    # one example, T=F=1: fg (mag .5, phase .2) vs on-screen (0, 0); bg (-.5, 1) vs off (-1, 0)
    out = _out([[[[0.5, 0.2]]]], [[[[-0.5, 1.0]]]])
    target = jnp.asarray([[[[[0.0, 0.0]]], [[[-1.0, 0.0]]]]], jnp.float32)   # (1, 2, 1, 1, 2)
    want = (0.5 + 0.01 * 0.2) + (0.5 + 0.01 * 1.0)
    np.testing.assert_allclose(np.asarray(full_loss(out, target)), [want], rtol=1e-6)


def test_pit_picks_the_better_assignment():
    rng = np.random.default_rng(0)
    s0, s1 = rng.uniform(-1, 1, (2, 1, 4, 8, 2))
    target = jnp.asarray(np.stack([s0, s1], axis=1), jnp.float32)     # (1, 2, 4, 8, 2)
    swapped = _out(s1 + 0.01, s0 - 0.01)                   # fg ≈ source 1, bg ≈ source 0
    per, assign = pit_losses(swapped, target)
    assert int(assign[0]) == 1
    np.testing.assert_allclose(np.asarray(per), [2 * (0.01 + 0.01 * 0.01)], rtol=1e-4)
    # the fixed-assignment (full) loss of the same outputs is much larger
    assert float(full_loss(swapped, target)[0]) > 10 * float(per[0])
    # batch mean over examples with different best assignments
    both = _out(np.concatenate([s0, s1 + 0.01]), np.concatenate([s1, s0 - 0.01]))
    tgt2 = jnp.concatenate([target, target])
    per2, assign2 = pit_losses(both, tgt2)
    assert list(np.asarray(assign2)) == [0, 1]
    np.testing.assert_allclose(float(pit_loss(both, tgt2)), float(per2.mean()), rtol=1e-6)
    assert float(per2[0]) == pytest.approx(0.0, abs=1e-7)


def test_mask_output_is_a_ratio_mask_in_normalised_db():
    from avjax import spectral
    from avjax.models.sep_unet import masked
    mix_db = jnp.asarray([[[[20.0, -40.0]]]])                 # (1, 1, 2) bins, dB
    spec = jnp.stack([spectral.normalize_db(mix_db), jnp.zeros_like(mix_db)], -1)
    raw = jnp.stack([jnp.asarray([[[[0.0, 50.0]]]]), jnp.asarray([[[[0.3, 0.0]]]])], -1)
    out = np.asarray(masked(spec, raw))
    db = np.asarray(spectral.unnormalize_db(out[..., 0]))
    np.testing.assert_allclose(db[0, 0, 0], [20 + 20 * np.log10(0.5), -40.0], atol=1e-3)
    np.testing.assert_allclose(out[0, 0, 0, 0, 1], np.tanh(0.3), atol=1e-6)
    assert float(masked(spec, -1e4 * jnp.ones_like(raw))[..., 0].min()) == -1.0


def test_shift_net_export_initialises_the_full_model(tmp_path):
    import json
    import orbax.checkpoint as ocp
    from avjax import export, tasks
    from avjax.config_cli import apply_overrides, config_to_json, load_config_file
    from avjax.errors import UserError
    from avjax.tasks.separation import load_shift_init
    from tests.conftest import ROOT
    from tests.sep_helpers import random_variables, tiny_config
    shift_cfg = load_config_file(f"{ROOT}/configs/shift.py:local")
    apply_overrides(shift_cfg, {"model.width": "0.125"})
    shift_vars = random_variables(tasks.load(shift_cfg), seed=3)
    out = tmp_path / "shift_export"
    out.mkdir()
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(str(out / "variables"), shift_vars)
    (out / "config.json").write_text(config_to_json(shift_cfg))
    (out / "export.json").write_text(json.dumps({"format": export.FORMAT, "task": "shift",
                                                 "step": 7}))
    sep_task = tasks.load(tiny_config("full"))               # shift_width 0.125 too
    sep_vars = random_variables(sep_task)
    loaded = load_shift_init(str(out), sep_vars)
    for col in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(loaded[col]["shift"]), jax.tree.leaves(shift_vars[col])):
            np.testing.assert_array_equal(np.asarray(a), b)
        for a, b in zip(jax.tree.leaves(loaded[col]["unet"]), jax.tree.leaves(sep_vars[col]["unet"])):
            np.testing.assert_array_equal(np.asarray(a), b)
    wide = tasks.load(tiny_config("full", **{"model.shift_width": 0.25}))
    with pytest.raises(UserError, match="model.shift_width"):
        load_shift_init(str(out), random_variables(wide))


@pytest.mark.parametrize("variant", ["full", "unet_pit"])
def test_sisdr_term_is_the_waveform_si_sdr_of_each_head(variant):
    """model.sisdr_weight adds −weight × mean SI-SDR of the synthesised heads against their
    sources (unet_pit: under the spectrogram loss's assignment); a silent source is skipped."""
    from avjax import tasks
    from avjax.sep_metrics import si_sdr as np_si_sdr
    from tests.sep_helpers import random_variables, tiny_config

    rng = np.random.default_rng(3)
    ref, est = rng.standard_normal((2, 3, 500))
    np.testing.assert_allclose(np.asarray(np_si_sdr(jnp.asarray(ref, jnp.float32),
                                                    jnp.asarray(0.7 * ref + est, jnp.float32),
                                                    1e-8, xp=jnp)),
                               np_si_sdr(ref, 0.7 * ref + est), rtol=1e-4)

    layers.set_default_impl("reference")
    try:
        w = 0.5
        task_w = tasks.load(tiny_config(variant, **{"model.sisdr_weight": w}))
        task_0 = tasks.load(tiny_config(variant, **{"model.sisdr_weight": 0.0}))
        batch = {k: np.zeros_like(v) for k, v in task_w.example_batch(2).items()}
        n = batch["mix"].shape[1]
        batch["sources"] = (0.1 * rng.standard_normal((2, 2, n))).astype(np.float32)
        batch["sources"][1, 1] = 0.0                                  # a silent off-screen source
        batch["mix"] = np.repeat(batch["sources"].sum(1)[..., None], 2, axis=-1)
        if "video" in batch:
            batch["video"] = rng.integers(0, 256, batch["video"].shape, dtype=np.uint8)
        variables = random_variables(task_w)
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        key = jax.random.key(0)
        # jitted: the eager full model takes a minute
        (loss_w, (m, _)), grads = jax.jit(jax.value_and_grad(
            lambda p: task_w.loss(p, state, batch, key, True), has_aux=True))(params)
        loss_0 = jax.jit(lambda p: task_0.loss(p, state, batch, key, True)[0])(params)

        @jax.jit
        def heads(p):
            args, mix_spec = task_w._inputs(batch)
            out, _ = task_w._apply(p, state, args, True)
            return out, task_w.waveforms(out, mix_spec)
        out, wav = heads(params)
        wav = np.asarray(wav)
        refs = batch["sources"][:, :, :task_w.covered].copy()
        if variant == "unet_pit":
            _, assign = task_w._per_example(out, task_w.targets(batch)[0])
            refs = np.where(np.asarray(assign)[:, None, None] == 1, refs[:, ::-1], refs)
        snr = np_si_sdr(refs, wav)
        heard = (refs ** 2).sum(-1) > 1e-6
        assert heard.sum() == 3
        want = float(loss_0) - w * snr[heard].mean()
        np.testing.assert_allclose(float(loss_w), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(float(m["fg_si_sdr"]), snr[heard[:, 0], 0].mean(), rtol=1e-3)
        assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
    finally:
        layers.set_default_impl(None)
