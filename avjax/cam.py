"""Sound-source localisation: the shift net's class activation map (CAM) and its heat-map overlay.

The CAM is the logits kernel + bias at every position of the last conv features (ShiftNet's
"cam" output; its mean is the logit). Display and overlay follow spec/multisensory.md §1 and the
original code: |CAM|, thresholds hi (97th percentile, or a fixed 35) and lo = hi/2, jet colours,
alpha ≤ 0.35.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from PIL import Image

from avjax.video_io import write_video

MAX_ALPHA = 0.35


def extract_cam(model, variables, video, audio) -> np.ndarray:
    """CAM (B, T', H', W') of ``model`` (a ShiftNet) for video (B, T, H, W, 3) and audio (B, N, C),
    both in [-1, 1]: one aligned pass, moving BN statistics. Signed; overlay_cam shows |CAM|."""
    out = _predict(model, variables, jnp.asarray(video), jnp.asarray(audio)[:, None])
    return np.asarray(out["cam"][:, 0], np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _predict(model, variables, video, audio):
    return model.apply(variables, video, audio, train=False)


def cam_at_frames(cam: np.ndarray, num_frames: int) -> np.ndarray:
    """(T', H', W') → (num_frames, H', W'): frame i reads CAM time f = T'·i/num_frames,
    linearly between slices ⌊f⌋ and ⌊f⌋+1 (clamped), as the original's heatmap()."""
    cam = np.asarray(cam, np.float64)
    f = cam.shape[0] * np.arange(num_frames) / num_frames
    lo = np.floor(f).astype(np.int64)
    hi = np.minimum(lo + 1, cam.shape[0] - 1)
    p = (f - lo)[:, None, None]
    return (1 - p) * cam[lo] + p * cam[hi]


def _bilinear_matrix(out: int, size: int) -> np.ndarray:
    """(out, size) weights of bilinear resizing with half-pixel centres (edges clamped)."""
    x = np.clip((np.arange(out) + 0.5) * size / out - 0.5, 0, size - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, size - 1)
    m = np.zeros((out, size))
    np.add.at(m, (np.arange(out), lo), 1 - (x - lo))
    np.add.at(m, (np.arange(out), hi), x - lo)
    return m


def resize_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly resize (T, h, w) maps to (T, height, width)."""
    rows, cols = _bilinear_matrix(height, maps.shape[1]), _bilinear_matrix(width, maps.shape[2])
    return np.einsum("hi,tij,wj->thw", rows, maps, cols)


def cam_thresholds(cam: np.ndarray, adaptive: bool = True, fixed_thresh: float = 35.0
                   ) -> tuple[float, float]:
    """(lo, hi) colour range of |CAM|: hi = 97th percentile (or fixed), lo = hi/2.

    hi carries the original's +0.001 so a CAM that is mostly zero still has lo < hi.
    """
    hi = float(np.percentile(cam, 97)) if adaptive else float(fixed_thresh)
    return hi / 2, hi + 1e-3


def overlay_cam(frames: np.ndarray, cam: np.ndarray, *, adaptive: bool = True,
                fixed_thresh: float = 35.0) -> np.ndarray:
    """Blend the |CAM| heat map into uint8 frames (T, H, W, 3); cam is (T', H', W').

    Per frame: CAM interpolated in time, upsampled bilinearly, jet-coloured over [lo, hi];
    alpha = clip((cam-lo)/(hi-lo), 0, 0.35); out = frame·(1-alpha) + colour·alpha. Frames come
    back unchanged when the CAM is flat (range ≤ 0.001).
    """
    frames = np.asarray(frames)
    cam = np.abs(np.asarray(cam, np.float64))
    if frames.ndim != 4 or frames.shape[-1] != 3 or cam.ndim != 3:
        raise ValueError(f"overlay_cam expects frames (T, H, W, 3) and cam (T', H', W'), got "
                         f"{frames.shape} and {cam.shape}")
    if cam.max() - cam.min() <= 1e-3:
        return frames.copy()
    lo, hi = cam_thresholds(cam, adaptive, fixed_thresh)
    jet = colormaps["jet"]
    t, h, w, _ = frames.shape
    timed = cam_at_frames(cam, t)
    out = np.empty_like(frames, dtype=np.uint8)
    for i in range(t):   # one frame at a time: long videos stay small in memory
        m = resize_bilinear(timed[i:i + 1], h, w)[0]
        norm = (m - lo) / (hi - lo)
        colour = 255.0 * jet(np.clip(norm, 0, 1))[..., :3]
        alpha = np.clip(norm, 0, MAX_ALPHA)[..., None]
        blend = frames[i] * (1 - alpha) + colour * alpha
        out[i] = np.clip(blend, 0, 255).astype(np.uint8)
    return out


def cam_strip(frames: np.ndarray, count: int = 4) -> np.ndarray:
    """``count`` evenly spaced frames side by side (H, count·W, 3) for a still summary."""
    idx = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return np.concatenate(list(frames[idx]), axis=1)


def write_cam_outputs(frames, cam, audio, sample_rate, fps, out_dir, stem, *,
                      adaptive: bool = True, fixed_thresh: float = 35.0, png_frames: int = 4
                      ) -> tuple[Path, Path]:
    """Write ``<stem>_cam.mp4`` (overlaid frames + audio) and ``<stem>_cam.png`` (a strip of
    ``png_frames`` overlaid frames) into out_dir; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = overlay_cam(frames, cam, adaptive=adaptive, fixed_thresh=fixed_thresh)
    mp4 = write_video(out_dir / f"{stem}_cam.mp4", shown, fps, audio, sample_rate)
    png = out_dir / f"{stem}_cam.png"
    tmp = out_dir / f".{stem}_cam.partial.png"
    try:
        Image.fromarray(cam_strip(shown, png_frames)).save(tmp, format="PNG")
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return mp4, png
