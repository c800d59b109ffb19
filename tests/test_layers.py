"""Every fast conv formulation equals the reference: forward and gradients wrt input and kernel."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from avjax.models import conv_fast, layers

# (spatial size, kernel, strides, padding)
CASES = [
    ((9,), (7,), (4,), "SAME"),
    ((37,), (15,), (4,), [(7, 7)]),
    ((40, 1), (65, 1), (4, 1), [(32, 32), (0, 0)]),
    ((9, 11), (4, 4), (2, 2), "SAME"),
    ((8, 8), (4, 4), (2, 2), 1),
    ((9, 7), (3, 5), (2, 2), "VALID"),
    ((7, 6), (1, 1), (2, 2), "VALID"),
    ((6, 7), (3, 3), (1, 1), "SAME"),
    ((8, 16), (4, 4), (1, 2), "SAME"),
    ((8, 16), (2, 6), (2, 2), [(0, 3), (2, 1)]),
    ((5, 9, 9), (3, 3, 3), (1, 2, 2), "SAME"),
    ((5, 6, 7), (3, 3, 3), (2, 2, 2), "SAME"),
    ((5, 6, 7), (3, 5, 5), (2, 2, 2), [(1, 1), (2, 2), (2, 2)]),
    ((4, 5, 5), (1, 1, 1), (1, 2, 2), "VALID"),
    ((7, 6, 7), (5, 3, 3), (2, 2, 2), "SAME"),       # V1-like: 5 temporal taps at stride 2
    ((4, 6, 5), (3, 3, 3), (1, 1, 1), [(1, 1), (1, 1), (1, 1)]),
]
CIN, COUT = 3, 4


def _ids(case):
    return "x".join(map(str, case[0])) + f"-k{'x'.join(map(str, case[1]))}-s{'x'.join(map(str, case[2]))}-{case[3]}"


def _data(size, k, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((2,) + size + (CIN,)), jnp.float32)
    w = jnp.asarray(rng.standard_normal(k + (CIN, COUT)), jnp.float32)
    return x, w


def _value_and_grads(f, x, w):
    y, vjp = jax.vjp(f, x, w)
    g = jnp.cos(jnp.arange(y.size, dtype=jnp.float32) * 0.7).reshape(y.shape)
    return (y,) + vjp(g)


def _close(got, want):
    for a, b, what in zip(got, want, ("forward", "d/dx", "d/dkernel")):
        assert a.shape == b.shape, what
        scale = float(jnp.abs(b).max()) + 1e-12
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * scale,
                                   err_msg=what)


def _forms(strides, transpose: bool):
    if transpose:
        return ["gemm", "batched", "subpixel"]
    forms = ["im2col", "stride1" if all(s == 1 for s in strides) else "space_to_depth"]
    if len(strides) == 3:
        forms += ["tfold"] + (["tfold_shift"] if strides[0] == 1 else [])
    return forms


def _check_all(reference, candidates, x, w):
    """One jit for the reference and all candidates (compiling each alone dominates test time)."""
    fns = [reference] + candidates
    results = jax.jit(lambda x, w: [_value_and_grads(f, x, w) for f in fns])(x, w)
    for got in results[1:]:
        _close(got, results[0])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv_forms_match_reference(case):
    size, k, s, pad = case
    x, w = _data(size, k)
    pads = layers.conv_padding(pad, size, k, s)
    cands = [lambda x, w, form=form: conv_fast.conv(x, w, s, pads, form) for form in _forms(s, False)]
    if any(v > 1 for v in s):
        cands += [lambda x, w, core=core: conv_fast.conv_space_to_depth(x, w, s, pads, core)
                  for core in ("im2col", "shift")]
    _check_all(lambda x, w: layers.conv_reference(x, w, s, pads), cands, x, w)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_conv_transpose_forms_match_reference(case):
    size, k, s, pad = case
    x, w = _data(size, k)
    crop = layers.transpose_crop(pad, k, s)
    cands = [lambda x, w, form=form: conv_fast.conv_transpose(x, w, s, crop, form)
             for form in _forms(s, True)]
    _check_all(lambda x, w: layers.conv_transpose_reference(x, w, s, crop), cands, x, w)


def test_space_to_depth_roundtrip():
    x = jnp.arange(2 * 6 * 4 * 3, dtype=jnp.float32).reshape(2, 6, 4, 3)
    y = conv_fast.space_to_depth(x, (2, 2))
    assert y.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(conv_fast.depth_to_space(y, (2, 2)), x)


@pytest.mark.parametrize("cls", [layers.Conv, layers.ConvTranspose])
def test_modules_same_params_and_numbers_in_both_impls(cls):
    x = jax.random.normal(jax.random.key(0), (2, 8, 10, 3))
    fast = cls(5, (4, 4), 2, padding=1, use_bias=True, impl="fast")
    ref = cls(5, (4, 4), 2, padding=1, use_bias=True, impl="reference")
    v = fast.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, ref.init(jax.random.key(1), x))
    assert v["params"]["kernel"].shape == (4, 4, 3, 5) and v["params"]["bias"].shape == (5,)
    np.testing.assert_allclose(fast.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)


def test_impl_selection(monkeypatch):
    assert layers.resolve_impl("reference") == "reference"
    monkeypatch.setenv("AVJAX_CONV_IMPL", "reference")
    assert layers.resolve_impl() == "reference"
    layers.set_default_impl("fast")
    try:
        assert layers.resolve_impl() == "fast"
        assert layers.resolve_impl("reference") == "reference"
    finally:
        layers.set_default_impl(None)
    monkeypatch.delenv("AVJAX_CONV_IMPL")
    want = "fast" if jax.default_backend() == "cpu" else "reference"
    assert layers.resolve_impl() == want
    with pytest.raises(ValueError):
        layers.resolve_impl("bogus")


def test_conv_transpose_matches_torch():
    torch = pytest.importorskip("torch")
    x, w = _data((5, 6), (4, 4))
    y = layers.ConvTranspose(COUT, (4, 4), 2, padding=1, impl="fast").apply(
        {"params": {"kernel": w}}, x)
    tw = torch.from_numpy(np.asarray(w).transpose(2, 3, 0, 1).copy())     # (in, out, kh, kw)
    ty = torch.nn.functional.conv_transpose2d(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()),
                                              tw, stride=2, padding=1)
    np.testing.assert_allclose(np.asarray(y), ty.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape,window,strides,padding", [
    ((2, 3, 9, 11, 4), (1, 3, 3), (1, 2, 2), "SAME"),     # the shift net's V2
    ((2, 23, 1, 4), (4, 1), (4, 1), "VALID"),             # A2
    ((2, 7, 8, 3), (3, 2), (2, 1), "SAME"),
])
def test_max_pool_fast_matches_reference_with_ties(shape, window, strides, padding):
    # quantised ReLU output: many ties inside windows, where the gradient must still go to the
    # first maximal element of each window like select_and_scatter's
    x = jnp.round(4 * jax.nn.relu(jax.random.normal(jax.random.key(0), shape))) / 4
    pads = layers.conv_padding(padding, shape[1:-1], window, strides)
    f = lambda impl: (lambda x: layers.max_pool(x, window, strides, padding, impl=impl))
    got, want = jax.jit(lambda x: [_value_and_grads(lambda x, w: f(i)(x), x, None)[:2]
                                   for i in ("fast", "reference")])(x)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(want[1]).sum()) > 0 and pads


def test_max_pool_value_and_gradient():
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 3))
    y = layers.max_pool(x, (3, 3), (2, 2), "SAME")
    assert y.shape == (2, 4, 5, 3)
    g = jax.grad(lambda x: layers.max_pool(x, (3, 3), (2, 2), "SAME").sum())(x)
    # every output routes its gradient to exactly one input (no ties in random data)
    assert float(g.sum()) == pytest.approx(y.size)


def test_record_calls_lists_layers():
    m = layers.Conv(4, (3, 3), 2)
    with layers.record_calls() as calls:
        jax.eval_shape(lambda: m.init(jax.random.key(0), jnp.zeros((1, 8, 8, 2))))
    assert [(c["kind"], c["x_shape"], c["kernel_shape"]) for c in calls] == \
        [("conv", (1, 8, 8, 2), (3, 3, 2, 4))]


def test_conv_choice_at_shift_net_shapes():
    # activation-heavy 3-D layers fold time into a 2-D conv; small or weight-heavy ones do not
    assert conv_fast.conv_choice((1, 32, 112, 112, 3), (5, 7, 7, 3, 64), (2, 2, 2)) == "tfold"
    assert conv_fast.conv_choice((1, 16, 28, 28, 64), (3, 3, 3, 64, 64), (1, 1, 1)) == "tfold_shift"
    assert conv_fast.conv_choice((2, 16, 28, 28, 128), (3, 3, 3, 128, 128), (1, 1, 1)) == "tfold"
    assert conv_fast.conv_choice((2, 4, 4, 4, 512), (3, 3, 3, 512, 512), (1, 1, 1)) == "stride1"
    assert conv_fast.conv_choice((2, 8, 14, 14, 128), (1, 1, 1, 128, 256), (2, 2, 2)) != "tfold"
    assert conv_fast.conv_choice((2, 1401, 1, 64), (15, 1, 64, 128), (4, 1)) != "tfold"


def test_core_choice_at_asmp_resnet_shapes():
    # the narrow ResNets' 3×3 blocks use XLA's own conv while 6+ wide; 2-4 wide, the GEMM cores
    assert conv_fast.core_choice((48, 34, 14, 16), (3, 3, 16, 16)) == "xla"       # direction, layer1
    assert conv_fast.core_choice((16, 34, 34, 16), (3, 3, 16, 16)) == "xla"       # classifier, layer1
    assert conv_fast.core_choice((48, 6, 4, 128), (3, 3, 128, 128)) != "xla"      # direction, layer4
    assert conv_fast.core_choice((8, 34, 34, 256), (3, 3, 256, 256)) != "xla"     # paper width
    assert conv_fast.core_choice((8, 34, 34, 64), (2, 2, 64, 32)) != "xla"        # U-Net (s2d)


def test_concat_pointwise_conv_equals_conv_on_the_materialised_concat():
    """The shift net's F4: video features shared by the audio passes, audio tiled over H, W."""
    b, p, t, h, w, cv, ca, f = 2, 3, 4, 5, 6, 7, 5, 9
    ka, kb = jax.random.split(jax.random.key(3))
    v = jax.random.normal(ka, (b, 1, t, h, w, cv))
    a = jax.random.normal(kb, (b, p, t, 1, 1, ca))
    split = layers.ConcatPointwiseConv(f, 3)
    full = layers.Conv(f, (1, 1, 1), impl="reference")

    def concat(v, a):
        shape = (b, p, t, h, w)
        x = jnp.concatenate([jnp.broadcast_to(v, shape + (cv,)), jnp.broadcast_to(a, shape + (ca,))], -1)
        return x.reshape((b * p, t, h, w, cv + ca))

    params = split.init(jax.random.key(0), v, a)
    ref_params = full.init(jax.random.key(0), concat(v, a))
    np.testing.assert_array_equal(params["params"]["kernel"], ref_params["params"]["kernel"])
    assert params["params"]["kernel"].shape == (1, 1, 1, cv + ca, f)

    def loss_split(params, v, a):
        y = split.apply(params, v, a).reshape((b * p, t, h, w, f))
        return jnp.sum(jnp.sin(y)), y

    def loss_full(params, v, a):
        y = full.apply(params, concat(v, a))
        return jnp.sum(jnp.sin(y)), y

    (l1, y1), g1 = jax.value_and_grad(loss_split, argnums=(0, 1, 2), has_aux=True)(params, v, a)
    (l2, y2), g2 = jax.value_and_grad(loss_full, argnums=(0, 1, 2), has_aux=True)(params, v, a)
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)
    for x1, x2 in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):   # sums in another order
        np.testing.assert_allclose(x1, x2, rtol=1e-5, atol=1e-5 * float(jnp.abs(x2).max()))
    with layers.record_calls() as calls:
        split.apply(params, v, a)
    assert calls[0]["x_shape"] == (b * p, t, h, w, cv + ca)
