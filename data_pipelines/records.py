"""The avjax record format: one tf.train.Example per audio-visual clip, in sharded TFRecords.

Why this shape: one self-contained, documented schema that holds the original multisensory
records (JPEG filmstrip + int16 stereo + id + label), ASMP's per-object data (boxes, motion,
features, distances) and separation ground truth (stems), so every task reads one format through
one pipeline, whether the clips are real or synthetic.

Schema (SCHEMA_VERSION = 1); all keys are features of a tf.train.Example:

| key                          | type          | meaning                                               |
|------------------------------|---------------|-------------------------------------------------------|
| clip/id                      | bytes         | clip id (UTF-8), required                             |
| label                        | int64         | class index, -1 if none                               |
| label/name                   | bytes         | class name (optional)                                 |
| video/encoding               | bytes         | "jpeg", "png" or "raw"                                |
| video/frames                 | bytes_list    | one encoded image per frame; raw: one T*H*W*3 uint8   |
| video/fps                    | float         | frames per second (0 if no video)                     |
| video/num_frames             | int64         | T; 0 for audio-only clips                             |
| video/height, video/width    | int64         | H, W                                                  |
| audio/pcm                    | bytes         | int16 LE, interleaved (num_samples, num_channels), x32767 |
| audio/sample_rate            | int64         | Hz, required                                          |
| audio/num_channels           | int64         | C, required                                           |
| audio/num_samples            | int64         | N > 0, required                                       |
| sources/pcm                  | bytes_list    | optional ground-truth stems, each int16 (N, C)        |
| sources/onscreen             | int64_list    | 1/0 per stem                                          |
| arrays/<name>                | float_list    | any other named float32 array, flattened (C order)    |
| arrays/<name>/shape          | int64_list    | its shape                                             |

Decoded dict (decode_example): id, label, label_name, video (uint8 (T,H,W,3) or None), fps,
audio (float32 (N,C) in [-1,1]), sample_rate, sources (float32 (S,N,C) or None),
sources_onscreen (bool (S,) or None), arrays ({name: float32 ndarray}), video_encoding,
video_shape ((T,H,W)), encoded_frames (list of bytes when decode_video=False, else None).
encode_example accepts the same dict (video may also be a list of already-encoded frames).

Shards are `<name>-<split>.tfrecord-XXXXX-of-YYYYY` with `<name>-<split>.manifest.json` beside
them; the manifest holds every record's byte offset, which is what makes random access (and so a
global shuffle) cheap.
"""
from __future__ import annotations

import glob
import io
import json
import logging
import multiprocessing
import operator
import os
import re
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

from data_pipelines import tfrecord
from data_pipelines.tfrecord import CorruptRecordError

SCHEMA_VERSION = 1
VIDEO_ENCODINGS = ("jpeg", "png", "raw")
DEFAULT_SHARD_BYTES = 256 << 20
_CLIP_KEYS = {"id", "label", "label_name", "video", "fps", "audio", "sample_rate", "sources",
              "sources_onscreen", "arrays", "video_encoding", "video_shape", "encoded_frames",
              "jpeg_quality"}
_SHARD_RE = re.compile(r"^(?P<prefix>.+)\.tfrecord-(?P<index>\d{5})-of-(?P<count>\d{5})$")
_HINT = ("generate the synthetic set with `python -m data_pipelines.synthetic --out DIR "
         "--num_clips N` or convert a corpus with a converter in data_pipelines/")
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- encode / decode

def _to_pcm(audio: Any, what: str, clip_id: str) -> tuple[bytes, int, int]:
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"clip {clip_id!r}: {what} must be (num_samples, num_channels), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"clip {clip_id!r}: {what} is zero-length (shape {a.shape})")
    if a.dtype != np.int16:
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"clip {clip_id!r}: {what} contains NaN or inf")
        a = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16)
    return a.astype("<i2").tobytes(), a.shape[0], a.shape[1]


