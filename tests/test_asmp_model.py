"""ASMP at paper size (abstractly, jax.eval_shape): the spec's shapes in every sub-network; the
front end's warp; the sliding-window evaluation's shapes."""
import jax
import numpy as np
import pytest

from avjax import asmp_frontend as F
from configs import asmp as asmp_config


@pytest.fixture(scope="module")
def paper():
    from avjax.tasks.asmp import Task
    task = Task(asmp_config.get_config())
    batch = task.example_batch(2)
    variables = jax.eval_shape(task.init, jax.random.key(0), batch)
    return task, batch, variables


def test_paper_batch_and_graph_shapes(paper):
    task, batch, _ = paper
    assert batch["mix"].shape == (2, 65535)
    assert batch["wave"].shape == (2, 2, 65535)
    assert batch["nodes"].shape == (2, 2, 22, 2048)        # 20 context + principal + scene
    assert batch["edge_w"].shape == (2, 2, 22, 22)
    assert task.eval_spec.num_nodes == 2 * 21 + 1           # up to 2 principal objects at test


def test_paper_parameter_shapes(paper):
    _, _, v = paper
    p = v["params"]
    g = p["graph"]
    assert g["map_fc1"]["kernel"].shape == (2048, 1024)
    assert g["map_fc2"]["kernel"].shape == (1024, 512)
    assert g["gat"]["lin"]["kernel"].shape == (512, 256)        # 4 heads × 64
    assert g["gat"]["lin_edge"]["kernel"].shape == (1, 256)     # bias-free Linear(1 → 256)
    assert "bias" not in g["gat"]["lin_edge"]
    assert g["gat"]["att_src"].shape == (1, 4, 64)
    assert g["edgeconv"]["lin"]["kernel"].shape == (512, 256)   # [x_i, x_j − x_i]
    assert "edge_proj" not in g                                 # readouts summed, both 512
    assert p["gru"]["ir"]["kernel"].shape == (512, 512)
    assert p["unet"]["c1"]["conv"]["kernel"].shape == (4, 4, 1, 64)
    assert p["unet"]["u1"]["conv"]["kernel"].shape == (4, 4, 1024, 512)
    assert p["classifier"]["resnet"]["conv1"]["kernel"].shape == (7, 7, 1, 64)
    assert p["classifier"]["fc"]["kernel"].shape == (512, 15)
    d = p["direction"]
    assert d["fc"]["kernel"].shape == (512, 512)
    assert d["head1"]["kernel"].shape == (512, 256)
    assert d["head2"]["kernel"].shape == (256, 28)
    assert v["batch_stats"]["direction"]["head_bn2"]["mean"].shape == (28,)


def test_paper_forward_and_loss_shapes(paper):
    task, batch, v = paper
    from avjax.models.asmp import ASMP
    out = jax.eval_shape(lambda v, b: task.model.apply(
        v, b["mix"], b["nodes"], b["node_mask"], b["edge_w"], b["rel"], 1, False,
        method=ASMP.forward), v, batch)
    assert out["mix_warped"].shape == (2, 256, 256)            # 256 warped rows × 256 frames
    assert out["mix_spec"].shape == (2, 512, 256)
    assert out["masks"].shape == (2, 2, 2, 256, 256)           # (B, video, slot, H, W)
    assert out["cond"].shape == (2, 2, 2, 512)
    assert out["cls_logits"].shape == (2, 2, 1, 15)
    assert out["dir_logits"].shape == (2, 2, 1, 28)
    assert (task.model.dir_stride, task.model.dir_width) == (42, 46)
    params = v["params"]
    state = {k: x for k, x in v.items() if k != "params"}
    loss, (metrics, _) = jax.eval_shape(lambda p, s, b: task.loss(p, s, b, jax.random.key(0), True),
                                        params, state, batch)
    assert loss.shape == () and set(metrics) >= {"coseparation", "classification",
                                                 "orthogonality", "direction"}
    labels = task.param_labels(params)
    assert set(jax.tree.leaves(labels)) == {"graph", "gru", "unet", "classifier", "direction"}


def test_paper_eval_outputs_shapes(paper):
    task, _, v = paper
    eb = task._zeros(task.eval_spec, 1, False)
    eb["weight"] = np.ones((1,), np.float32)
    out = jax.eval_shape(task.eval_outputs, v, eb)
    assert out["est"].shape == (1, 2, 110250)
    assert out["est_swapped"].shape == (1, 2, 110250)
    assert out["dir_logits"].shape == (1, 2, 2, 28)
    starts = task.eval_starts
    assert starts[1] - starts[0] == 551 and starts[-1] == 110250 - 65535   # hop + tail window


