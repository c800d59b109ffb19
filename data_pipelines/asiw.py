"""ASIW (Audio Separation in the Wild, spec/asmp.md §1) → avjax records with the ASMP arrays.

    python -m data_pipelines.asiw --root=ASIW_ROOT --out=OUT_DIR --split=train [--workers=N]

writes OUT_DIR/asiw-<split>.tfrecord-XXXXX-of-YYYYY + asiw-<split>.manifest.json, which the ASMP
task reads like the synthetic world's records (--config.data.train_path=OUT_DIR/asiw-train
--config.data.eval_path=OUT_DIR/asiw-test).

Accepted folder layout (all per-video files named by the video id; frames at 8 fps, 1-s windows,
window w uses frame 8w):

  ASIW_ROOT/
    <split>.csv                    header ``video_id``; the videos of a split (train/val/test)
    labels.csv                     header ``video_id,object,audio_class,detection``: one row per
                                   principal (sounding) object: object = 0, 1, … (its order),
                                   audio_class = 1..14 (0 is reserved for scene / padding),
                                   detection = its index d among each frame's D detections
    audio/<video_id>.wav           the soundtrack (anything soundfile reads; stereo is averaged,
                                   other rates are resampled to 11 025 Hz)
    features/<video_id>.h5         HDF5 datasets (T frames, D detections per frame, e.g. 20):
                                     boxes    (T, D, 4) float  x1, y1, x2, y2 normalised to [0, 1]
                                     features (T, D, F) float  detector appearance features (2048)
                                     classes  (T, D)    int    detector class ids
                                     scores   (T, D)    float  detector confidences
                                     scene    (T, F)    float  whole-frame feature (optional)
    distances/<video_id>.pkl       pickle of a float array (W, D, D): 3-D distances between the
                                   detections at each window's frame (NaN = unknown)
    displacements/<video_id>.pkl   pickle of {object: (W, 3) array} or a (P, W, 3) array: the
                                   (u, v, d) displacement of each principal object per window

Record arrays written (object o = detection slot d; W = windows):
  object_boxes (T, D, 4), object_classes (T, D), object_scores (T, D),
  object_features (W, D, F) (features at frame 8w), object_info (D, 4) = [audio_class − 1 for a
  principal object else −1, sounding, onscreen, valid], motion (D, W, 3) (NaN for other
  detections), object_distance (W, D, D), scene_features (W, F) (zeros without ``scene``).
No video frames are stored (the graphs need only the detections). A missing file, an unreadable
pickle or HDF5 file, or inconsistent shapes stop the conversion with one line naming the video.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import pickle
import sys
from typing import Sequence

import numpy as np

from data_pipelines import records

SAMPLE_RATE = 11025
FPS = 8.0


class ASIWError(ValueError):
    pass


def _need(path: str, vid: str) -> str:
    if not os.path.isfile(path):
        raise ASIWError(f"ASIW video {vid!r}: missing {path}")
    return path


def _read_csv(path: str, columns: Sequence[str]) -> list[dict]:
    if not os.path.isfile(path):
        raise ASIWError(f"ASIW: missing {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and any(c not in rows[0] for c in columns):
        raise ASIWError(f"ASIW: {path} needs the columns {', '.join(columns)}")
    return rows


def _pickle(path: str, vid: str):
    try:
        with open(_need(path, vid), "rb") as f:
            return pickle.load(f)
    except ASIWError:
        raise
    except Exception as e:
        raise ASIWError(f"ASIW video {vid!r}: {path} is not a readable pickle ({type(e).__name__}: "
                        f"{e})") from None


def _audio(path: str, vid: str) -> np.ndarray:
    import soundfile as sf
    try:
        wav, sr = sf.read(_need(path, vid), dtype="float32", always_2d=True)
    except ASIWError:
        raise
    except Exception as e:
        raise ASIWError(f"ASIW video {vid!r}: cannot read audio {path} ({e})") from None
    wav = wav.mean(1)
    if sr != SAMPLE_RATE:
        from scipy.signal import resample_poly
        g = math.gcd(int(sr), SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    if len(wav) == 0:
        raise ASIWError(f"ASIW video {vid!r}: audio {path} is empty")
    return np.clip(wav, -1, 1)


def convert_video(job) -> bytes:
    """(root, video_id, principal rows) → one serialized record. Pure: files in, bytes out."""
    root, vid, rows = job
    wav = _audio(os.path.join(root, "audio", f"{vid}.wav"), vid)
    h5path = _need(os.path.join(root, "features", f"{vid}.h5"), vid)
    try:
        import h5py
        with h5py.File(h5path, "r") as f:
            boxes = np.asarray(f["boxes"], np.float32)
            feats = np.asarray(f["features"], np.float32)
            classes = np.asarray(f["classes"], np.float32)
            scores = np.asarray(f["scores"], np.float32)
            scene = np.asarray(f["scene"], np.float32) if "scene" in f else None
    except Exception as e:
        raise ASIWError(f"ASIW video {vid!r}: cannot read {h5path} ({type(e).__name__}: {e})") from None
    t, d = boxes.shape[:2]
    if boxes.shape != (t, d, 4) or feats.shape[:2] != (t, d) or classes.shape != (t, d) \
            or scores.shape != (t, d):
        raise ASIWError(f"ASIW video {vid!r}: {h5path} needs boxes (T, D, 4), features (T, D, F), "
                        f"classes and scores (T, D); got {boxes.shape}, {feats.shape}, "
                        f"{classes.shape}, {scores.shape}")
    dist = np.asarray(_pickle(os.path.join(root, "distances", f"{vid}.pkl"), vid), np.float32)
    disp = _pickle(os.path.join(root, "displacements", f"{vid}.pkl"), vid)
    if dist.ndim != 3 or dist.shape[1:] != (d, d):
        raise ASIWError(f"ASIW video {vid!r}: distances must be (W, {d}, {d}), got {dist.shape}")
    w = dist.shape[0]
    if int(math.ceil(t / FPS)) < w:
        raise ASIWError(f"ASIW video {vid!r}: {w} windows need {int(FPS) * (w - 1) + 1} frames, "
                        f"the features have {t}")
    if isinstance(disp, dict):
        disp = {int(k): np.asarray(v, np.float32) for k, v in disp.items()}
    else:
        arr = np.asarray(disp, np.float32)
        disp = {i: arr[i] for i in range(arr.shape[0])} if arr.ndim == 3 else None
    if disp is None:
        raise ASIWError(f"ASIW video {vid!r}: displacements must be a dict or a (P, W, 3) array")
    info = np.zeros((d, 4), np.float32)
    info[:, 0] = -1
    info[:, 3] = 1
    motion = np.full((d, w, 3), np.nan, np.float32)
    for row in rows:
        obj, cls, det = int(row["object"]), int(row["audio_class"]), int(row["detection"])
        if not 0 <= det < d or not 1 <= cls <= 14:
            raise ASIWError(f"ASIW video {vid!r}: labels.csv row {row} out of range "
                            f"(detection 0..{d - 1}, audio_class 1..14)")
        if obj not in disp or disp[obj].shape != (w, 3):
            raise ASIWError(f"ASIW video {vid!r}: displacements lack a ({w}, 3) array for object "
                            f"{obj}")
        info[det] = (cls - 1, 1, 1, 1)
        motion[det] = disp[obj]
    frames = np.minimum(np.arange(w) * int(FPS), t - 1)
    scene_w = scene[frames] if scene is not None else np.zeros((w, feats.shape[-1]), np.float32)
    clip = {"id": vid, "label": int(rows[0]["audio_class"]) if rows else -1,
            "audio": wav, "sample_rate": SAMPLE_RATE,
            "arrays": {"object_boxes": boxes, "object_classes": classes, "object_scores": scores,
                       "object_features": feats[frames], "object_info": info, "motion": motion,
                       "object_distance": dist, "scene_features": scene_w}}
    return records.encode_example(clip)


def convert(root: str, out_dir: str, split: str, name: str = "asiw", workers: int = 1,
            num_shards: int | None = None) -> str:
    """Converts the videos of ``<root>/<split>.csv``; returns the manifest path."""
    vids = [r["video_id"] for r in _read_csv(os.path.join(root, f"{split}.csv"), ["video_id"])]
    if not vids:
        raise ASIWError(f"ASIW: {os.path.join(root, split + '.csv')} lists no videos")
    labels: dict[str, list] = {}
    for r in _read_csv(os.path.join(root, "labels.csv"),
                       ["video_id", "object", "audio_class", "detection"]):
        labels.setdefault(r["video_id"], []).append(
            {k: r[k] for k in ("object", "audio_class", "detection")})
    missing = [v for v in vids if v not in labels]
    if missing:
        raise ASIWError(f"ASIW video {missing[0]!r}: no principal object in labels.csv")
    jobs = [(root, v, tuple(labels[v])) for v in vids]

    def fail(job, message):
        raise ASIWError(message.split(": ", 1)[1] if ": " in message else message)

    with records.ShardWriter(out_dir, name, split, num_shards=num_shards, num_examples=len(jobs),
                             metadata={"sample_rate": SAMPLE_RATE, "fps": FPS, "corpus": "ASIW"},
                             sources=[os.path.abspath(root)]) as writer:
        for data in records.parallel_encode(convert_video, jobs, workers, on_error=fail):
            writer.write(data)
    return records.manifest_path(out_dir, name, split)


def main(argv: Sequence[str] | None = None) -> int:
    from avjax.errors import cli

    @cli
    def run():
        p = argparse.ArgumentParser(prog="python -m data_pipelines.asiw",
                                    description="Convert an ASIW folder to avjax records.")
        p.add_argument("--root", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--split", default="train")
        p.add_argument("--name", default="asiw")
        p.add_argument("--workers", type=int, default=1)
        a = p.parse_args(argv)
        print(convert(a.root, a.out, a.split, a.name, a.workers))
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
