"""`python -m avjax.separate VIDEO --model full|unet_pit --checkpoint EXPORT --out DIR
[--duration_mult m | --clip_dur s] [--mask l|r] [--start s] [--duration d] [--cam]
[--fixed_thresh]`: separate the sound of a video (spec/multisensory.md §3).

Decodes any container/codec PyAV reads (any frame rate, 8-48 kHz, mono/stereo/5.1, odd frame
sizes); resamples to the model's rates (frames by nearest time stamp, squashed to a square and
centre-cropped like the paper's 256 → 224; audio with soxr; more than two channels are averaged
to mono, which is then used for both channels); scales the input to the RMS of a training
mixture (≈0.1414; the gain is undone on the outputs). Long inputs are cut into windows every
half window and joined by overlap-add with a Hann cross-fade (the original pasted "first writer
wins"). Writes, under --out: on_screen.mp4 / off_screen.mp4 (full) or separated_1/2.mp4
(unet_pit), source.mp4 (the input range), spectrogram PNGs and index.html showing them side by
side. Audio-only input (unet_pit) gives .wav files instead. --mask l|r greys out the left/right
half of the network's crop (and of the shown frames); --cam overlays the shift net's class
activation map on the output frames (full).
"""
from __future__ import annotations

import argparse
import functools
import html
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from avjax.errors import UserError, cli

TRAIN_MIX_RMS = 0.1 * math.sqrt(2)        # two sources at RMS 0.1 each
NAMES = {"full": ("on_screen", "off_screen"), "unet_pit": ("separated_1", "separated_2")}
TITLES = {"on_screen": "on-screen", "off_screen": "off-screen", "separated_1": "source 1",
          "separated_2": "source 2", "source": "input"}


# ----------------------------------------------------------------------------- model side

class Separator:
    """A loaded separation export with jitted per-window inference."""

    def __init__(self, checkpoint: str, variant: str, duration_mult: float = 1.0,
                 clip_dur: float | None = None):
        import jax
        from avjax.export import load
        exported = load(checkpoint)
        cfg = exported.config
        if str(cfg.task) != "separation":
            raise UserError(f"{checkpoint} is a {cfg.task!r} export, not a separation model")
        if str(cfg.variant) != variant:
            raise UserError(f"{checkpoint} holds a {cfg.variant!r} separator but --model "
                            f"{variant} was asked for")
        self.variant, self.config = variant, cfg
        self.task = exported.task
        self.variables = exported.variables
        spec, stft = self.task.spec, self.task.stft
        self.sr, self.fps, self.crop = spec.sample_rate, spec.fps, spec.crop_size
        self.channels = spec.num_channels
        t_div = 2 ** max(int(cfg.model.unet_layers) - 2, 0)
        tail = spec.num_samples - self.task.covered      # samples only the shift net hears
        if clip_dur:
            frames = (clip_dur * self.sr - tail - stft.frame_length) / stft.hop + 1
        else:
            frames = self.task.frames * duration_mult
        frames = max(t_div, int(round(frames / t_div)) * t_div)
        self.covered = stft.samples_for_frames(frames)
        self.num_samples = self.covered + tail
        self.num_frames = max(1, int(round(self.num_samples * self.fps / self.sr)))
        task = self.task

        def run(variables, mix, video):
            batch = {"mix": mix}
            if video is not None:
                batch["video"] = video
            wav, _, _ = task.separate(variables, batch)
            return wav
        self._run = jax.jit(run)
        self._compiled = {}

        def cam(variables, mix, video):
            from avjax.tasks.separation import frames_to_unit
            out = task.model.apply(variables, frames_to_unit(video), mix,
                                   method="features_and_cam")
            return out["cam"][:, 0]
        self._cam = jax.jit(cam)

    @property
    def window_s(self) -> float:
        return self.covered / self.sr

    def compile(self, batch: int, video: bool) -> None:
        """Compile for ``batch`` windows ahead of time (so timings exclude compilation)."""
        import jax
        key = (batch, video)
        if key not in self._compiled:
            mix = jax.ShapeDtypeStruct((batch, self.num_samples, self.channels), np.float32)
            vid = (jax.ShapeDtypeStruct((batch, self.num_frames, self.crop, self.crop, 3),
                                        np.uint8) if video else None)
            self._compiled[key] = self._run.lower(self.variables, mix, vid).compile()

    def separate(self, mix: np.ndarray, video: np.ndarray | None) -> np.ndarray:
        """mix (B, N, C), video (B, T, S, S, 3) uint8 → (B, 2, covered) waveforms."""
        self.compile(len(mix), video is not None)
        return np.asarray(self._compiled[(len(mix), video is not None)](self.variables, mix,
                                                                         video))

    def cam(self, mix, video) -> np.ndarray:
        return np.asarray(self._cam(self.variables, mix, video))