def test_frontend_warp():
    fe = F.FrontEnd()
    assert fe.frames(65535) == 256 and fe.bins == 512
    w = F.warp_matrix(512, 256)
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-5)           # bilinear rows
    assert w[0, 0] == 1 and w[-1, -1] == pytest.approx(1)
    # log-like: the first warped rows sample low frequencies densely
    centers = (w * np.arange(512)).sum(1)
    assert np.all(np.diff(centers) > 0) and centers[128] < 512 * 0.3
    smooth = np.linspace(0, 1, 512, dtype=np.float32)[:, None] ** 2 * np.ones((1, 4), np.float32)
    back = np.asarray(F.unwarp(fe, F.warp(fe, smooth)))
    assert np.abs(back - smooth).max() < 0.02
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.3
    y = np.asarray(F.istft(fe, F.stft(fe, x), 4000))
    np.testing.assert_allclose(y, x, atol=1e-4)


@pytest.mark.parametrize("args", ["local,no_gat,no_edgeconv,no_gru,no_orth", "local,dir10",
                                  "local,dir8"])
def test_ablation_and_variant_configs_build(args):
    from avjax.tasks.asmp import Task
    c = asmp_config.get_config(args)
    task = Task(c)
    batch = task.example_batch(2)
    v = jax.eval_shape(task.init, jax.random.key(0), batch)
    state = {k: x for k, x in v.items() if k != "params"}
    loss, _ = jax.eval_shape(lambda p, s, b: task.loss(p, s, b, jax.random.key(0), True),
                             v["params"], state, batch)
    assert loss.shape == ()
    extra = 3 if c.model.dir_uvd_weight > 0 else 0          # local: the displacement outputs
    assert v["params"]["direction"]["head2"]["kernel"].shape[-1] == c.model.num_direction_classes + extra
    if "no_gru" in args:
        assert "gru" not in v["params"] and "slot_offset" in v["params"]
        assert "gat" not in v["params"]["graph"] and "edgeconv" not in v["params"]["graph"]
        assert c.model.orth_weight == 0
    labels = task.param_labels(v["params"])
    assert set(jax.tree.leaves(labels)) <= {"graph", "gru", "unet", "classifier", "direction"}


def test_unet_k_conditions_per_input_equal_repeated_inputs():
    """(B, K, D) conditions run the encoder once: same masks and batch statistics as repeating
    each input K times (train mode, so BatchNorm uses batch statistics), FiLM included."""
    import jax.numpy as jnp
    from avjax.models.asmp_unet import ASMPUNet
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 128, 128, 1)), jnp.float32)
    cond = jnp.asarray(rng.standard_normal((2, 3, 5)), jnp.float32)
    m = ASMPUNet(ngf=2, film=True, impl="reference")
    # jitted: op-by-op (eager) dispatch of this U-Net compiles every op on its own, ~3x slower
    v = jax.jit(lambda k: m.init(k, x, cond[:, 0], train=False))(jax.random.key(0))
    v = jax.tree.map(lambda a: a + 0.05 * jnp.asarray(rng.standard_normal(a.shape), a.dtype), v)
    apply = jax.jit(lambda v, x, c: m.apply(v, x, c, train=True, mutable=["batch_stats"]))
    a, sa = apply(v, x, cond)
    b, sb = apply(v, jnp.repeat(x, 3, axis=0), cond.reshape(6, 5))
    assert a.shape == (2, 3, 128, 128, 1)
    np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-4, atol=1e-5)
    for p, q in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("strides,pool,expect", [((2, 2), True, (32, 11)),   # paper stem: 4× in t
                                                 ((2, 1), False, (64, 44))])  # every frame kept
def test_direction_stem_keeps_time_resolution(strides, pool, expect):
    """The stem knob sets the first stage's (freq, time) size on a 128×44 direction slice; the
    local config's stem keeps every frame (its echo cues are 2 frames apart)."""
    from avjax.models.asmp_resnet import DirectionNet
    net = DirectionNet(4, 8, 8, 28, strides, pool)
    x = np.zeros((2, 128, 44, 1), np.float32)
    v = jax.eval_shape(lambda k, x: net.init(k, x, False), jax.random.key(0), x)
    (logits, state) = jax.eval_shape(
        lambda v, x: net.apply(v, x, False, capture_intermediates=True,
                               mutable=["intermediates"]), v, x)
    assert logits.shape == (2, 28)
    first = state["intermediates"]["resnet"]["layer1_0"]["__call__"][0]
    assert first.shape[1:3] == expect


