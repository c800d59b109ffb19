"""ASMP training/evaluation examples (spec/asmp.md §1, §3, §6): scene graphs, segments, labels.

One example is a MIXTURE of two videos. Per video (from one record with the ASMP arrays that
the synthetic world and data_pipelines/asiw.py both write):
  - principal objects: objects with object_info sounding=1 and onscreen=1 (1 drawn at random in
    training, up to ``max_principals`` in order at test);
  - a motion window w (1-s windows; frame round(w·fps) holds the boxes) and a segment start s (a
    whole second) with max(0, w - r_max) <= s <= min(w, floor((L - N)/sr)), r_max = floor(N/sr)
    (spec: 5 for 65 535 samples); relative window r = w - s. At test s = max(0, w - r_max)
    (spec §8: advance 1 s from 0 until the window fits). The video's principal objects share
    the video's window (each gets its own direction label from its own motion at w);
  - the graph, nodes in the order [context(p1), p1, context(p2), p2, ..., scene] then padding up
    to the static size ``num_nodes = max_principals·(max_context + 1) + 1``. Context nodes of p:
    other drawn objects in frame round(w·fps) of a different class (family) with IoU > context_iou
    against p's box (and confidence > context_conf where object_info has a 5th column), best IoU
    first, up to max_context. A video with fewer principal objects than slots leaves those node
    positions as padding (masked, never an input to a real node). The scene node is a
    whole-frame embedding (arrays/scene_features[w] when the record has it, else a fixed random
    projection of a 4×4 RGB thumbnail of that frame), in training and at test alike (the paper
    used Gaussian noise in training; see spec §3);
  - edge weights (dense n×n over valid nodes, self-loops included): exp(-(d_ij / max d) / σ_p),
    σ_p = the ``sigma``-th percentile (train 50, test 25) of the non-zero, non-NaN normalised
    distances; self-loops 1; NaN distances (unknown, e.g. any pair with the scene node) → weight
    0 (the edge still exists); all weights 1 if no distance is valid;
  - labels: class = object family + 1 (0 = scene/padding); direction class from the
    displacement (u, v, d) at w (direction_class below); and one per 1-s window the segment
    holds, s + j for j = 0..r_max (dir_win, for model.dir_all_windows); the displacements
    themselves (dir_uvd, dir_win_uvd; NaN → 0, masked by the classes' validity) for the
    displacement regression (model.dir_uvd_weight).
Audio: the video's soundtrack segment × U(gain_range) in training (1 at test), clipped to ±1;
mixture = mean of the two videos' segments. Evaluation examples also carry both full clips
(trimmed to the shorter, zero-padded to the static ``clip_samples``) for sliding-window
separation (spec §8).
"""
from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from data_pipelines import records

# Spec §6: classes 1..26 in this order; 0 = static; 27 = background / padding / scene.
DIRECTIONS_26 = np.array([
    (0, 0, 1), (0, 1, 0), (1, 0, 0), (0, 0, -1), (0, -1, 0), (-1, 0, 0),
    (0, 1, 1), (1, 1, 0), (1, 0, 1), (0, 1, -1), (1, -1, 0), (1, 0, -1),
    (-1, 1, 0), (-1, 0, 1), (0, -1, 1), (0, -1, -1), (-1, -1, 0), (-1, 0, -1),
    (1, 1, 1), (-1, 1, 1), (-1, -1, 1), (1, -1, 1), (1, 1, -1), (-1, 1, -1),
    (-1, -1, -1), (1, -1, -1)], np.float64)
STATIC_UV, STATIC_D = 0.6, 0.3
NUM_AUDIO_CLASSES = 15      # 14 ASIW classes + 0 (scene / padding)


def ignore_class(num_classes: int) -> int:
    """The label excluded from the direction loss: background (28 → 27, 10 → 9); 8 → -1."""
    return {28: 27, 10: 9, 8: -1}[int(num_classes)]


