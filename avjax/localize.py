"""`python -m avjax.localize --checkpoint=EXPORT (--video=FILE | --records=PATH --index=I)
--out=DIR [--start=SECONDS] [--fixed_thresh]`: where is the sound coming from?

Runs a trained shift net on one window with its aligned audio and writes the class activation map
over the network's view of the frames as DIR/<stem>_cam.mp4 (with the audio) and
DIR/<stem>_cam.png (multisensory §1 overlay).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from avjax.errors import UserError, cli


def window_from_video(frames, fps, audio, sample_rate, spec, start_s: float = 0.0):
    """Resample a decoded video to the model's rates and cut one centre-cropped window.

    Returns (uint8 frames (T, crop, crop, 3), float32 stereo audio (N, 2)).
    """
    from PIL import Image
    if audio is None:
        raise UserError("the video has no audio stream; localisation needs its sound")
    times = start_s + np.arange(spec.num_frames) * spec.frame_step / spec.fps
    idx = np.round(times * fps).astype(int)
    if idx[-1] >= len(frames):
        raise UserError(f"the video is {len(frames) / fps:.2f} s long; a window from "
                        f"{start_s:.2f} s needs {times[-1] + 1 / spec.fps:.2f} s")
    crop = spec.crop_size
    out = np.empty((len(idx), crop, crop, 3), np.uint8)
    for j, i in enumerate(idx):
        img = Image.fromarray(frames[i])
        scale = crop / min(img.size)
        img = img.resize((max(crop, round(img.size[0] * scale)),
                          max(crop, round(img.size[1] * scale))), Image.BILINEAR)
        w, h = img.size
        x0, y0 = (w - crop) // 2, (h - crop) // 2
        out[j] = np.asarray(img.crop((x0, y0, x0 + crop, y0 + crop)).convert("RGB"))
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    stereo = audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1)
    if sample_rate != spec.sample_rate:
        import soxr
        stereo = soxr.resample(stereo, sample_rate, spec.sample_rate)
    s0 = int(round(start_s * spec.sample_rate))
    a = stereo[s0:s0 + spec.num_samples]
    a = np.pad(a, ((0, spec.num_samples - len(a)), (0, 0)))
    return out, a.astype(np.float32)


def window_from_record(data: bytes, spec, start_s: float = 0.0):
    from data_pipelines import records
    ex = records.decode_example(data)
    if ex["video"] is None:
        raise UserError(f"record {ex['id']!r} has no video")
    return window_from_video(ex["video"], ex["fps"], ex["audio"], ex["sample_rate"], spec,
                             start_s)


@cli
def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m avjax.localize", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="an export of a shift-task run")
    p.add_argument("--video")
    p.add_argument("--records")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--start", type=float, default=0.0, help="window start in seconds")
    p.add_argument("--fixed_thresh", action="store_true",
                   help="fixed CAM threshold 35 instead of the 97th percentile")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if bool(a.video) == bool(a.records):
        raise UserError("give exactly one of --video=FILE or --records=PATH [--index=I]")
    from avjax import cam, video_io
    from avjax.export import load
    exported = load(a.checkpoint)
    if str(exported.config.task) != "shift":
        raise UserError(f"{a.checkpoint} is a {exported.config.task!r} model; localisation "
                        f"needs a shift-task export")
    spec = exported.task.spec
    if a.video:
        frames, fps, audio, sr = video_io.read_video(a.video)
        frames, audio = window_from_video(frames, fps, audio, sr, spec, a.start)
        stem = os.path.splitext(os.path.basename(a.video))[0]
    else:
        from data_pipelines.records import RecordSource
        source = RecordSource(a.records)
        if not 0 <= a.index < len(source):
            raise UserError(f"--index {a.index} is outside the {len(source)} records")
        frames, audio = window_from_record(source[a.index], spec, a.start)
        stem = f"record{a.index}"
    video = frames[None].astype(np.float32) / 127.5 - 1.0
    cam_map = cam.extract_cam(exported.task.model, exported.variables, video, audio[None])[0]
    mp4, png = cam.write_cam_outputs(frames, cam_map, audio, spec.sample_rate,
                                     spec.fps / spec.frame_step, a.out, stem,
                                     adaptive=not a.fixed_thresh)
    print(f"wrote {mp4} and {png}")


if __name__ == "__main__":
    sys.exit(main())