def test_direction_stem_knob_reaches_the_model():
    from avjax.tasks.asmp import build_model
    m = build_model(asmp_config.get_config("local"))
    assert m.direction_stem_strides == (2, 2) and m.direction_stem_pool      # the paper's stem
    c = asmp_config.get_config("local")
    c.model.direction_stem_strides, c.model.direction_stem_pool = (2, 1), False
    m = build_model(c)
    assert m.direction_stem_strides == (2, 1) and not m.direction_stem_pool


def test_all_window_directions_match_per_window_slices():
    """dir_all_windows: one direction-net pass over every window slice gives, at each r, the
    logits of the single slice at r (what evaluation scores), for the spec's 42/46 layout."""
    from avjax.models.asmp import ASMP
    m = ASMP(direction_width=4, direction_embed=8, direction_hidden=8, dir_stride=42,
             dir_width=44, dir_all_windows=True)
    x = np.random.default_rng(0).normal(size=(3, 128, 128)).astype(np.float32)
    v = jax.jit(lambda k: m.init(k, x, False, method=ASMP.window_directions))(jax.random.key(0))

    @jax.jit
    def both(v):
        return (m.apply(v, x, False, method=ASMP.window_directions),
                [m.apply(v, x, np.full((3,), r, np.int32), False, method=ASMP.directions)
                 for r in range(3)])

    every, singles = both(v)
    assert every.shape == (3, 3, 28)                            # r_max + 1 = 3 windows
    for r, one in enumerate(singles):
        np.testing.assert_allclose(every[:, r], one, rtol=1e-4, atol=1e-4)


def _tiny_asmp(**flags):
    """A few-parameter ASMP on 32 767-sample segments (128 frames, 3 direction windows)."""
    from avjax.models.asmp import ASMP
    return ASMP(n_fft=510, warp_rows=128, map_hidden=8, map_out=8, heads=1, head_features=4,
                edge_features=4, gru_features=8, unet_ngf=2, classifier_width=2,
                direction_width=2, direction_embed=4, direction_hidden=4, dir_stride=42,
                dir_width=44, dir_all_windows=True, **flags)


def test_teacher_input_replaces_the_separated_estimate_for_direction_only():
    """model.dir_teacher: a video whose teacher mask is 1 has direction logits from the teacher
    spectrogram (unchanged when the mixture, hence its separated estimate, changes); its class
    logits still come from the separated estimate; a mask of 0 is the plain forward pass."""
    from avjax.models.asmp import ASMP
    m = _tiny_asmp()
    r = np.random.default_rng(0)
    mix = r.normal(size=(1, 32767)).astype(np.float32) * 0.1
    nodes = r.normal(size=(1, 2, 3, 5)).astype(np.float32)
    mask, ew, rel = np.ones((1, 2, 3), np.float32), np.ones((1, 2, 3, 3), np.float32), np.array([[0, 2]])
    teacher = r.normal(size=(1, 2, 128, 128)).astype(np.float32)
    v = jax.jit(lambda k: m.init(k, mix, nodes, mask, ew, rel, 1, False,
                                 method=ASMP.forward))(jax.random.key(0))

    @jax.jit
    def run(mix, tmask):
        return m.apply(v, mix, nodes, mask, ew, rel, 1, False, teacher, tmask, method=ASMP.forward)

    on, off = np.array([[1.0, 0.0]], np.float32), np.zeros((1, 2), np.float32)
    a, b, c = run(mix, on), run(mix[:, ::-1] * 3.0, on), run(mix, off)
    np.testing.assert_allclose(a["dir_logits_all"][:, 0], b["dir_logits_all"][:, 0], atol=1e-5)
    assert not np.allclose(a["dir_logits_all"][:, 1], b["dir_logits_all"][:, 1], atol=1e-5)
    assert not np.allclose(a["cls_logits"][:, 0], b["cls_logits"][:, 0], atol=1e-6)
    # mask 0: video 0 hears its separated estimate again; video 1 is untouched either way
    assert not np.allclose(a["dir_logits_all"][:, 0], c["dir_logits_all"][:, 0], atol=1e-5)
    np.testing.assert_allclose(a["dir_logits_all"][:, 1], c["dir_logits_all"][:, 1], atol=1e-6)