def direction_class(uvd, num_classes: int = 28) -> np.ndarray:
    """(…, 3) displacements → class ids (spec §6). 28: 0 static, 1..26 nearest (cosine) of
    DIRECTIONS_26, 27 background. 10: 0 static, 1 + octant (bits: u<0 → 4, v<0 → 2, d<0 → 1;
    a zero component counts as positive), 9 background. 8: the octant; static → -1 (ignored).
    NaN displacements → the ignore class."""
    x = np.asarray(uvd, np.float64)
    bad = ~np.all(np.isfinite(x), axis=-1)
    x = np.where(bad[..., None], 0.0, x)
    static = (np.abs(x[..., 0]) < STATIC_UV) & (np.abs(x[..., 1]) < STATIC_UV) & (
        np.abs(x[..., 2]) < STATIC_D)
    ign = ignore_class(num_classes)
    if num_classes == 28:
        unit = DIRECTIONS_26 / np.linalg.norm(DIRECTIONS_26, axis=1, keepdims=True)
        cos = (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)) @ unit.T
        out = 1 + np.argmax(cos, axis=-1)
        out = np.where(static, 0, out)
    elif num_classes in (10, 8):
        octant = 4 * (x[..., 0] < 0) + 2 * (x[..., 1] < 0) + (x[..., 2] < 0)
        out = np.where(static, 0, 1 + octant) if num_classes == 10 else np.where(static, -1, octant)
    else:
        raise ValueError(f"direction classes must be 28, 10 or 8, got {num_classes}")
    return np.where(bad, ign, out).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
    sample_rate: int = 11025
    segment_samples: int = 65535
    clip_samples: int = 110250        # static full-clip length of evaluation examples
    max_principals: int = 1
    max_context: int = 20
    context_iou: float = 0.1
    context_conf: float = 0.4
    feature_dim: int = 2048
    sigma: float = 50.0
    gain_range: tuple = (0.5, 1.5)
    num_direction_classes: int = 28
    distinct_classes: bool = True     # pair videos whose principal classes differ (10 tries)
    fps_default: float = 8.0          # frames per second if the record has no video

    @property
    def num_nodes(self) -> int:
        return self.max_principals * (self.max_context + 1) + 1

    @property
    def r_max(self) -> int:
        return int(self.segment_samples // self.sample_rate)


# ----------------------------------------------------------------------------- graphs

def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) with boxes b (K, 4) (x1, y1, x2, y2)."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: np.clip(z[..., 2] - z[..., 0], 0, None) * np.clip(z[..., 3] - z[..., 1], 0, None)
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def edge_weights(dist: np.ndarray, sigma: float) -> np.ndarray:
    """Spec §3 edge weights for an n×n distance matrix (NaN = unknown)."""
    d = np.asarray(dist, np.float64)
    n = d.shape[0]
    finite = np.isfinite(d)
    off = ~np.eye(n, dtype=bool)
    valid = finite & off & (d > 0)
    if not valid.any():
        return np.ones((n, n), np.float32)
    dn = d / d[valid].max()
    sigma_p = float(np.percentile(dn[valid], sigma))
    with np.errstate(invalid="ignore"):
        w = np.exp(-dn / max(sigma_p, 1e-12))
    w = np.where(finite, w, 0.0)
    np.fill_diagonal(w, 1.0)
    return w.astype(np.float32)


_THUMB_PROJ: dict = {}


