"""ASMP's visual conditioning module (spec/asmp.md §4) on jraph graphs.

Graphs arrive dense and padded (per graph: nodes (n, F), node_mask (n,), edge weights (n, n));
``to_graphs_tuple`` turns a batch of them into one jraph.GraphsTuple holding every ordered pair
(j → i) of a graph as an edge, with masks for padding nodes and the edges that touch them.
Message passing uses jraph's segment ops; a padding node is never a sender to a real node, so
padding never changes real nodes' outputs (tests check it).

- map_net: Linear F→1024 → LeakyReLU 0.2 → Linear 1024→512 (per node).
- GATConv with edge attributes (PyG GATConv(edge_dim=1) semantics): x' = W x (bias-free),
  logit_ij = LeakyReLU_0.2(a_src·x'_j + a_dst·x'_i + a_edge·W_e e_ij) per head, softmax over
  the incoming edges of i, out_i = Σ_j α_ij x'_j, heads concatenated, + bias. Self-loops are
  replaced by ones whose attribute is the mean of the node's incoming (non-self) edge weights
  (PyG fill_value="mean"; 0 for a node with no other incoming edge).
- EdgeConv (max): h_i = max_j MLP([x_i, x_j − x_i]) over incoming edges (self-loop included),
  MLP = Linear → ReLU → BatchNorm (statistics over the valid edges); edge weights unused.
- readout: [max ‖ mean](GAT out) + [max ‖ mean](EdgeConv out) over each graph's valid nodes.
Widths are arguments (paper: 1024/512, 4×64, 256) so a CPU-sized variant shrinks them.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

NEG = -1e30


def to_graphs_tuple(nodes, node_mask, edge_w) -> tuple[jraph.GraphsTuple, jax.Array, jax.Array]:
    """Dense padded graphs (G, n, F), (G, n), (G, n, n) → (GraphsTuple, node_mask (G·n,),
    edge_mask (G·n·n,)). Edge e = (g, i, j): sender g·n + j, receiver g·n + i, attribute
    edge_w[g, i, j]; edges come sorted by receiver."""
    nodes, node_mask, edge_w = (jnp.asarray(a) for a in (nodes, node_mask, edge_w))
    g, n = node_mask.shape
    recv = jnp.repeat(jnp.arange(g * n), n)
    send = (jnp.arange(g)[:, None, None] * n + jnp.arange(n)[None, None, :]
            + jnp.zeros((1, n, 1), jnp.int32)).reshape(-1)
    nm = node_mask.reshape(-1)
    em = nm[recv] * nm[send]
    graph = jraph.GraphsTuple(nodes=nodes.reshape(g * n, -1), edges=edge_w.reshape(-1, 1),
                              senders=send, receivers=recv,
                              n_node=jnp.full((g,), n), n_edge=jnp.full((g,), n * n),
                              globals=None)
    return graph, nm, em


def _self_loop_mean(graph: jraph.GraphsTuple, edge_mask):
    """Edge attributes with every self-loop's replaced by the mean incoming non-self weight."""
    num = graph.nodes.shape[0]
    is_self = graph.senders == graph.receivers
    w = graph.edges[:, 0]
    other = edge_mask * (1.0 - is_self)
    tot = jraph.segment_sum(w * other, graph.receivers, num, indices_are_sorted=True)
    cnt = jraph.segment_sum(other, graph.receivers, num, indices_are_sorted=True)
    mean = tot / jnp.maximum(cnt, 1.0)
    return jnp.where(is_self, mean[graph.receivers], w)[:, None]