def test_teacher_heard_as_well_as_the_estimate_comes_back_under_teacher_keys():
    """model.dir_teacher_both: with a teacher and no mask the direction net hears both; the
    plain keys are the estimate's outputs (as with no teacher), the teacher_ keys the clean
    segment's (as with a mask of ones), for the motion window, every window and (u, v, d)."""
    from avjax.models.asmp import ASMP
    m = _tiny_asmp(dir_uvd=True)
    r = np.random.default_rng(1)
    mix = r.normal(size=(2, 32767)).astype(np.float32) * 0.1
    nodes = r.normal(size=(2, 2, 3, 5)).astype(np.float32)
    mask, ew, rel = np.ones((2, 2, 3), np.float32), np.ones((2, 2, 3, 3), np.float32), np.array([[0, 2], [1, 1]])
    teacher = r.normal(size=(2, 2, 128, 128)).astype(np.float32)
    v = jax.jit(lambda k: m.init(k, mix, nodes, mask, ew, rel, 1, False,
                                 method=ASMP.forward))(jax.random.key(0))
    run = jax.jit(lambda *t: m.apply(v, mix, nodes, mask, ew, rel, 1, False, *t,
                                     method=ASMP.forward))
    both, plain, clean = run(teacher, None), run(), run(teacher, np.ones((2, 2), np.float32))
    for k in ("dir_logits", "dir_logits_all", "dir_uvd", "dir_uvd_all"):
        assert both[k].shape == plain[k].shape == both["teacher_" + k].shape
        np.testing.assert_allclose(both[k], plain[k], atol=1e-5)
        np.testing.assert_allclose(both["teacher_" + k], clean[k], atol=1e-5)
    assert not np.allclose(both["dir_logits"], both["teacher_dir_logits"], atol=1e-3)
    assert "teacher_dir_logits" not in plain and "teacher_dir_logits" not in clean