def scene_embedding(frame: np.ndarray, dim: int) -> np.ndarray:
    """Whole-frame embedding: 4×4 RGB thumbnail (in [-1, 1]) through a fixed random projection."""
    h, w = frame.shape[:2]
    f = frame[: h - h % 4, : w - w % 4].astype(np.float32) / 127.5 - 1
    thumb = f.reshape(4, f.shape[0] // 4, 4, f.shape[1] // 4, 3).mean((1, 3)).ravel()
    if dim not in _THUMB_PROJ:
        _THUMB_PROJ[dim] = np.random.default_rng(4321).normal(0, 1 / math.sqrt(48), (48, dim))
    return (thumb @ _THUMB_PROJ[dim]).astype(np.float32)


def principal_objects(info: np.ndarray) -> list[int]:
    """Objects that are valid, sounding and on screen (the sounding, visible ones)."""
    return [j for j in range(info.shape[0])
            if info[j, 3] > 0 and info[j, 1] > 0 and info[j, 2] > 0]


def build_graph(arrays: dict, principals: list[int], window: int, frame: int, spec: ExampleSpec,
                scene_feature: np.ndarray):
    """(nodes (n, F), node_mask (n,), edge_w (n, n)) of one video, padded to spec.num_nodes."""
    info, boxes = arrays["object_info"], arrays["object_boxes"]
    feats, dist = arrays["object_features"], arrays["object_distance"]
    n_max, fdim = spec.num_nodes, spec.feature_dim
    if feats.shape[-1] != fdim:
        raise ValueError(f"object_features have {feats.shape[-1]} dims, the config expects "
                         f"{fdim} (set data.feature_dim)")
    frame = min(frame, boxes.shape[0] - 1)
    w_idx = min(window, dist.shape[0] - 1)
    if feats.ndim == 3:           # per-window features (W, O, F) (real detections)
        feats = feats[min(window, feats.shape[0] - 1)]
    fb = boxes[frame]
    drawn = np.all(fb >= 0, axis=-1) & (info[:, 3] > 0)
    # Detector class / confidence per frame when the record has them, else per object.
    det_cls = arrays["object_classes"][frame] if "object_classes" in arrays else info[:, 0]
    conf = (arrays["object_scores"][frame] if "object_scores" in arrays
            else np.ones(info.shape[0]))
    objects: list[int] = []
    for p in principals[: spec.max_principals]:
        cand = [j for j in range(info.shape[0]) if j != p and drawn[j] and j not in principals
                and conf[j] > spec.context_conf and (det_cls[j] != det_cls[p] or det_cls[j] < 0)]
        if cand and drawn[p]:
            iou = _iou(fb[p], fb[cand])
            order = [cand[k] for k in np.argsort(-iou, kind="stable") if iou[k] > spec.context_iou]
        elif cand and spec.context_iou < 0:
            order = cand
        else:
            order = []
        objects += order[: spec.max_context] + [p]
    n = len(objects) + 1
    nodes = np.zeros((n_max, fdim), np.float32)
    nodes[: n - 1] = feats[objects]
    nodes[n - 1] = scene_feature
    mask = np.zeros((n_max,), np.float32)
    mask[:n] = 1
    d = np.full((n, n), np.nan)
    d[: n - 1, : n - 1] = dist[w_idx][np.ix_(objects, objects)]
    ew = np.zeros((n_max, n_max), np.float32)
    ew[:n, :n] = edge_weights(d, spec.sigma)
    return nodes, mask, ew


# ----------------------------------------------------------------------------- one video

def _mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(-1) if audio.ndim == 2 else audio


def _segment(wave: np.ndarray, start: int, length: int) -> np.ndarray:
    out = np.zeros((length,), np.float32)
    piece = wave[start:start + length]
    out[: len(piece)] = piece
    return out


def video_view(data: dict, rng: np.random.Generator, spec: ExampleSpec, train: bool) -> dict:
    """One video's segment, graph and labels (see the module docstring)."""
    arrays, sr, clip_id = data["arrays"], spec.sample_rate, data["id"]
    for k in ("object_info", "object_boxes", "object_features", "motion", "object_distance"):
        if k not in arrays:
            raise ValueError(f"record {clip_id!r} lacks arrays/{k}: not an ASMP record (write it "
                             f"with the synthetic world's asmp preset or data_pipelines.asiw)")
    if int(data["sample_rate"]) != sr:
        raise ValueError(f"record {clip_id!r} has sample rate {data['sample_rate']}, the config "
                         f"expects {sr}")
    wave = _mono(data["audio"])
    info = arrays["object_info"]
    principals = principal_objects(info)
    if not principals:
        raise ValueError(f"record {clip_id!r} has no sounding on-screen (principal) object")
    if train:
        principals = [principals[int(rng.integers(len(principals)))]]
    principals = principals[: spec.max_principals]
    n_windows = arrays["motion"].shape[1]
    length = len(wave)
    s_last = max(0, (length - spec.segment_samples) // sr)
    windows = [w for w in range(n_windows) if max(0, w - spec.r_max) <= min(w, s_last)]
    if not windows:
        windows = [0]
    w = int(windows[int(rng.integers(len(windows)))])
    if train:
        s = int(rng.integers(max(0, w - spec.r_max), min(w, s_last) + 1))
    else:
        s = max(0, w - spec.r_max)
    r = w - s
    seg = _segment(wave, s * sr, spec.segment_samples)
    gain = rng.uniform(*spec.gain_range) if train else 1.0
    seg = np.clip(seg * gain, -1, 1).astype(np.float32)
    fps = float(data.get("fps") or 0) or spec.fps_default
    frame = int(round(w * fps))
    if "scene_features" in arrays:
        scene = arrays["scene_features"][min(w, arrays["scene_features"].shape[0] - 1)]
    elif data.get("encoded_frames") or data.get("video") is not None:
        t = int(data["video_shape"][0])
        k = min(frame, t - 1)
        img = (data["video"][k] if data.get("video") is not None else records.decode_frames(
            data["encoded_frames"], data["video_encoding"], data["video_shape"], [k])[0])
        scene = scene_embedding(img, spec.feature_dim)
    else:
        scene = np.zeros((spec.feature_dim,), np.float32)
    nodes, mask, ew = build_graph(arrays, principals, w, frame, spec, scene)
    p_max = spec.max_principals
    cls = np.zeros((p_max,), np.int32)
    cls_valid = np.zeros((p_max,), np.float32)
    ign = ignore_class(spec.num_direction_classes)
    direction = np.full((p_max,), ign, np.int32)
    # Every 1-s window the segment holds (s + j, j = 0..r_max), for the all-windows direction
    # loss (model.dir_all_windows); windows past the record's motion array are ignored.
    dir_win = np.full((p_max, spec.r_max + 1), ign, np.int32)
    uvd = np.zeros((p_max, 3), np.float32)                    # displacements (model.dir_uvd_weight)
    win_uvd = np.zeros((p_max, spec.r_max + 1, 3), np.float32)
    for i, p in enumerate(principals):
        cls[i] = int(info[p, 0]) + 1
        cls_valid[i] = 1
        direction[i] = direction_class(arrays["motion"][p, w], spec.num_direction_classes)
        held = min(spec.r_max + 1, max(0, n_windows - s))
        dir_win[i, :held] = direction_class(arrays["motion"][p, s:s + held],
                                            spec.num_direction_classes)
        uvd[i] = np.nan_to_num(arrays["motion"][p, w])           # NaN rows are masked anyway
        win_uvd[i, :held] = np.nan_to_num(arrays["motion"][p, s:s + held])
    dir_valid = ((direction >= 0) & (direction != ign)).astype(np.float32)
    dir_win_valid = ((dir_win >= 0) & (dir_win != ign)).astype(np.float32)
    return {"wave": seg, "nodes": nodes, "node_mask": mask, "edge_w": ew, "cls": cls,
            "cls_valid": cls_valid, "dir": np.maximum(direction, 0), "dir_valid": dir_valid,
            "dir_win": np.maximum(dir_win, 0), "dir_win_valid": dir_win_valid,
            "dir_uvd": uvd, "dir_win_uvd": win_uvd, "rel": np.int32(r),
            "full": wave.astype(np.float32), "id": clip_id}


# ----------------------------------------------------------------------------- pairs

def decode(raw: bytes) -> dict:
    return records.decode_example(raw, decode_video=False, decode_sources=False)


def _partner(source, own: dict, rng, spec: ExampleSpec) -> dict:
    n = len(source)
    own_cls = set(int(own["arrays"]["object_info"][p, 0])
                  for p in principal_objects(own["arrays"]["object_info"]))
    best = None
    for _ in range(10):
        other = decode(source[int(rng.integers(n))])
        if other["id"] == own["id"] and n > 1:
            continue
        best = other
        cls = set(int(other["arrays"]["object_info"][p, 0])
                  for p in principal_objects(other["arrays"]["object_info"]))
        if not spec.distinct_classes or not (cls & own_cls):
            break
    return best if best is not None else own


def make_example(raw: bytes, rng: np.random.Generator, *, source, spec: ExampleSpec,
                 train: bool) -> dict:
    """A mixture of the record `raw` and a partner drawn from `source` (numpy arrays only)."""
    a = decode(raw)
    b = _partner(source, a, rng, spec)
    va, vb = video_view(a, rng, spec, train), video_view(b, rng, spec, train)
    views = (va, vb)
    out = {k: np.stack([v[k] for v in views]) for k in
           ("wave", "nodes", "node_mask", "edge_w", "cls", "cls_valid", "dir", "dir_valid",
            "dir_win", "dir_win_valid", "dir_uvd", "dir_win_uvd", "rel")}
    out["mix"] = (0.5 * (va["wave"] + vb["wave"])).astype(np.float32)
    if not train:
        length = min(len(va["full"]), len(vb["full"]), spec.clip_samples)
        full = np.zeros((2, spec.clip_samples), np.float32)
        full[0, :length] = va["full"][:length]
        full[1, :length] = vb["full"][:length]
        out["full"] = full
        out["full_len"] = np.int32(length)
        out["pair_hash"] = np.int32(zlib.crc32((va["id"] + "|" + vb["id"]).encode()) & 0x7FFFFFFF)
    return out


def example_shapes(spec: ExampleSpec, train: bool) -> dict:
    """{name: (shape, dtype)} of one example (what make_example returns)."""
    n, f, p, seg = spec.num_nodes, spec.feature_dim, spec.max_principals, spec.segment_samples
    s = {"wave": ((2, seg), np.float32), "nodes": ((2, n, f), np.float32),
         "node_mask": ((2, n), np.float32), "edge_w": ((2, n, n), np.float32),
         "cls": ((2, p), np.int32), "cls_valid": ((2, p), np.float32),
         "dir": ((2, p), np.int32), "dir_valid": ((2, p), np.float32), "rel": ((2,), np.int32),
         "dir_win": ((2, p, spec.r_max + 1), np.int32),
         "dir_win_valid": ((2, p, spec.r_max + 1), np.float32),
         "dir_uvd": ((2, p, 3), np.float32), "dir_win_uvd": ((2, p, spec.r_max + 1, 3), np.float32),
         "mix": ((seg,), np.float32)}
    if not train:
        s.update(full=((2, spec.clip_samples), np.float32), full_len=((), np.int32),
                 pair_hash=((), np.int32))
    return s