@functools.lru_cache(maxsize=4)
def load_separator(checkpoint: str, variant: str, duration_mult: float = 1.0,
                   clip_dur: float | None = None) -> Separator:
    """Cached, so repeated calls in one process reuse the loaded model and its compilation."""
    return Separator(checkpoint, variant, duration_mult, clip_dur)


# ----------------------------------------------------------------------------- input side

def _to_channels(audio: np.ndarray, c: int) -> np.ndarray:
    if audio.shape[1] == c:
        return audio
    if audio.shape[1] > 2 or c == 1:
        mono = audio.mean(axis=1, keepdims=True)
        return np.repeat(mono, c, axis=1)
    return np.repeat(audio[:, :1], c, axis=1) if audio.shape[1] == 1 else audio[:, :c]


def _resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return np.asarray(audio, np.float32)
    import soxr
    return np.asarray(soxr.resample(np.ascontiguousarray(audio, np.float32), rate_in, rate_out),
                      np.float32)


def model_frames(frames: np.ndarray, fps: float, count: int, model_fps: float, crop: int,
                 mask: str | None) -> np.ndarray:
    """Frames at the model's rate (nearest time stamp), squashed to a square of
    round(crop·256/224) pixels and centre-cropped to ``crop``; --mask greys half of the crop."""
    from PIL import Image
    size = int(round(crop * 256 / 224))
    idx = np.minimum(np.round(np.arange(count) / model_fps * fps).astype(int), len(frames) - 1)
    off = (size - crop) // 2
    out = np.empty((count, crop, crop, 3), np.uint8)
    cache = {}
    for j, i in enumerate(idx):
        if i not in cache:
            img = Image.fromarray(frames[i]).resize((size, size), Image.BILINEAR)
            cache = {i: np.asarray(img)[off:off + crop, off:off + crop]}
        out[j] = cache[i]
    if mask == "l":
        out[:, :, : crop // 2] = 128
    elif mask == "r":
        out[:, :, crop // 2:] = 128
    return out


def _grey_half(frames: np.ndarray, mask: str | None) -> np.ndarray:
    if not mask:
        return frames
    frames = frames.copy()
    w = frames.shape[2]
    if mask == "l":
        frames[:, :, : w // 2] = 128
    else:
        frames[:, :, w // 2:] = 128
    return frames


def crossfade_weights(length: int, hop: int, first: bool, last: bool) -> np.ndarray:
    """Hann ramps over the overlaps (they sum to one at 50 % overlap); flat at the ends."""
    w = np.ones(length, np.float64)
    ramp = length - hop
    if ramp > 0:
        r = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
        if not first:
            w[:ramp] = r
        if not last:
            w[-ramp:] = r[::-1]
    return w


def overlap_add(pieces, starts, length: int, hop: int) -> np.ndarray:
    """Join (2, L) pieces placed at ``starts`` with cross-fades → (2, length)."""
    out = np.zeros((pieces[0].shape[0], length), np.float64)
    norm = np.zeros(length, np.float64)
    for k, (p, s) in enumerate(zip(pieces, starts)):
        n = min(p.shape[1], length - s)
        if n <= 0:
            continue
        w = crossfade_weights(p.shape[1], hop, k == 0, k == len(pieces) - 1)[:n]
        out[:, s:s + n] += p[:, :n] * w
        norm[s:s + n] += w
    return (out / np.maximum(norm, 1e-8)).astype(np.float32)


def check_audio(audio: np.ndarray, path) -> np.ndarray:
    if audio is None:
        raise UserError(f"{path} has no audio stream: there is nothing to separate")
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if not len(audio):
        raise UserError(f"{path} has an empty audio stream")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path}: the audio contains NaN or inf samples")
    if float(np.sqrt(np.mean(audio ** 2))) < 1e-6:
        raise UserError(f"{path}: the audio is silent in the chosen range; nothing to separate")
    return audio


def _read_input(path: str, variant: str):
    """(frames or None, fps, audio (N, C), sample rate)."""
    import av
    from avjax import video_io
    p = Path(path)
    if not p.is_file():
        raise UserError(f"input file not found: {path}")
    try:
        with av.open(str(p)) as c:
            has_video = bool(c.streams.video)
    except av.error.FFmpegError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    if has_video:
        frames, fps, audio, sr = video_io.read_video(p)
        return frames, fps, audio, sr
    if variant == "full":
        raise UserError(f"{path} has no video stream; the full (on/off-screen) model needs "
                        f"frames (use --model unet_pit for audio-only files)")
    from data_pipelines.audio_folder import read_audio_file
    try:
        audio, sr = read_audio_file(str(p))
    except ValueError as e:
        raise UserError(str(e)) from None
    return None, 0.0, audio, sr


# ----------------------------------------------------------------------------- outputs

def spectrogram_png(wave: np.ndarray, sr: int, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from avjax import spectral
    n_fft = 512 if sr > 12000 else 256
    x = np.asarray(wave, np.float32)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    s = np.abs(np.asarray(spectral.stft(x, n_fft, n_fft // 4)))
    db = 20 * np.log10(np.maximum(s, 1e-5))
    fig, ax = plt.subplots(figsize=(6, 2.6), dpi=100)
    ax.imshow(db.T, origin="lower", aspect="auto", cmap="magma", vmin=db.max() - 80,
              vmax=db.max(), extent=[0, len(x) / sr, 0, sr / 2000])
    ax.set_xlabel("s")
    ax.set_ylabel("kHz")
    ax.set_title(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def write_index(out_dir: Path, items: list[tuple[str, str, str]], title: str, media: str) -> Path:
    """items: (heading, media file, png file)."""
    cells = []
    for head, f, png in items:
        tag = (f'<video src="{html.escape(f)}" controls width="100%"></video>' if media == "video"
               else f'<audio src="{html.escape(f)}" controls></audio>')
        cells.append(f'<td><h3>{html.escape(head)}</h3>{tag}<br>'
                     f'<a href="{html.escape(f)}">{html.escape(f)}</a><br>'
                     f'<img src="{html.escape(png)}" width="100%"></td>')
    page = ("<!doctype html>\n<html><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>td{{vertical-align:top;width:33%}}</style>"
            f"</head><body><h2>{html.escape(title)}</h2><table><tr>{''.join(cells)}</tr>"
            "</table></body></html>\n")
    path = out_dir / "index.html"
    path.write_text(page)
    return path


# ----------------------------------------------------------------------------- the tool

def separate_file(path: str, *, model: str, checkpoint: str, out: str,
                  duration_mult: float = 1.0, clip_dur: float | None = None,
                  mask: str | None = None, start: float = 0.0, duration: float | None = None,
                  cam: bool = False, fixed_thresh: bool = False, batch: int = 4,
                  progress: bool = True) -> dict:
    from tqdm import tqdm
    if model not in NAMES:
        raise UserError(f"--model must be full or unet_pit, got {model!r}")
    if mask not in (None, "l", "r"):
        raise UserError(f"--mask must be l or r, got {mask!r}")
    if duration_mult <= 0 or (clip_dur is not None and clip_dur <= 0):
        raise UserError("--duration_mult and --clip_dur must be positive")
    frames, fps, audio, sr = _read_input(path, model)
    audio = check_audio(audio, path)
    t_load = time.perf_counter()
    sep = load_separator(os.path.abspath(checkpoint), model, float(duration_mult), clip_dur)
    if cam and model != "full":
        raise UserError("--cam needs the full model (the unet_pit model has no video)")
    if frames is not None and mask and model != "full":
        mask = None                                   # nothing visual to mask
    media_s = len(audio) / sr
    if start < 0 or start >= media_s:
        raise UserError(f"--start {start} is outside the input ({media_s:.2f} s)")
    # default: one window; --duration: that range (clipped to the input)
    dur = sep.window_s if duration is None else duration
    if dur <= 0:
        raise UserError(f"--duration must be positive, got {duration}")
    end_s = min(media_s, start + dur)
    if frames is not None:
        end_s = min(end_s, len(frames) / fps)
    a0, a1 = int(round(start * sr)), int(round(end_s * sr))
    src_audio = audio[a0:a1]
    src_audio = check_audio(src_audio, path)
    x = _resample(_to_channels(src_audio, sep.channels), sr, sep.sr)
    rms = float(np.sqrt(np.mean(x ** 2)))
    gain = TRAIN_MIX_RMS / rms
    x = x * gain
    length = len(x)
    hop = sep.covered // 2
    n_win = max(1, math.ceil(max(length - sep.covered, 0) / hop) + 1)
    starts = [k * hop for k in range(n_win)]
    need = starts[-1] + sep.num_samples
    xp = np.pad(x, ((0, max(0, need - length)), (0, 0)))
    view = None
    if model == "full":
        shown = frames[int(round(start * fps)):]
        count = int(math.ceil(need / sep.sr * sep.fps)) + sep.num_frames
        view = model_frames(shown, fps, count, sep.fps, sep.crop, mask)
    pieces, cams = [], []
    sep.compile(min(batch, n_win), view is not None)
    t0 = time.perf_counter()
    bar = tqdm(total=n_win, unit="window", disable=not progress, desc="separating")
    for b0 in range(0, n_win, batch):
        ks = list(range(b0, min(n_win, b0 + batch)))
        mix = np.stack([xp[starts[k]:starts[k] + sep.num_samples] for k in ks])
        vid = None
        if view is not None:
            f0 = [int(round(starts[k] / sep.sr * sep.fps)) for k in ks]
            vid = np.stack([view[f:f + sep.num_frames] for f in f0])
        if len(ks) < min(batch, n_win):                       # keep one compiled shape
            padn = min(batch, n_win) - len(ks)
            mix = np.concatenate([mix, np.repeat(mix[-1:], padn, 0)])
            vid = None if vid is None else np.concatenate([vid, np.repeat(vid[-1:], padn, 0)])
        wav = sep.separate(mix, vid)[: len(ks)]
        pieces += list(wav)
        if cam:
            cams += list(sep.cam(mix, vid)[: len(ks)])
        bar.update(len(ks))
    bar.close()
    est = overlap_add(pieces, starts, length, hop) / gain            # (2, length) model rate
    est = _resample(est.T, sep.sr, sr).T[:, : len(src_audio)]
    if est.shape[1] < len(src_audio):
        est = np.pad(est, ((0, 0), (0, len(src_audio) - est.shape[1])))
    t_sep = time.perf_counter() - t0

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = NAMES[model]
    written, items = {}, []
    if frames is None:                                                # audio-only: wav
        import soundfile
        for name, wave in zip(names, est):
            f = out_dir / f"{name}.wav"
            soundfile.write(f, np.clip(wave, -1, 1), sr)
            written[name] = f
        f = out_dir / "source.wav"
        soundfile.write(f, np.clip(src_audio, -1, 1), sr)
        written["source"] = f
        media = "audio"
    else:
        from avjax import video_io
        f0, f1 = int(round(start * fps)), int(round(end_s * fps))
        shown = _grey_half(frames[f0:max(f1, f0 + 1)], mask)
        if cam:
            from avjax import cam as cam_lib
            cam_map = _join_cams(cams, starts, sep, len(shown), fps)
            shown = cam_lib.overlay_cam(shown, cam_map, adaptive=not fixed_thresh)
        source_audio = src_audio if src_audio.shape[1] <= 2 else _to_channels(src_audio, 2)
        for name, wave in zip(names, est):
            written[name] = video_io.write_video(out_dir / f"{name}.mp4", shown, fps, wave, sr)
        written["source"] = video_io.write_video(out_dir / "source.mp4", shown, fps,
                                                 source_audio, sr)
        media = "video"
    mono_src = src_audio.mean(axis=1)
    for name in ("source",) + names:
        wave = mono_src if name == "source" else est[names.index(name)]
        png = spectrogram_png(wave, sr, out_dir / f"{name}.png", TITLES[name])
        items.append((TITLES[name], written[name].name, png.name))
    index = write_index(out_dir, items, f"{Path(path).name}: {model} separation", media)
    dur_s = len(src_audio) / sr
    return {"outputs": {k: str(v) for k, v in written.items()}, "index": str(index),
            "seconds": dur_s, "windows": n_win, "separate_s": t_sep,
            "load_s": t0 - t_load, "rtf": t_sep / dur_s, "write_s": time.perf_counter() - t0 - t_sep}


def _join_cams(cams, starts, sep, num_frames: int, fps: float) -> np.ndarray:
    """Per-window CAMs (T', H', W') → one (num_frames', H', W') map over the whole range, taking
    for each output frame the CAM slice of the window centred nearest to it."""
    tprime = cams[0].shape[0]
    t = np.arange(num_frames) / fps                                  # output frame times
    centres = np.array([(s + sep.covered / 2) / sep.sr for s in starts])
    k = np.argmin(np.abs(t[:, None] - centres[None, :]), axis=1)
    pos = (t - np.array(starts)[k] / sep.sr) / (sep.num_samples / sep.sr) * tprime
    pos = np.clip(np.round(pos).astype(int), 0, tprime - 1)
    return np.stack([cams[kk][p] for kk, p in zip(k, pos)])


@cli
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m avjax.separate",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("video", help="input video (or audio file, for --model unet_pit)")
    p.add_argument("--model", required=True, choices=sorted(NAMES))
    p.add_argument("--checkpoint", required=True, help="an export of a separation run")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--duration_mult", type=float, default=1.0,
                   help="window = the training window × m (spectrogram frames kept a multiple "
                        "of the U-Net's time stride)")
    p.add_argument("--clip_dur", type=float, default=None, help="window length in seconds")
    p.add_argument("--mask", choices=("l", "r"), default=None,
                   help="grey out the left/right half of the frames")
    p.add_argument("--start", type=float, default=0.0, help="start time in seconds")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds to process (default: one window)")
    p.add_argument("--cam", action="store_true", help="overlay the CAM heat map")
    p.add_argument("--fixed_thresh", action="store_true",
                   help="CAM threshold fixed at 35 instead of the 97th percentile")
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    t = time.perf_counter()
    res = separate_file(a.video, model=a.model, checkpoint=a.checkpoint, out=a.out,
                        duration_mult=a.duration_mult, clip_dur=a.clip_dur, mask=a.mask,
                        start=a.start, duration=a.duration, cam=a.cam,
                        fixed_thresh=a.fixed_thresh, progress=not a.no_progress)
    total = time.perf_counter() - t
    print(f"separated {res['seconds']:.2f} s in {res['windows']} window(s): "
          f"{res['separate_s']:.2f} s of separation (real-time factor {res['rtf']:.2f}, "
          f"compiled model), {res['write_s']:.1f} s writing outputs, {total:.1f} s in all "
          f"incl. decoding, loading and compiling")
    print(f"wrote {res['index']}")


if __name__ == "__main__":
    sys.exit(main())