def _encode_image(frame: np.ndarray, encoding: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if encoding == "jpeg":
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    else:
        Image.fromarray(frame).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _video_features(clip: dict, clip_id: str) -> tuple[str, list[bytes], tuple[int, int, int]]:
    encoding = clip.get("video_encoding") or "jpeg"
    if encoding not in VIDEO_ENCODINGS:
        raise ValueError(f"clip {clip_id!r}: video_encoding must be one of {VIDEO_ENCODINGS}, got {encoding!r}")
    video = clip.get("video")
    if video is None and clip.get("encoded_frames") is not None:
        video = clip["encoded_frames"]
    if video is None:
        return encoding, [], (0, 0, 0)
    if isinstance(video, (list, tuple)) and (len(video) == 0 or isinstance(video[0], (bytes, bytearray))):
        frames = [bytes(b) for b in video]  # already encoded in `encoding`
        if "video_shape" in clip and clip["video_shape"] is not None:
            t, h, w = (int(x) for x in clip["video_shape"])
        elif encoding == "raw" or not frames:
            raise ValueError(f"clip {clip_id!r}: pre-encoded raw/empty video needs video_shape")
        else:
            w, h = Image.open(io.BytesIO(frames[0])).size
            t = len(frames)
        if encoding != "raw" and len(frames) != t:
            raise ValueError(f"clip {clip_id!r}: video_shape says {t} frames, got {len(frames)}")
        return encoding, frames, (t, h, w)
    v = np.asarray(video)
    if v.ndim == 3:
        v = np.repeat(v[..., None], 3, axis=-1)
    if v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"clip {clip_id!r}: video must be uint8 (T, H, W, 3), got shape {v.shape}")
    if v.dtype != np.uint8:
        raise ValueError(f"clip {clip_id!r}: video must be uint8, got {v.dtype}")
    t, h, w = v.shape[:3]
    if t == 0:
        return encoding, [], (0, 0, 0)
    if encoding == "raw":
        return encoding, [np.ascontiguousarray(v).tobytes()], (t, h, w)
    quality = int(clip.get("jpeg_quality", 90))
    return encoding, [_encode_image(f, encoding, quality) for f in v], (t, h, w)


def encode_example(clip: dict) -> bytes:
    """Serialises one clip dict (see module docstring) to tf.train.Example bytes. Pure."""
    unknown = set(clip) - _CLIP_KEYS
    if unknown:
        raise ValueError(f"unknown clip keys {sorted(unknown)}; allowed: {sorted(_CLIP_KEYS)}")
    for key in ("id", "audio", "sample_rate"):
        if clip.get(key) is None:
            raise ValueError(f"clip is missing required key {key!r}")
    clip_id = str(clip["id"])
    ex = tf_example_pb2.Example()
    f = ex.features.feature
    f["clip/id"].bytes_list.value.append(clip_id.encode("utf-8"))
    label = clip.get("label")
    f["label"].int64_list.value.append(-1 if label is None else int(label))
    if clip.get("label_name"):
        f["label/name"].bytes_list.value.append(str(clip["label_name"]).encode("utf-8"))

    pcm, n, c = _to_pcm(clip["audio"], "audio", clip_id)
    sample_rate = int(clip["sample_rate"])
    if sample_rate <= 0:
        raise ValueError(f"clip {clip_id!r}: sample_rate must be positive, got {sample_rate}")
    f["audio/pcm"].bytes_list.value.append(pcm)
    f["audio/sample_rate"].int64_list.value.append(sample_rate)
    f["audio/num_channels"].int64_list.value.append(c)
    f["audio/num_samples"].int64_list.value.append(n)

    encoding, frames, (t, h, w) = _video_features(clip, clip_id)
    fps = float(clip.get("fps") or 0.0)
    if t > 0 and fps <= 0:
        raise ValueError(f"clip {clip_id!r}: video given but fps is {fps}")
    f["video/encoding"].bytes_list.value.append(encoding.encode())
    f["video/frames"].bytes_list.value.extend(frames)
    f["video/fps"].float_list.value.append(fps)
    f["video/num_frames"].int64_list.value.append(t)
    f["video/height"].int64_list.value.append(h)
    f["video/width"].int64_list.value.append(w)

    sources = clip.get("sources")
    if sources is not None:
        s_arr = [np.asarray(s) for s in sources]
        onscreen = clip.get("sources_onscreen")
        onscreen = [True] * len(s_arr) if onscreen is None else [bool(x) for x in onscreen]
        if len(onscreen) != len(s_arr):
            raise ValueError(f"clip {clip_id!r}: {len(s_arr)} sources but {len(onscreen)} onscreen flags")
        for i, s in enumerate(s_arr):
            s_pcm, sn, sc = _to_pcm(s, f"source {i}", clip_id)
            if (sn, sc) != (n, c):
                raise ValueError(f"clip {clip_id!r}: source {i} has shape ({sn}, {sc}), audio is ({n}, {c})")
            f["sources/pcm"].bytes_list.value.append(s_pcm)
        f["sources/onscreen"].int64_list.value.extend(int(x) for x in onscreen)

    for name, value in (clip.get("arrays") or {}).items():
        if not name or "/" in name:
            raise ValueError(f"clip {clip_id!r}: array name {name!r} must be non-empty without '/'")
        a = np.asarray(value, dtype=np.float32)
        f[f"arrays/{name}"].float_list.value.extend(a.ravel().tolist())
        f[f"arrays/{name}/shape"].int64_list.value.extend(int(d) for d in a.shape)
    return ex.SerializeToString(deterministic=True)  # sorted map keys: same bytes in every process