def test_teacher_both_loss_averages_the_estimate_and_teacher_terms():
    """With dir_teacher_both the direction cross-entropy and the displacement term are means
    over the estimate's and the teacher's windows together."""
    from avjax.tasks.asmp import Task
    c = asmp_config.get_config("local")
    task = Task(c)
    r = np.random.default_rng(2)
    batch = task.example_batch(2)
    batch["wave"] = r.normal(size=batch["wave"].shape).astype(np.float32) * 0.1
    batch["mix"] = 0.5 * batch["wave"].sum(1)
    lab = batch["dir_win"] = r.integers(0, 27, batch["dir_win"].shape).astype(np.int32)
    val = batch["dir_win_valid"] = (r.random(lab.shape) < 0.7).astype(np.float32)
    batch["dir_win_uvd"] = r.normal(size=batch["dir_win_uvd"].shape).astype(np.float32)
    spec = F.stft(task.fe, batch["mix"])
    warped = F.warp(task.fe, np.abs(spec))
    b, p, w = lab.shape[0], lab.shape[2], lab.shape[3]
    est, tea = (r.normal(size=(b, 2, p, w, 28)).astype(np.float32) for _ in range(2))
    est_uvd, tea_uvd = (r.normal(size=(b, 2, p, w, 3)).astype(np.float32) for _ in range(2))
    out = {"masks": r.uniform(size=(b, 2, p + 1) + warped.shape[1:]).astype(np.float32),
           "mix_spec": spec, "mix_warped": warped,
           "cls_logits": r.normal(size=(b, 2, p, 15)).astype(np.float32),
           "cond": r.normal(size=(b, 2, p + 1, 8)).astype(np.float32),
           "dir_logits": est[:, :, :, 0], "dir_logits_all": est, "dir_uvd_all": est_uvd,
           "teacher_dir_logits": tea[:, :, :, 0], "teacher_dir_logits_all": tea,
           "teacher_dir_uvd_all": tea_uvd}
    _, metrics = task.losses(out, batch)
    ce = lambda lg: -np.take_along_axis(np.asarray(jax.nn.log_softmax(lg)), lab[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(metrics["direction"]),
                               ((ce(est) + ce(tea)) * val).sum() / (2 * val.sum()), rtol=1e-5)
    sq = lambda pr: ((pr - batch["dir_win_uvd"] / np.array([3.0, 3.0, 1.0])) ** 2).mean(-1)
    np.testing.assert_allclose(float(metrics["displacement"]),
                               ((sq(est_uvd) + sq(tea_uvd)) * val).sum() / (2 * val.sum()), rtol=1e-5)


def test_displacement_term_is_the_masked_squared_error_of_the_head():
    """model.dir_uvd_weight: the loss grows by dir_weight · w · mean over valid slots of the
    squared error between the head's 3 extra outputs and (u, v, d) ÷ dir_uvd_scale; an invalid
    slot (no motion window) adds nothing."""
    from avjax.tasks.asmp import Task
    c = asmp_config.get_config("local")
    c.model.dir_uvd_weight = 2.0
    task = Task(c)
    r = np.random.default_rng(0)
    batch = task.example_batch(2)
    batch["wave"] = r.normal(size=batch["wave"].shape).astype(np.float32) * 0.1
    batch["mix"] = 0.5 * batch["wave"].sum(1)
    batch["cls_valid"][:] = 1
    batch["dir"] = r.integers(0, 28, batch["dir"].shape).astype(np.int32)
    batch["dir_valid"] = np.array([[1, 1], [1, 0]], np.float32)[..., None]
    batch["dir_uvd"] = r.normal(size=batch["dir_uvd"].shape).astype(np.float32)
    spec = F.stft(task.fe, batch["mix"])
    warped = F.warp(task.fe, np.abs(spec))
    b, p = 2, batch["cls"].shape[-1]
    out = {"masks": r.uniform(size=(b, 2, p + 1) + warped.shape[1:]).astype(np.float32),
           "mix_spec": spec, "mix_warped": warped,
           "cls_logits": r.normal(size=(b, 2, p, 15)).astype(np.float32),
           "dir_logits": r.normal(size=(b, 2, p, 28)).astype(np.float32),
           "cond": r.normal(size=(b, 2, p + 1, 8)).astype(np.float32),
           "dir_uvd": r.normal(size=(b, 2, p, 3)).astype(np.float32)}
    total, metrics = task.losses(out, batch)
    without = {k: v for k, v in out.items() if k != "dir_uvd"}
    total0, metrics0 = task.losses(without, batch)
    err = ((out["dir_uvd"] - batch["dir_uvd"] / np.array([3.0, 3.0, 1.0])) ** 2).mean(-1)
    expect = (err * batch["dir_valid"]).sum() / batch["dir_valid"].sum()
    assert "displacement" not in metrics0
    np.testing.assert_allclose(float(metrics["displacement"]), expect, rtol=1e-5)
    np.testing.assert_allclose(float(total - total0), c.model.dir_weight * 2.0 * expect, rtol=1e-4)


def test_displacement_outputs_split_from_the_direction_logits():
    """dir_uvd: the direction head has C + 3 outputs; forward hands back C logits (what
    evaluation takes the argmax of) and the 3 regressed values, for the motion window and for
    every window."""
    from avjax.models.asmp import ASMP
    m = _tiny_asmp(dir_uvd=True)
    r = np.random.default_rng(0)
    mix = r.normal(size=(1, 32767)).astype(np.float32) * 0.1
    nodes = r.normal(size=(1, 2, 3, 5)).astype(np.float32)
    mask, ew, rel = np.ones((1, 2, 3), np.float32), np.ones((1, 2, 3, 3), np.float32), np.array([[0, 2]])
    run = jax.jit(lambda k: m.init_with_output(k, mix, nodes, mask, ew, rel, 1, False,
                                               method=ASMP.forward))
    out, v = run(jax.random.key(0))
    assert v["params"]["direction"]["head2"]["kernel"].shape[-1] == 31
    assert out["dir_logits"].shape == (1, 2, 1, 28) and out["dir_uvd"].shape == (1, 2, 1, 3)
    assert out["dir_logits_all"].shape == (1, 2, 1, 3, 28) and out["dir_uvd_all"].shape == (1, 2, 1, 3, 3)
    for vid, rr in enumerate((0, 2)):       # the motion window's outputs are its window's
        np.testing.assert_allclose(out["dir_logits"][0, vid], out["dir_logits_all"][0, vid, :, rr], atol=1e-5)
        np.testing.assert_allclose(out["dir_uvd"][0, vid], out["dir_uvd_all"][0, vid, :, rr], atol=1e-5)
