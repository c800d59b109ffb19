"""ASMP graphs: direction classes (spec §6), edge weights (§3), GAT with edge attributes and
EdgeConv against hand-computed values on a 3-node graph, padding never reaching real nodes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from avjax.models import asmp_graph as AG
from data_pipelines import asmp_graphs as G


# ----------------------------------------------------------------------------- labels

def test_the_26_directions_map_to_their_classes():
    for k, vec in enumerate(G.DIRECTIONS_26):
        assert G.direction_class(vec) == k + 1, vec
        assert G.direction_class(2.5 * vec) == k + 1          # scale does not matter
        assert G.direction_class(vec + 0.1 * np.array([0.3, -0.2, 0.1])) == k + 1


def test_small_motion_is_static_and_nan_is_background():
    assert G.direction_class([0.59, -0.59, 0.29]) == 0
    assert G.direction_class([0.0, 0.0, 0.0]) == 0
    assert G.direction_class([0.61, 0.0, 0.0]) == 3            # (1, 0, 0)
    assert G.direction_class([0.0, 0.0, -0.31]) == 4           # (0, 0, -1)
    assert G.direction_class([np.nan, 0, 1]) == 27
    batch = G.direction_class(np.array([[[0, 0, 0], [0, 0, 5]]]))
    assert batch.shape == (1, 2) and batch.tolist() == [[0, 1]]


def test_10_and_8_class_variants():
    assert G.direction_class([0, 0, 0], 10) == 0
    assert G.direction_class([1, 1, 1], 10) == 1
    assert G.direction_class([-1, -1, -1], 10) == 8
    assert G.direction_class([np.nan, 0, 0], 10) == 9
    assert G.direction_class([0, 0, 0], 8) == -1               # static: ignored
    assert G.direction_class([1, -1, 1], 8) == 2
    assert G.ignore_class(28) == 27 and G.ignore_class(10) == 9


def test_edge_weights_nan_percentile_and_fallbacks():
    d = np.array([[0, 1, 2, np.nan], [1, 0, 4, np.nan], [2, 4, 0, np.nan],
                  [np.nan, np.nan, np.nan, 0]])
    w = G.edge_weights(d, 50)
    norm = np.array([1, 2, 4]) / 4.0
    sigma = np.percentile(np.repeat(norm, 2), 50)
    assert w[0, 1] == pytest.approx(np.exp(-0.25 / sigma), rel=1e-6)
    assert w[1, 2] == pytest.approx(np.exp(-1.0 / sigma), rel=1e-6)
    assert np.all(np.diag(w) == 1)
    assert w[0, 3] == 0 and w[3, 0] == 0                      # NaN → 0
    assert np.all(G.edge_weights(np.full((3, 3), np.nan), 25) == 1)   # nothing valid → all 1


# ----------------------------------------------------------------------------- layers

X = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0], [-1.0, 1.0, 0.5]], np.float32)
E = np.array([[1.0, 0.3, 0.8], [0.3, 1.0, 0.5], [0.8, 0.5, 1.0]], np.float32)   # E[i, j]: j → i


def _graph(x, mask, ew):
    return AG.to_graphs_tuple(jnp.asarray(x)[None], jnp.asarray(mask)[None], jnp.asarray(ew)[None])


def _lrelu(z):
    return np.where(z > 0, z, 0.2 * z)


def test_gat_with_edge_attributes_matches_hand_computation():
    heads, c = 2, 3
    graph, nm, em = _graph(X, np.ones(3, np.float32), E)
    gat = AG.GATConv(heads, c)
    v = gat.init(jax.random.key(1), graph, nm, em)
    v = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(0).standard_normal(a.shape), v)
    got = np.asarray(gat.apply(v, graph, nm, em))
    p = jax.tree.map(np.asarray, v["params"])
    xp = (X @ p["lin"]["kernel"]).reshape(3, heads, c)
    a_s = (xp * p["att_src"][0]).sum(-1)
    a_d = (xp * p["att_dst"][0]).sum(-1)
    want = np.zeros((3, heads * c))
    for i in range(3):
        e_self = np.mean([E[i, j] for j in range(3) if j != i])   # self-loop: mean incoming
        logits = []
        for j in range(3):
            e = e_self if i == j else E[i, j]
            ae = ((e * p["lin_edge"]["kernel"][0]).reshape(heads, c) * p["att_edge"][0]).sum(-1)
            logits.append(_lrelu(a_s[j] + a_d[i] + ae))
        logits = np.stack(logits)                                 # (3 senders, heads)
        alpha = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
        want[i] = (alpha[..., None] * xp).sum(0).reshape(-1) + p["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_edgeconv_max_matches_hand_computation():
    graph, nm, em = _graph(X, np.ones(3, np.float32), E)
    conv = AG.EdgeConv(4)
    v = conv.init(jax.random.key(2), graph, nm, em, False)
    got = np.asarray(conv.apply(v, graph, nm, em, False))
    k = np.asarray(v["params"]["lin"]["kernel"])
    b = np.asarray(v["params"]["lin"]["bias"]) + 0.05
    v = jax.tree.map(np.asarray, v)
    v["params"]["lin"]["bias"] = b
    got = np.asarray(conv.apply(v, graph, nm, em, False))
    want = np.zeros((3, 4))
    for i in range(3):
        msgs = [np.maximum(np.concatenate([X[i], X[j] - X[i]]) @ k + b, 0) / np.sqrt(1 + 1e-5)
                for j in range(3)]                                 # BN at init: mean 0, var 1
        want[i] = np.max(msgs, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_padding_nodes_never_change_real_nodes():
    rng = np.random.default_rng(0)
    n_pad = 6
    xp = rng.standard_normal((n_pad, 3)).astype(np.float32) * 5       # garbage in padding
    xp[:3] = X
    ep = rng.uniform(0, 1, (n_pad, n_pad)).astype(np.float32)
    ep[:3, :3] = E
    mask = np.array([1, 1, 1, 0, 0, 0], np.float32)
    g3, nm3, em3 = _graph(X, np.ones(3, np.float32), E)
    g6, nm6, em6 = _graph(xp, mask, ep)
    gat = AG.GATConv(2, 3)
    v = gat.init(jax.random.key(0), g3, nm3, em3)
    np.testing.assert_allclose(gat.apply(v, g6, nm6, em6)[:3], gat.apply(v, g3, nm3, em3),
                               rtol=1e-5, atol=1e-6)
    enc = AG.GraphEncoder(map_hidden=8, map_out=6, heads=2, head_features=3, edge_features=5)
    ve = enc.init(jax.random.key(3), jnp.asarray(X)[None], jnp.ones((1, 3)), jnp.asarray(E)[None],
                  False)
    # train mode: BatchNorm statistics over the valid edges only
    r3, s3 = enc.apply(ve, jnp.asarray(X)[None], jnp.ones((1, 3)), jnp.asarray(E)[None], True,
                       mutable=["batch_stats"])
    r6, s6 = enc.apply(ve, jnp.asarray(xp)[None], jnp.asarray(mask)[None], jnp.asarray(ep)[None],
                       True, mutable=["batch_stats"])
    np.testing.assert_allclose(r6, r3, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s3), jax.tree.leaves(s6)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert r3.shape == (1, 2 * 6)