class GATConv(nn.Module):
    heads: int = 4
    features: int = 64          # per head
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, node_mask, edge_mask):
        h, c = self.heads, self.features
        num = graph.nodes.shape[0]
        glorot = nn.initializers.glorot_uniform()
        x = nn.Dense(h * c, use_bias=False, kernel_init=glorot, name="lin")(graph.nodes)
        x = x.reshape(num, h, c)
        att_src = self.param("att_src", glorot, (1, h, c))
        att_dst = self.param("att_dst", glorot, (1, h, c))
        att_edge = self.param("att_edge", glorot, (1, h, c))
        e = _self_loop_mean(graph, edge_mask)
        e = nn.Dense(h * c, use_bias=False, kernel_init=glorot, name="lin_edge")(e).reshape(-1, h, c)
        a_src = (x * att_src).sum(-1)
        a_dst = (x * att_dst).sum(-1)
        a_edge = (e * att_edge).sum(-1)
        logits = nn.leaky_relu(a_src[graph.senders] + a_dst[graph.receivers] + a_edge,
                               self.negative_slope)
        logits = jnp.where(edge_mask[:, None] > 0, logits, NEG)
        alpha = jraph.segment_softmax(logits, graph.receivers, num, indices_are_sorted=True)
        alpha = alpha * edge_mask[:, None]
        out = jraph.segment_sum(alpha[..., None] * x[graph.senders], graph.receivers, num,
                                indices_are_sorted=True)
        out = out.reshape(num, h * c) + self.param("bias", nn.initializers.zeros, (h * c,))
        return out * node_mask[:, None]


class EdgeConv(nn.Module):
    features: int = 256
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, node_mask, edge_mask, train: bool):
        x = graph.nodes
        num = x.shape[0]
        xi, xj = x[graph.receivers], x[graph.senders]
        m = nn.Dense(self.features, name="lin")(jnp.concatenate([xi, xj - xi], -1))
        m = nn.relu(m)
        m = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=1e-5,
                         name="bn")(m, mask=edge_mask[:, None] > 0)
        m = jnp.where(edge_mask[:, None] > 0, m, NEG)
        out = jraph.segment_max(m, graph.receivers, num, indices_are_sorted=True)
        has = jraph.segment_sum(edge_mask, graph.receivers, num, indices_are_sorted=True) > 0
        return jnp.where(has[:, None] & (node_mask[:, None] > 0), out, 0.0)


def masked_max_mean(x, node_mask, num_graphs: int):
    """(G·n, D) → (G, 2D): [max ‖ mean] over each graph's valid nodes (0 for an empty graph)."""
    x = x.reshape(num_graphs, -1, x.shape[-1])
    m = node_mask.reshape(num_graphs, -1, 1)
    cnt = m.sum(1)
    mx = jnp.where(cnt > 0, jnp.where(m > 0, x, NEG).max(1), 0.0)
    mean = (x * m).sum(1) / jnp.maximum(cnt, 1.0)
    return jnp.concatenate([mx, mean], -1)


class GraphEncoder(nn.Module):
    """map_net → GAT → ReLU → EdgeConv → ReLU → summed [max ‖ mean] readouts → (G, 2·out)."""
    map_hidden: int = 1024
    map_out: int = 512
    heads: int = 4
    head_features: int = 64
    edge_features: int = 256
    use_gat: bool = True
    use_edgeconv: bool = True
    node_norm: bool = False   # BatchNorm of the input features over real nodes (not in the
                              # paper; see configs/asmp.py local)

    @nn.compact
    def __call__(self, nodes, node_mask, edge_w, train: bool):
        g = node_mask.shape[0]
        graph, nm, em = to_graphs_tuple(nodes, node_mask, edge_w)
        x = graph.nodes
        if self.node_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                             name="node_bn")(x, mask=nm[:, None] > 0)
        x = nn.Dense(self.map_hidden, name="map_fc1")(x)
        x = nn.Dense(self.map_out, name="map_fc2")(nn.leaky_relu(x, 0.2))
        x = x * nm[:, None]
        out_dim = self.heads * self.head_features
        if self.use_gat:
            x = nn.relu(GATConv(self.heads, self.head_features, name="gat")(
                graph._replace(nodes=x), nm, em))
        else:   # ablation: a per-node projection to the GAT's width
            x = nn.relu(nn.Dense(out_dim, name="gat_skip")(x)) * nm[:, None]
        read = masked_max_mean(x, nm, g)
        if self.use_edgeconv:
            y = nn.relu(EdgeConv(self.edge_features, name="edgeconv")(
                graph._replace(nodes=x), nm, em, train))
            read2 = masked_max_mean(y, nm, g)
            if read2.shape[-1] != read.shape[-1]:
                read2 = nn.Dense(read.shape[-1], name="edge_proj")(read2)
            read = read + read2
        return read
