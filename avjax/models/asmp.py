"""The ASMP model (spec/asmp.md §2, §4–6): scene graph → GRU over source slots → conditional
U-Net masks on the warped mixture spectrogram → audio classifier and direction network.

Sub-networks (top-level parameter names, which the per-sub-network learning rates key on):
``graph`` (map_net, GAT, EdgeConv), ``gru``, ``unet``, ``classifier``, ``direction``.

Slots: a video graph is fed T = P + 1 times to the GRU (h0 = 0; P principal-object slots, the
last = scene/background); output t conditions the U-Net for slot t. At test one GRU step (slot
0) per video graph. Ablations: ``use_gat``, ``use_edgeconv`` (graph.py) and ``use_gru`` (False:
one linear map of the graph embedding per slot instead of the recurrence).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from avjax import asmp_frontend as F
from avjax.models.asmp_graph import GraphEncoder
from avjax.models.asmp_resnet import Classifier, DirectionNet
from avjax.models.asmp_unet import ASMPUNet


class ASMP(nn.Module):
    n_fft: int = 1022
    hop: int = 256
    warp_rows: int = 256
    map_hidden: int = 1024
    map_out: int = 512
    heads: int = 4
    head_features: int = 64
    edge_features: int = 256
    gru_features: int = 512
    unet_ngf: int = 64
    unet_film: bool = False
    classifier_width: int = 64
    direction_width: int = 64
    direction_embed: int = 512
    direction_hidden: int = 256
    direction_stem_strides: tuple[int, int] = (2, 2)   # (freq, time); paper: 2, 2 + max pool
    direction_stem_pool: bool = True
    num_audio_classes: int = 15
    num_direction_classes: int = 28
    dir_stride: int = 42       # frames per 1-s window position (spec: 42)
    dir_width: int = 46        # frames in the direction slice (spec: 46)
    dir_all_windows: bool = False  # also direction logits for every window slice (dir_logits_all)
    dir_uvd: bool = False      # 3 more direction-head outputs: the window's displacement (u, v, d)
    use_gat: bool = True
    use_edgeconv: bool = True
    use_gru: bool = True
    node_norm: bool = False    # input BatchNorm of node features (asmp_graph.GraphEncoder)
    condition_head: bool = False   # a linear class head on the object slots' conditions
    max_slots: int = 3         # slot offsets of the no-GRU ablation

    @property
    def fe(self) -> F.FrontEnd:
        return F.FrontEnd(self.n_fft, self.hop, self.warp_rows)

    def setup(self):
        self.graph = GraphEncoder(self.map_hidden, self.map_out, self.heads, self.head_features,
                                  self.edge_features, self.use_gat, self.use_edgeconv,
                                  self.node_norm)
        if self.use_gru:
            self.gru = nn.GRUCell(self.gru_features)
        else:
            self.slot_proj = nn.Dense(self.gru_features)
            self.slot_offset = self.param("slot_offset", nn.initializers.normal(0.02),
                                          (self.max_slots, self.gru_features))
        if self.condition_head:
            self.cond_head = nn.Dense(self.num_audio_classes)
        self.unet = ASMPUNet(ngf=self.unet_ngf, film=self.unet_film)
        self.classifier = Classifier(self.classifier_width, self.num_audio_classes)
        self.direction = DirectionNet(self.direction_width, self.direction_embed,
                                      self.direction_hidden,
                                      self.num_direction_classes + (3 if self.dir_uvd else 0),
                                      self.direction_stem_strides, self.direction_stem_pool)

    # -- pieces ----------------------------------------------------------------------------
    def condition(self, nodes, node_mask, edge_w, num_slots: int, train: bool):
        """Graphs (G, n, F), (G, n), (G, n, n) → slot conditions (G, T, D)."""
        emb = self.graph(nodes, node_mask, edge_w, train)
        if not self.use_gru:
            y = self.slot_proj(emb)   # a shared linear map plus a learned per-slot offset
            return jnp.tanh(y[:, None, :] + self.slot_offset[None, :num_slots])
        h = jnp.zeros((emb.shape[0], self.gru_features), emb.dtype)
        outs = []
        for _ in range(num_slots):
            h, y = self.gru(h, emb)
            outs.append(y)
        return jnp.stack(outs, 1)

    def masks(self, log_mix, cond, train: bool):
        """log warped mixture (B, H, W), conditions (B, K, D) → masks (B, K, H, W)."""
        return self.unet(log_mix[..., None], cond, train)[..., 0]

    def classify(self, log_sep, train: bool):
        return self.classifier(log_sep[..., None], train)

    def directions(self, log_sep, rel, train: bool):
        """log separated (N, H, W), relative windows (N,) → direction logits (N, C)."""
        start = rel * self.dir_stride
        sl = jax.vmap(lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, self.dir_width, axis=1))(
            log_sep, start)
        return self.direction(sl[..., None], train)

    def window_directions(self, log_sep, train: bool):
        """log separated (N, H, W) → direction logits of every window slice (N, R, C),
        R = r_max + 1 slices [r·dir_stride, r·dir_stride + dir_width)."""
        n, r = log_sep.shape[0], (log_sep.shape[-1] - self.dir_width) // self.dir_stride + 1
        sl = jnp.stack([log_sep[..., k * self.dir_stride:k * self.dir_stride + self.dir_width]
                        for k in range(r)], 1)                           # (N, R, H, width)
        logits = self.direction(sl.reshape((n * r,) + sl.shape[2:])[..., None], train)
        return logits.reshape(n, r, -1)

    # -- the training forward pass ----------------------------------------------------------
    def __call__(self, mix, nodes, node_mask, edge_w, rel, train: bool = True):
        """mix (B, N) waveforms; per video v ∈ {0, 1}: graphs (B, 2, n, ·), relative motion
        windows rel (B, 2). Returns masks (B, 2, T, H, W) for T = P + 1 slots (P = principal
        slots, from ``num_principals`` below), the warped mixture, and logits of the object
        slots: class (B, 2, P, 15), direction (B, 2, P, C); slot conditions (B, 2, T, D); with
        ``condition_head`` also the conditions' own class logits (B, 2, P, 15); with
        ``dir_all_windows`` the direction logits of every window slice (B, 2, P, R, C); with
        ``dir_uvd`` the regressed displacements (B, 2, P, 3) (and (B, 2, P, R, 3))."""
        return self.forward(mix, nodes, node_mask, edge_w, rel, 1, train)

    def forward(self, mix, nodes, node_mask, edge_w, rel, num_principals: int, train: bool,
                teacher=None, teacher_mask=None):
        """``teacher`` (B, 2, H, W) log warped spectrograms and ``teacher_mask`` (B, 2): where
        the mask is 1 the direction net hears the teacher instead of the video's separated
        estimate (model.dir_teacher; no gradient reaches the separator from those videos). A
        teacher with no mask is heard as well as the estimate (model.dir_teacher_both): its
        outputs come back under ``teacher_``-prefixed keys."""
        b, v = node_mask.shape[:2]
        t = num_principals + 1
        spec = F.stft(self.fe, mix)
        mix_w = F.warp(self.fe, jnp.abs(spec))                          # (B, H, W)
        cond = self.condition(nodes.reshape((b * v,) + nodes.shape[2:]),
                              node_mask.reshape(b * v, -1),
                              edge_w.reshape((b * v,) + edge_w.shape[2:]), t, train)
        cond = cond.reshape(b, v, t, -1)
        masks = self.masks(F.log_mag(mix_w), cond.reshape(b, v * t, -1), train)
        masks = masks.reshape((b, v, t) + masks.shape[2:])
        p = num_principals
        log_sep = F.log_mag(masks[:, :, :p] * mix_w[:, None, None])    # (B, 2, P, H, W)
        flat = log_sep.reshape((b * v * p,) + log_sep.shape[3:])
        cls = self.classify(flat, train).reshape(b, v, p, -1)
        heard = log_sep
        if teacher is not None:
            clean = jnp.broadcast_to(jax.lax.stop_gradient(teacher)[:, :, None], log_sep.shape)
            if teacher_mask is None:     # it hears both: the teacher as P more slots
                heard = jnp.concatenate([log_sep, clean], 2)
            else:
                heard = jnp.where(teacher_mask[:, :, None, None, None] > 0, clean, log_sep)
        ph = heard.shape[2]
        flat = heard.reshape((b * v * ph,) + heard.shape[3:])
        rel_flat = jnp.repeat(rel.reshape(b * v), ph)
        extra = {}
        if self.dir_all_windows:     # one direction-net pass over all slices; rel's is among them
            every = self.window_directions(flat, train)                    # (B·2·P, R, C)
            dirs = jnp.take_along_axis(every, rel_flat[:, None, None], 1)[:, 0]
            extra["dir_logits_all"] = every.reshape((b, v, ph) + every.shape[1:])
        else:
            dirs = self.directions(flat, rel_flat, train)
        if self.dir_uvd:     # the head's last 3 outputs regress (u, v, d) (model.dir_uvd_weight)
            c = self.num_direction_classes
            extra["dir_uvd"] = dirs[:, c:].reshape(b, v, ph, 3)
            dirs = dirs[:, :c]
            if "dir_logits_all" in extra:
                every = extra["dir_logits_all"]
                extra["dir_uvd_all"], extra["dir_logits_all"] = every[..., c:], every[..., :c]
        extra["dir_logits"] = dirs.reshape(b, v, ph, -1)
        if ph > p:       # the teacher's slots → teacher_dir_logits, teacher_dir_uvd, ...
            extra.update({f"teacher_{k}": x[:, :, p:] for k, x in extra.items()})
            extra = {k: x if k.startswith("teacher_") else x[:, :, :p] for k, x in extra.items()}
        out = {"masks": masks, "mix_spec": spec, "mix_warped": mix_w, "cls_logits": cls,
               "cond": cond, **extra}
        if self.condition_head:     # class logits of the object slots' conditions (B, 2, P, 15)
            out["cond_logits"] = self.cond_head(cond[:, :, :p])
        return out