def decode_frames(encoded_frames: Sequence[bytes], encoding: str, video_shape: Sequence[int],
                  indices: Sequence[int] | None = None) -> np.ndarray:
    """Decodes (a subset of) frames to uint8 (T', H, W, 3); lets pipelines skip unused frames."""
    t, h, w = (int(x) for x in video_shape)
    idx = range(t) if indices is None else [int(i) for i in indices]
    if encoding == "raw":
        if len(encoded_frames) != 1 or len(encoded_frames[0]) != t * h * w * 3:
            got = sum(len(b) for b in encoded_frames)
            raise ValueError(f"raw video needs one bytes of {t}*{h}*{w}*3={t * h * w * 3}, got {got}")
        return np.frombuffer(encoded_frames[0], np.uint8).reshape(t, h, w, 3)[list(idx)]
    if encoding not in VIDEO_ENCODINGS:
        raise ValueError(f"unknown video/encoding {encoding!r}; expected one of {VIDEO_ENCODINGS}")
    if len(encoded_frames) != t:
        raise ValueError(f"video/num_frames is {t} but video/frames has {len(encoded_frames)} images")
    out = np.empty((len(idx), h, w, 3), np.uint8)
    for j, i in enumerate(idx):
        img = Image.open(io.BytesIO(encoded_frames[i]))
        if img.mode != "RGB":
            img = img.convert("RGB")
        frame = np.asarray(img)
        if frame.shape != (h, w, 3):
            raise ValueError(f"frame {i} has shape {frame.shape}, header says ({h}, {w}, 3)")
        out[j] = frame
    return out


def _get(f, key: str, kind: str, clip_id: str, required: bool = True):
    if key not in f or not getattr(f[key], kind).value:
        if required:
            raise ValueError(f"example {clip_id!r} is missing required feature {key!r}")
        return None
    return getattr(f[key], kind).value


def _pcm_to_float(pcm: bytes, n: int, c: int, what: str, clip_id: str) -> np.ndarray:
    if len(pcm) != n * c * 2:
        raise ValueError(f"example {clip_id!r}: {what} has {len(pcm)} bytes, expected "
                         f"num_samples*num_channels*2 = {n}*{c}*2 = {n * c * 2}")
    return np.frombuffer(pcm, "<i2").reshape(n, c).astype(np.float32) * np.float32(1 / 32767)


def decode_example(data: bytes, *, decode_video: bool = True, decode_sources: bool = True) -> dict:
    """Parses tf.train.Example bytes into the clip dict (see module docstring). Pipelines that
    need neither frames nor stems skip their decoding (``encoded_frames`` keeps the frames)."""
    try:
        ex = tf_example_pb2.Example.FromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise ValueError(f"record is not a tf.train.Example ({e})") from None
    f = ex.features.feature
    clip_id = _get(f, "clip/id", "bytes_list", "?")[0].decode("utf-8")
    n = int(_get(f, "audio/num_samples", "int64_list", clip_id)[0])
    c = int(_get(f, "audio/num_channels", "int64_list", clip_id)[0])
    sample_rate = int(_get(f, "audio/sample_rate", "int64_list", clip_id)[0])
    if n <= 0 or c <= 0:
        raise ValueError(f"example {clip_id!r} has zero-length audio (num_samples={n}, num_channels={c})")
    audio = _pcm_to_float(_get(f, "audio/pcm", "bytes_list", clip_id)[0], n, c, "audio/pcm", clip_id)

    label = _get(f, "label", "int64_list", clip_id, required=False)
    label_name = _get(f, "label/name", "bytes_list", clip_id, required=False)
    enc = _get(f, "video/encoding", "bytes_list", clip_id, required=False)
    encoding = enc[0].decode() if enc else "jpeg"
    ints = {k: _get(f, f"video/{k}", "int64_list", clip_id, required=False)
            for k in ("num_frames", "height", "width")}
    t, h, w = (int(v[0]) if v else 0 for v in ints.values())
    fps_v = _get(f, "video/fps", "float_list", clip_id, required=False)
    frames = list(_get(f, "video/frames", "bytes_list", clip_id, required=False) or [])
    video, encoded = None, None
    if t > 0:
        if h <= 0 or w <= 0:
            raise ValueError(f"example {clip_id!r}: video has {t} frames but size {h}x{w}")
        try:
            if decode_video:
                video = decode_frames(frames, encoding, (t, h, w))
            else:
                encoded = frames
        except ValueError as e:
            raise ValueError(f"example {clip_id!r}: {e}") from None

    sources, onscreen = None, None
    stems = _get(f, "sources/pcm", "bytes_list", clip_id, required=False)
    if stems and decode_sources:
        sources = np.stack([_pcm_to_float(s, n, c, f"sources/pcm[{i}]", clip_id)
                            for i, s in enumerate(stems)])
        flags = _get(f, "sources/onscreen", "int64_list", clip_id, required=False) or []
        if len(flags) != len(stems):
            raise ValueError(f"example {clip_id!r}: {len(stems)} stems but {len(flags)} sources/onscreen flags")
        onscreen = np.asarray(flags, dtype=bool)

    arrays = {}
    for key in f:
        if key.startswith("arrays/") and not key.endswith("/shape"):
            name = key[len("arrays/"):]
            values = np.asarray(f[key].float_list.value, dtype=np.float32)
            shape = tuple(int(d) for d in f[f"{key}/shape"].int64_list.value) if f"{key}/shape" in f else None
            if shape is None:
                raise ValueError(f"example {clip_id!r}: {key} has no {key}/shape")
            if int(np.prod(shape)) != values.size:
                raise ValueError(f"example {clip_id!r}: {key} has {values.size} values, shape {shape}")
            arrays[name] = values.reshape(shape)
    return {
        "id": clip_id,
        "label": int(label[0]) if label else -1,
        "label_name": label_name[0].decode("utf-8") if label_name else "",
        "video": video,
        "fps": float(fps_v[0]) if fps_v else 0.0,
        "audio": audio,
        "sample_rate": sample_rate,
        "sources": sources,
        "sources_onscreen": onscreen,
        "arrays": arrays,
        "video_encoding": encoding,
        "video_shape": (t, h, w),
        "encoded_frames": encoded,
    }


# ----------------------------------------------------------------------------- writing shards

def shard_name(name: str, split: str, index: int, count: int) -> str:
    return f"{name}-{split}.tfrecord-{index:05d}-of-{count:05d}"


def manifest_path(out_dir: str, name: str, split: str) -> str:
    return os.path.join(out_dir, f"{name}-{split}.manifest.json")


def _summary(clip: dict) -> dict:
    audio = np.asarray(clip["audio"])
    out = {"sample_rate": int(clip["sample_rate"]), "num_samples": int(audio.shape[0]),
           "num_channels": int(audio.shape[1]) if audio.ndim == 2 else 1}
    video = clip.get("video")
    if video is not None and not isinstance(video, (list, tuple)):
        out.update(fps=float(clip.get("fps") or 0), num_frames=int(video.shape[0]),
                   height=int(video.shape[1]), width=int(video.shape[2]))
    return out


class ShardWriter:
    """Writes clips to shards + manifest; nothing appears under final names until close().

    num_shards=K with num_examples=N fills shards in order (record i goes to shard i*K//N, so
    source order equals write order); without N, record i goes to shard i mod K (even counts).
    Otherwise a new shard starts once the current one passes target_shard_bytes. Exiting the `with` block on an exception deletes
    the temporary files. Closing replaces an earlier data set of the same name and split.
    """

    def __init__(self, out_dir: str, name: str, split: str, *, num_shards: int | None = None,
                 target_shard_bytes: int | None = None, num_examples: int | None = None,
                 metadata: dict | None = None, sources: Sequence[str] | None = None):
        for what, v in (("name", name), ("split", split)):
            if not v or os.sep in v or v.startswith("."):
                raise ValueError(f"bad data set {what} {v!r}: non-empty, no path separators")
        if num_shards is not None and target_shard_bytes is not None:
            raise ValueError("give num_shards or target_shard_bytes, not both")
        if num_shards is not None and num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        self.out_dir, self.name, self.split = os.fspath(out_dir), name, split
        os.makedirs(self.out_dir, exist_ok=True)
        self.num_shards = num_shards
        self.num_examples = num_examples if num_examples and num_examples > 0 else None
        self.target_shard_bytes = target_shard_bytes or DEFAULT_SHARD_BYTES
        self.metadata = dict(metadata or {})
        self.sources = list(sources or [])
        self._tag = f"{os.getpid()}-{time.time_ns()}"
        self._writers: list[tfrecord.TFRecordWriter] = []
        self._observed: dict[str, set] = {}
        self.count = 0
        self.closed = False
        for _ in range(num_shards or 1):
            self._new_shard()

    def _new_shard(self) -> None:
        tmp = os.path.join(self.out_dir, f".tmp-{self.name}-{self.split}-{self._tag}-{len(self._writers)}")
        self._writers.append(tfrecord.TFRecordWriter(tmp))

    def write(self, record: bytes | dict) -> int:
        """Appends one serialized example (or clip dict, encoded here); returns its write index."""
        if self.closed:
            raise ValueError("ShardWriter is closed")
        if isinstance(record, dict):
            clip, record = record, encode_example(record)
            for k, v in _summary(clip).items():
                self._observed.setdefault(k, set()).add(v)
        if self.num_shards and self.num_examples:
            writer = self._writers[min(self.count * self.num_shards // self.num_examples, self.num_shards - 1)]
        elif self.num_shards:
            writer = self._writers[self.count % self.num_shards]
        else:
            writer = self._writers[-1]
            if writer.num_bytes and writer.num_bytes + len(record) > self.target_shard_bytes:
                self._new_shard()
                writer = self._writers[-1]
        writer.write(record)
        self.count += 1
        return self.count - 1

    def abort(self) -> None:
        for w in self._writers:
            w.close()
            if os.path.exists(w.path):
                os.remove(w.path)
        self.closed = True

    def close(self) -> str:
        """Publishes shards and manifest under their final names; returns the manifest path."""
        if self.closed:
            return manifest_path(self.out_dir, self.name, self.split)
        k = len(self._writers)
        final = [shard_name(self.name, self.split, i, k) for i in range(k)]
        observed = {key: (sorted(v)[0] if len(v) == 1 else [min(v), max(v)])
                    for key, v in self._observed.items()}
        manifest = {
            "format": "avjax-records",
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "split": self.split,
            "num_examples": self.count,
            "metadata": {**observed, **self.metadata},
            "sources": self.sources,
            "created_unix": round(time.time(), 3),
            "shards": [{"file": fn, "num_records": len(w.offsets), "num_bytes": w.num_bytes,
                        "offsets": w.offsets} for fn, w in zip(final, self._writers)],
        }
        for w in self._writers:
            w.close()
        mpath = manifest_path(self.out_dir, self.name, self.split)
        tmp_manifest = os.path.join(self.out_dir, f".tmp-{self.name}-{self.split}-{self._tag}.manifest.json")
        with open(tmp_manifest, "w") as fh:
            json.dump(manifest, fh, separators=(",", ":"))
        # Retire the old data set first, so no reader pairs an old manifest with new shards.
        if os.path.exists(mpath):
            os.remove(mpath)
        stale = set(glob.glob(os.path.join(glob.escape(self.out_dir),
                                           f"{glob.escape(self.name)}-{glob.escape(self.split)}.tfrecord-*-of-*")))
        for path in stale - {os.path.join(self.out_dir, fn) for fn in final}:
            os.remove(path)
        for fn, w in zip(final, self._writers):
            os.replace(w.path, os.path.join(self.out_dir, fn))
        os.replace(tmp_manifest, mpath)
        self.closed = True
        return mpath

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_examples(out_dir: str, name: str, split: str, clips: Iterable[dict | bytes],
                   num_shards: int | None = None, *, target_shard_bytes: int | None = None,
                   metadata: dict | None = None, sources: Sequence[str] | None = None) -> str:
    """Writes clip dicts (or serialized examples) to a sharded data set; returns the manifest path."""
    count = len(clips) if hasattr(clips, "__len__") else None
    with ShardWriter(out_dir, name, split, num_shards=num_shards, target_shard_bytes=target_shard_bytes,
                     num_examples=count, metadata=metadata, sources=sources) as writer:
        for clip in clips:
            writer.write(clip)
    return manifest_path(out_dir, name, split)


def _call(fn_item):
    fn, item = fn_item
    try:
        return True, fn(item)
    except Exception as e:  # reported per item by the parent
        return False, f"{type(e).__name__}: {e}"


def parallel_encode(fn: Callable[[Any], Any], items: Iterable[Any], processes: int = 1, *,
                    chunksize: int = 1, on_error: Callable[[Any, str], None] | None = None) -> Iterator[Any]:
    """Yields fn(item) in order, computed by a spawn-process pool (fn must be picklable).

    The per-item function is the same one Apache Beam would map; a failing item raises ValueError
    naming it, or is passed to on_error(item, message) and skipped.
    """
    items = list(items)
    if processes <= 1:
        results = map(_call, ((fn, it) for it in items))
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(processes)
        results = pool.imap(_call, ((fn, it) for it in items), chunksize=chunksize)
    try:
        for item, (ok, value) in zip(items, results):
            if ok:
                yield value
            elif on_error is None:
                raise ValueError(f"failed on {item!r}: {value}")
            else:
                on_error(item, value)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


# ----------------------------------------------------------------------------- reading

def read_manifest(path: str) -> dict:
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except json.JSONDecodeError as e:
        raise ValueError(f"manifest {path} is not valid JSON ({e}); regenerate the data set") from None
    if manifest.get("format") != "avjax-records" or "shards" not in manifest:
        raise ValueError(f"{path} is not an avjax records manifest")
    if int(manifest.get("schema_version", 0)) > SCHEMA_VERSION:
        raise ValueError(f"manifest {path} has schema version {manifest['schema_version']}, this avjax "
                         f"reads up to {SCHEMA_VERSION}; upgrade avjax")
    return manifest


def _from_manifest(path: str) -> list[tuple[str, list[int]]]:
    manifest = read_manifest(path)
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for shard in manifest["shards"]:
        f = os.path.join(base, shard["file"])
        if not os.path.isfile(f):
            raise FileNotFoundError(f"manifest {path} lists shard {f}, which is missing; regenerate "
                                    f"the data set ({_HINT})")
        out.append((f, list(shard["offsets"])))
    return out


def _shard_index(shard: str, manifests: dict) -> list[int]:
    """Offsets of one shard: from the manifest beside it when it lists the shard, else a scan."""
    m = _SHARD_RE.match(os.path.basename(shard))
    if m:
        mpath = os.path.join(os.path.dirname(shard), m["prefix"] + ".manifest.json")
        if mpath not in manifests:
            manifests[mpath] = dict(_from_manifest(mpath)) if os.path.isfile(mpath) else {}
        hit = manifests[mpath].get(os.path.abspath(shard))
        if hit is not None:
            return hit
    return tfrecord.scan_offsets(shard)


def _resolve(path: str) -> list[tuple[str, list[int]]]:
    p = os.path.expanduser(path)
    if p.endswith(".json") and os.path.isfile(p):
        return _from_manifest(p)
    if os.path.isfile(p + ".manifest.json"):
        return _from_manifest(p + ".manifest.json")
    if os.path.isdir(p):
        manifests = sorted(glob.glob(os.path.join(glob.escape(p), "*.manifest.json")))
        if len(manifests) == 1:
            return _from_manifest(manifests[0])
        if len(manifests) > 1:
            raise ValueError(f"{p} holds several data sets ({', '.join(os.path.basename(m) for m in manifests)}); "
                             f"pass one manifest or <dir>/<name>-<split>")
        shards = sorted(glob.glob(os.path.join(glob.escape(p), "*.tfrecord*")))
    elif os.path.isfile(p):
        shards = [p]
    else:
        shards = sorted(s for s in glob.glob(p) if os.path.isfile(s))
    shards = [s for s in shards if not os.path.basename(s).startswith(".")]
    if not shards:
        raise FileNotFoundError(f"no records found at {path!r}: {_HINT}")
    manifests: dict = {}
    return [(os.path.abspath(s), _shard_index(s, manifests)) for s in shards]


class RecordSource:
    """grain RandomAccessDataSource over shards: source[i] is the raw serialized example.

    Decoding is left to decode_example in grain map workers. Picklable: file descriptors are
    opened lazily in each process. With skip_corrupt=True a corrupt record is counted in
    num_skipped (per process) and the next good record is returned instead.
    """

    def __init__(self, path: str, *, skip_corrupt: bool = False):
        self.path = os.fspath(path)
        self.skip_corrupt = skip_corrupt
        shards = _resolve(self.path)
        self.files = [f for f, _ in shards]
        self._offsets = [np.asarray(o, np.int64) for _, o in shards]
        self._starts = np.cumsum([0] + [len(o) for o in self._offsets])
        self.num_skipped = 0
        self.corrupt: set[tuple[str, int]] = set()
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return f"RecordSource({self.path!r}, num_records={len(self)}, skip_corrupt={self.skip_corrupt})"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: descriptors belong to the parent
            self._fds, self._pid, self._lock = {}, os.getpid(), threading.Lock()
        fd = self._fds.get(shard)
        if fd is None:
            with self._lock:
                fd = self._fds.get(shard)
                if fd is None:
                    fd = self._fds[shard] = os.open(self.files[shard], os.O_RDONLY)
        return fd

    def locate(self, index: int) -> tuple[str, int]:
        """(shard path, byte offset) of record `index`."""
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.files[shard], int(self._offsets[shard][index - self._starts[shard]])

    def _read(self, index: int) -> bytes:
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        offset = int(self._offsets[shard][index - self._starts[shard]])
        return tfrecord.read_record_fd(self._fd(shard), offset, self.files[shard])

    def __getitem__(self, index) -> bytes:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"record {index} out of range for {n} records in {self.path}")
        if not self.skip_corrupt:
            return self._read(i)
        for k in range(n):
            j = (i + k) % n
            try:
                return self._read(j)
            except CorruptRecordError as e:
                self.num_skipped += 1
                self.corrupt.add((e.path, e.offset))
                log.warning("skipping %s", e)
        raise ValueError(f"all {n} records in {self.path} are corrupt")

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self):
        try:
            if self._pid == os.getpid():
                self.close()
        except Exception:
            pass
