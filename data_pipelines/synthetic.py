"""The built-in synthetic audio-visual world: sounds caused by what is seen, with ground truth.

Why: every task needs data that is learnable only through the signal the task is about, with
exact ground truth, on a laptop, through the same record pipeline as real data. A clip is a pure
function of (config, seed, split, index) and is written with the real ShardWriter.

The world
- Objects are coloured shapes (disc, square, triangle, ring, diamond) with soft edges and
  shading, drawn far-to-near over a textured background that drifts and breathes slowly. Each
  object has a centre (x, y) in [0, 1] image coordinates (y down) and a depth d; its radius is
  ∝ 1/d. Object kinds: on-screen sounding, off-screen sounding (never drawn; same motion
  statistics as visible ones, as if hidden), silent distractors (drawn, never heard).
- Sound families (FAMILIES): tone, thud, band noise, hiss, chirp up, clicks, FM, buzz, bell,
  chirp down; config.num_families picks the first K. On- and off-screen sources draw from the same
  families and the same parameter ranges, so audio alone cannot tell which is which. A family
  fixes an object's shape and hue (with jitter), like a real object class; distractors take a
  random family's look.
- Synchronisation: each source emits events from a renewal process (minimum gap
  max(min_event_gap_s, (flash_frames + 1)/fps), mean rate event_rate_hz). Each event sound has a
  2 ms attack starting at onset t. An on-screen source flashes towards white and swells by up to
  30 % for flash_frames frames, starting exactly at frame floor(t * fps). Off-screen sources
  emit the same events with no visual. So shifted audio is detectable only by looking.
- Audible motion cues (for the direction net, which only hears):
  depth  → loudness ∝ (near/d)^loudness_power (per sample; default 1/d) and Doppler: each
           event's frequencies × 1/(1 + v_r/c), v_r = dd/dt at the onset, c = speed_of_sound
           (depth units/s);
  x      → constant-power stereo pan (stereo only) and one side-wall echo, delay a + b·x ms
           (echo_delay_ms, default 2 + 10·x), gain 0.35 (mono and stereo);
  y      → brightness: a first-difference high-frequency boost, gain brightness_gain·(0.5 − y)
           (default 0.8; higher is brighter), a crude elevation cue.
  Each event's gain is × U(1 − event_gain_jitter, 1) (default 0.25).
  motion_echoes: instead of the side-wall echo, every event is followed by wall echoes (side
           wall 45 ms, floor 90 ms, back wall 135 ms later; gains echo_gains, default 0.6 each),
           each pitched relative to the direct sound by the velocity towards its wall:
           × 1/(1 + v/echo_speed) with v = −dx/dt, +dy/dt, −dd/dt.
  y_glide: every event glides, frequency × (1 − y_glide · dy/dt · t) (rising while the object
           rises; t from the onset, rate clipped to ±2/s). A stylised cue.
  asmp_local uses the side-wall and back-wall echoes and the glide (no floor echo), so each
           axis has its own kind of cue. Why: with all three echoes a ResNet direction net on
           clean 1-s slices (2000 clips, batch 48, Adam 3e-3, 1000 steps) confused the walls
           (−y with +x: both pitch an echo up; up_down 0.28 correct) and reached 0.571
           held-out; with the floor echo replaced by the glide (y_glide 12) 0.682, up_down
           0.58. Its periodic motions are also slower (motion_period_s 3–5 s, zigzag_period_s
           2–3 s; defaults 1.5–3 and 0.6–1.2), so a 1-s window rarely holds a turning point:
           the per-window displacement label then follows from the velocity heard at the
           events (that bound: 0.82 → 0.91).
- Stems: sources/pcm holds every source's final audio (cues applied), sources/onscreen its flag;
  the mixture audio/pcm is their sum. If the sum peaks above mix_peak all stems are scaled down
  together (arrays/mix_peak = peak before, arrays/mix_gain = the gain).
- Action label: the principal object (object 0, always on-screen and sounding) follows one
  motion pattern of MOTION_CLASSES; other drawn objects wander (drift with reflections).
  Off-screen sources follow a random pattern as often as a visible source does (else wander),
  so patterned audible motion does not give away that a source is visible.

Arrays per clip (O = max objects of the config, S = sources, T frames, W = floor(duration_s)
1-s windows; object order: on-screen sounding, off-screen sounding, distractors, padding; source
s is object s):
  boxes (T, max_onscreen, 4)   normalised x1,y1,x2,y2 of on-screen sounding objects, -1 padding
  object_boxes (T, O, 4)       every drawn object; -1 for off-screen objects and padding
  object_depth (T, O)          depth (off-screen objects too); -1 padding
  object_info (O, 4)           family id (-1 silent/padding), sounding, onscreen, valid
  object_features (O, F)       appearance features of drawn objects (colour histogram, shape
                               moments, radial profile, size) through a fixed random projection
                               plus noise; no labels; zeros for off-screen objects and padding
  motion (O, W, 3)             per-window displacement (u, v, d): u, v in tenths of the frame
                               (v down), d in tenths of the depth range (positive = receding)
  object_distance (W, O, O)    3-D distances at each window start (x,y lifted by depth); NaN pad
  event_times (S, E)           onset times in seconds, -1 padding
  mix_peak (1,), mix_gain (1,)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import zlib
from typing import Sequence

import numpy as np

from data_pipelines import records

WORLD_VERSION = 1
FAMILIES = ("tone", "thud", "band_noise", "hiss", "chirp_up", "clicks", "fm", "buzz", "bell", "chirp_down")
SHAPES = ("disc", "square", "triangle", "ring", "diamond")
MOTION_CLASSES = ("static", "left_right", "up_down", "circle", "zigzag", "approach", "recede")
PRESET_NAMES = ("multisensory", "multisensory_local", "asmp", "asmp_local", "separation_local")


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    duration_s: float = 3.0
    fps: float = 15.0
    height: int = 64
    width: int = 64
    sample_rate: int = 11025
    num_channels: int = 2
    video_encoding: str = "jpeg"
    jpeg_quality: int = 90
    num_onscreen: tuple[int, int] = (1, 2)     # sounding, drawn (inclusive range)
    num_offscreen: tuple[int, int] = (0, 1)    # sounding, never drawn
    num_distractors: tuple[int, int] = (0, 2)  # drawn, silent
    num_families: int = 8
    event_rate_hz: float = 2.5
    min_event_gap_s: float = 0.15
    flash_frames: int = 2
    depth_range: tuple[float, float] = (1.0, 2.5)
    object_radius: tuple[float, float] = (0.10, 0.16)  # fraction of min(H, W) at depth 1
    speed_of_sound: float = 2.0   # depth units per second; sets the Doppler strength
    pixel_noise: float = 2.0      # std of per-frame pixel noise, in uint8 levels
    num_features: int = 64
    feature_noise: float = 0.05
    mix_peak: float = 0.9
    # Strength of the audible motion cues (defaults: the original world; asmp_local sets louder
    # ones so a small direction net can hear the motion in a 1-s window).
    loudness_power: float = 1.0           # loudness ∝ (near / d) ** loudness_power
    brightness_gain: float = 0.8          # elevation → high-frequency boost gain · (0.5 − y)
    echo_delay_ms: tuple[float, float] = (2.0, 10.0)   # side-wall echo delay = a + b·x ms
    event_gain_jitter: float = 0.25       # each event's gain × U(1 − jitter, 1)
    motion_echoes: bool = False           # side/floor/back-wall echoes Doppler-shifted by u, v, d
    echo_speed: float = 1.5               # c_e of those echoes (frame widths or depth units / s)
    motion_period_s: tuple[float, float] = (1.5, 3.0)   # left_right / up_down / circle period range
    zigzag_period_s: tuple[float, float] = (0.6, 1.2)   # zigzag's vertical period range
    echo_gains: tuple[float, float, float] = (0.6, 0.6, 0.6)   # side/floor/back-wall echo gains
    y_glide: float = 0.0                  # vertical velocity → glide: frequency × (1 − y_glide · dy/dt · t)

    def __post_init__(self):
        def check(ok, msg):
            if not ok:
                raise ValueError(f"bad WorldConfig: {msg}")
        check(self.duration_s >= 1.0, f"duration_s must be >= 1, got {self.duration_s}")
        check(self.fps > 0 and self.sample_rate >= 4000, "fps > 0 and sample_rate >= 4000 needed")
        check(self.height >= 16 and self.width >= 16, f"frames must be at least 16x16, got {self.height}x{self.width}")
        check(self.num_channels in (1, 2), f"num_channels must be 1 or 2, got {self.num_channels}")
        check(self.video_encoding in records.VIDEO_ENCODINGS, f"video_encoding must be one of {records.VIDEO_ENCODINGS}")
        check(1 <= self.num_families <= len(FAMILIES), f"num_families must be in 1..{len(FAMILIES)}")
        for name in ("num_onscreen", "num_offscreen", "num_distractors"):
            lo, hi = getattr(self, name)
            check(0 <= lo <= hi, f"{name} must be a range (lo, hi) with 0 <= lo <= hi")
        check(self.num_onscreen[0] >= 1, "num_onscreen must start at 1 (the principal object)")
        check(0 < self.depth_range[0] < self.depth_range[1], "depth_range must be 0 < near < far")
        check(0 < self.object_radius[0] <= self.object_radius[1] < 0.3, "object_radius must be in (0, 0.3)")
        check(self.object_radius[1] * 1.3 / self.depth_range[0] < 0.4,
              "objects at the nearest depth must fit the frame: object_radius[1] * 1.3 / depth_range[0] < 0.4")
        check(self.event_rate_hz > 0 and self.flash_frames >= 1, "event_rate_hz > 0 and flash_frames >= 1 needed")
        check(self.num_features >= 1, "num_features must be >= 1")

    @property
    def num_frames(self) -> int:
        return int(math.floor(self.duration_s * self.fps + 1e-6))

    @property
    def num_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def max_objects(self) -> int:
        return self.num_onscreen[1] + self.num_offscreen[1] + self.num_distractors[1]

    def to_dict(self) -> dict:
        # Cue-strength fields left at their defaults are omitted, so data sets cached before
        # they existed still match (generate_dataset compares this dict).
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.name in _CUE_FIELDS and d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldConfig":
        d = dict(d)
        for k in ("num_onscreen", "num_offscreen", "num_distractors", "depth_range", "object_radius",
                  "echo_delay_ms", "motion_period_s", "zigzag_period_s", "echo_gains"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


_CUE_FIELDS = ("loudness_power", "brightness_gain", "echo_delay_ms", "event_gain_jitter",
               "motion_echoes", "echo_speed", "motion_period_s", "zigzag_period_s",
               "echo_gains", "y_glide")


def preset(name: str) -> WorldConfig:
    """Paper-sized and laptop-sized worlds for the two systems."""
    if name == "multisensory":  # stored records of the paper: 10.1 s, 302 frames, 212 100 stereo samples
        return WorldConfig(duration_s=10.1, fps=29.97, height=256, width=256, sample_rate=21000,
                           num_channels=2, num_offscreen=(0, 2))
    if name == "multisensory_local":
        # Sized so a width-0.25 shift net learns synchronisation in minutes on a CPU: 56x56 frames
        # (48-pixel crops) with large, near objects, 3-frame flashes and onsets >= 0.25 s apart;
        # 8 s leaves room for shifted negatives.
        return WorldConfig(duration_s=8.0, fps=15.0, height=56, width=56, sample_rate=11025,
                           num_channels=2, object_radius=(0.16, 0.24), depth_range=(1.0, 1.6),
                           flash_frames=3, event_rate_hz=2.0, min_event_gap_s=0.25,
                           video_encoding="raw")  # no JPEG decode competing with the 2 cores
    if name == "asmp":  # ASIW-like: 10 s mono 11025 Hz, 8 fps frames, 10 motion windows, 2048-d features
        return WorldConfig(duration_s=10.0, fps=8.0, height=256, width=256, sample_rate=11025,
                           num_channels=1, num_offscreen=(0, 1), num_distractors=(2, 5), flash_frames=1,
                           num_features=2048)
    if name == "asmp_local":
        # CPU-sized ASMP world: one sounding object per video (the principal; no off-screen
        # source, so a video's sound is what its graph shows), silent distractors as context,
        # and louder motion cues (loudness ∝ 1/d², fixed event gains, strong Doppler, brighter
        # elevation cue, side- and back-wall motion echoes, the vertical glide) and slower
        # periodic motions, so the direction is audible in a 1-s window.
        return WorldConfig(duration_s=10.0, fps=8.0, height=64, width=64, sample_rate=11025,
                           num_channels=1, num_onscreen=(1, 1), num_offscreen=(0, 0),
                           num_distractors=(1, 3), flash_frames=1, video_encoding="raw",
                           event_rate_hz=2.5, min_event_gap_s=0.25, speed_of_sound=0.6,
                           loudness_power=2.0, brightness_gain=2.5, event_gain_jitter=0.0,
                           motion_echoes=True, echo_speed=0.6, echo_gains=(0.6, 0.0, 0.6),
                           y_glide=12.0, motion_period_s=(3.0, 5.0), zigzag_period_s=(2.0, 3.0))
    if name == "separation_local":
        # CPU-sized on/off-screen separation world (configs/sep_*.py:local): one sounding object
        # per clip (the partner clip's object is the off-screen sound, same families), a silent
        # distractor half the time so "which object flashes" matters, 3-s clips (a 2.1-s window
        # with room to move), 8 kHz audio and 40x40 frames (32-pixel crops) with large near
        # objects and 3-frame flashes. Generates in ~10 ms per clip.
        return WorldConfig(duration_s=3.0, fps=15.0, height=40, width=40, sample_rate=8000,
                           num_channels=2, num_onscreen=(1, 1), num_offscreen=(0, 0),
                           num_distractors=(0, 1), object_radius=(0.16, 0.24),
                           depth_range=(1.0, 1.6), flash_frames=3, event_rate_hz=2.0,
                           min_event_gap_s=0.25, video_encoding="raw")
    raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")


# ----------------------------------------------------------------------------- scene

@dataclasses.dataclass
class SceneObject:
    kind: str                 # "onscreen", "offscreen" or "distractor"
    family: int               # -1 when silent
    shape: int
    rgb: np.ndarray           # (3,) in 0..255
    radius: float             # fraction of min(H, W) at depth 1
    pattern: str              # a MOTION_CLASSES entry or "wander"
    motion: dict              # pattern parameters
    level: float = 0.0
    sound: dict = dataclasses.field(default_factory=dict)
    events: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def sounding(self) -> bool:
        return self.kind != "distractor"

    @property
    def drawn(self) -> bool:
        return self.kind != "offscreen"


@dataclasses.dataclass
class Scene:
    objects: list[SceneObject]
    label: int
    background: dict


def _reflect(x, lo, hi):
    span = hi - lo
    u = np.mod(x - lo, 2 * span)
    return lo + np.where(u < span, u, 2 * span - u)


def _bounds(config: WorldConfig, radius: float):
    m = min(config.height, config.width) * radius * 1.3 / config.depth_range[0]
    return m / config.width, 1 - m / config.width, m / config.height, 1 - m / config.height


def _sample_motion(rng, pattern: str, config: WorldConfig, radius: float) -> dict:
    xlo, xhi, ylo, yhi = _bounds(config, radius)
    dlo, dhi = config.depth_range
    span = dhi - dlo
    p = {"x": rng.uniform(xlo, xhi), "y": rng.uniform(ylo, yhi), "d": rng.uniform(dlo, dhi),
         "bounds": (xlo, xhi, ylo, yhi), "phase": rng.uniform(0, 2 * np.pi), "period": rng.uniform(*config.motion_period_s)}
    if pattern in ("left_right", "up_down", "circle"):
        a = rng.uniform(0.25, 0.45) * min(xhi - xlo, yhi - ylo)
        p.update(amp=a, x=rng.uniform(xlo + a, xhi - a), y=rng.uniform(ylo + a, yhi - a),
                 sense=rng.choice([-1.0, 1.0]))
    elif pattern == "zigzag":
        p.update(vx=rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.5) * (xhi - xlo),
                 amp=rng.uniform(0.15, 0.3) * (yhi - ylo), period=rng.uniform(*config.zigzag_period_s))
        p["y"] = rng.uniform(ylo + p["amp"], yhi - p["amp"])
    elif pattern in ("approach", "recede"):
        near, far = rng.uniform(dlo, dlo + 0.1 * span), rng.uniform(dhi - 0.1 * span, dhi)
        p.update(d0=far if pattern == "approach" else near, d1=near if pattern == "approach" else far)
    elif pattern == "wander":
        p.update(vx=rng.uniform(-0.12, 0.12), vy=rng.uniform(-0.12, 0.12),
                 vd=rng.uniform(-0.15, 0.15) * span)
    return p


def object_position(obj: SceneObject, t: np.ndarray, config: WorldConfig):
    """(x, y, d) of an object's centre at times t (seconds)."""
    p, t = obj.motion, np.asarray(t, np.float64)
    xlo, xhi, ylo, yhi = p["bounds"]
    x, y, d = np.full_like(t, p["x"]), np.full_like(t, p["y"]), np.full_like(t, p["d"])
    w = 2 * np.pi * t / p["period"] + p["phase"]
    if obj.pattern == "left_right":
        x = p["x"] + p["amp"] * np.sin(w)
    elif obj.pattern == "up_down":
        y = p["y"] + p["amp"] * np.sin(w)
    elif obj.pattern == "circle":
        x, y = p["x"] + p["amp"] * np.cos(w), p["y"] + p["sense"] * p["amp"] * np.sin(w)
    elif obj.pattern == "zigzag":
        x = _reflect(p["x"] + p["vx"] * t, xlo, xhi)
        y = p["y"] + p["amp"] * (2 * np.abs(2 * np.mod(t / p["period"] + p["phase"] / 6.3, 1) - 1) - 1)
    elif obj.pattern in ("approach", "recede"):
        d = p["d0"] + (p["d1"] - p["d0"]) * t / config.duration_s
    elif obj.pattern == "wander":
        x = _reflect(p["x"] + p["vx"] * t, xlo, xhi)
        y = _reflect(p["y"] + p["vy"] * t, ylo, yhi)
        d = _reflect(p["d"] + p["vd"] * t, *config.depth_range)
    return x, y, d


_SOUND_RANGES = {  # per-object (log-uniform) frequency and decay tau; short decays keep onsets distinct
    "tone": ((300, 700), (0.06, 0.15)), "thud": ((70, 140), (0.05, 0.1)),
    "band_noise": ((1500, 3000), (0.03, 0.08)), "hiss": ((600, 1200), (0.06, 0.12)),
    "chirp_up": ((400, 800), (0.06, 0.12)), "clicks": ((25, 60), (0.08, 0.15)),
    "fm": ((500, 1000), (0.08, 0.15)), "buzz": ((110, 220), (0.06, 0.12)),
    "bell": ((500, 900), (0.12, 0.25)), "chirp_down": ((800, 1600), (0.06, 0.12)),
}


def _event_times(rng, config: WorldConfig) -> np.ndarray:
    gap = max(config.min_event_gap_s, (config.flash_frames + 1) / config.fps)
    mean_extra = max(1.0 / config.event_rate_hz - gap, 1e-3)
    times, t = [], rng.uniform(0, 1.0 / config.event_rate_hz)
    while t < config.duration_s - 0.05:
        times.append(t)
        t += gap + rng.exponential(mean_extra)
    if not times:
        times.append(rng.uniform(0, config.duration_s - 0.05))
    return np.asarray(times)


def sample_scene(config: WorldConfig, seed: int, index: int, split: str = "train") -> tuple[Scene, np.random.Generator]:
    """The latent scene of clip `index`, and the generator that renders it (deterministic)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index), WORLD_VERSION])
    n_on = rng.integers(config.num_onscreen[0], config.num_onscreen[1] + 1)
    n_off = rng.integers(config.num_offscreen[0], config.num_offscreen[1] + 1)
    n_dis = rng.integers(config.num_distractors[0], config.num_distractors[1] + 1)
    label = int(rng.integers(len(MOTION_CLASSES)))
    lo, hi = config.num_onscreen
    p_pattern = float(np.mean([1.0 / k for k in range(lo, hi + 1)]))
    objects = []
    for i, kind in enumerate(["onscreen"] * n_on + ["offscreen"] * n_off + ["distractor"] * n_dis):
        look = int(rng.integers(config.num_families))
        family = look if kind != "distractor" else -1
        hue = (look / len(FAMILIES) + rng.uniform(-0.03, 0.03)) % 1.0  # looks sharing a shape differ by 0.5 in hue
        rgb = _hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 0.85)) * 255
        radius = rng.uniform(*config.object_radius)
        if i == 0:
            pattern = MOTION_CLASSES[label]
        elif kind == "offscreen" and rng.uniform() < p_pattern:  # as often as a visible source has one
            pattern = MOTION_CLASSES[int(rng.integers(len(MOTION_CLASSES)))]
        else:
            pattern = "wander"
        obj = SceneObject(kind, family, look % len(SHAPES), rgb, radius, pattern,
                          _sample_motion(rng, pattern, config, radius))
        if obj.sounding:
            (flo, fhi), (tlo, thi) = _SOUND_RANGES[FAMILIES[family]]
            obj.sound = {"f": math.exp(rng.uniform(math.log(flo), math.log(fhi))), "tau": rng.uniform(tlo, thi)}
            obj.level = rng.uniform(0.5, 1.0)
            obj.events = _event_times(rng, config)
        objects.append(obj)
    bg = {"rgb": _hsv_to_rgb(rng.uniform(), rng.uniform(0.1, 0.4), rng.uniform(0.25, 0.45)) * 255,
          "period": rng.uniform(8, 20, size=2), "phase": rng.uniform(0, 2 * np.pi, size=3),
          "light_period": rng.uniform(5, 10)}
    return Scene(objects, label, bg), rng


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


# ----------------------------------------------------------------------------- audio

def _sines(t, freqs, amps, sr, decays=None):
    out = np.zeros_like(t)
    for k, (f, a) in enumerate(zip(freqs, amps)):
        if f < 0.45 * sr:
            out += a * np.sin(2 * np.pi * f * t) * (1 if decays is None else decays[k])
    return out


def _shaped_noise(n, sr, rng, gain):
    spec = np.fft.rfft(rng.standard_normal(n)) * gain(np.fft.rfftfreq(n, 1.0 / sr))
    return np.fft.irfft(spec, n)


def _event_sound(family: str, p: dict, sr: int, fs: float, rng) -> np.ndarray:
    """One event of a family; fs scales every frequency (pitch jitter x Doppler)."""
    tau, f = p["tau"], p["f"] * fs
    n = int(min(4 * tau, 0.4) * sr)
    t = np.arange(n) / sr
    env = np.minimum(1.0, t / 0.002) * np.exp(-t / tau)
    dur = n / sr
    if family == "tone":
        s = _sines(t, [f, 2 * f, 3 * f], [1, 0.5, 0.25], sr)
    elif family == "thud":
        s = np.sin(2 * np.pi * f * (t + 0.0225 * (1 - np.exp(-t / 0.015))))
        s += 0.3 * rng.standard_normal(n) * (t < 0.003)
    elif family == "band_noise":
        s = _shaped_noise(n, sr, rng, lambda fr: np.exp(-0.5 * ((fr - f) / (f / 4)) ** 2))
    elif family == "hiss":
        s = _shaped_noise(n, sr, rng, lambda fr: 1 / (1 + (fr / f) ** 4))
    elif family in ("chirp_up", "chirp_down"):
        k = 1.5 if family == "chirp_up" else -0.6   # f(t) = f (1 + k t / dur)
        ok = f * (1 + max(k, 0)) < 0.45 * sr
        s = np.sin(2 * np.pi * f * (t + 0.5 * k * t * t / dur)) if ok else np.zeros(n)
    elif family == "clicks":
        s = np.zeros(n)
        kt = np.arange(int(0.005 * sr)) / sr
        kernel = np.exp(-kt / 0.0015) * np.sin(2 * np.pi * min(2000 * fs, 0.4 * sr) * kt)
        for start in (np.arange(0, dur, 1.0 / f) * sr).astype(int):
            seg = kernel[: n - start]
            s[start:start + len(seg)] += seg
    elif family == "fm":
        s = np.sin(2 * np.pi * f * t + 3 * env * np.sin(2 * np.pi * 1.41 * f * t))
    elif family == "buzz":
        s = _sines(t, [k * f for k in range(1, 11)], [1 / k for k in range(1, 11)], sr)
    elif family == "bell":
        ratios, amps = (1, 2.76, 5.40, 8.93), (1, 0.6, 0.4, 0.25)
        s = _sines(t, [r * f for r in ratios], amps, sr, [np.exp(-t * (j * 0.5) / tau) for j in range(4)])
    else:
        raise ValueError(f"unknown sound family {family!r}")
    s = s * env
    return s / (np.abs(s).max() + 1e-9)


def _glide(s: np.ndarray, rate: float, sr: int) -> np.ndarray:
    """The event read at a steadily changing speed: every frequency × (1 + rate · t)."""
    t = np.arange(len(s)) / sr
    tau = t + 0.5 * rate * t * t
    return np.interp(tau, t, s, right=0.0) if rate else s


MOTION_ECHO_DELAYS_S = (0.045, 0.09, 0.135)   # side wall, floor, back wall


def _motion_echoes(s, family, sound, pitch, vx, vy, vd, config: WorldConfig, rng) -> np.ndarray:
    """Direct sound + wall echoes (side wall, floor, back wall; delays MOTION_ECHO_DELAYS_S, gains
    config.echo_gains, a zero gain drops that wall), each pitched × 1/(1 + v/c_e) relative to
    the direct sound, v = −vx, +vy, −vd (the velocity towards that wall shortens the echo's
    path), c_e = echo_speed."""
    sr = config.sample_rate
    out = np.concatenate([s, np.zeros(int(MOTION_ECHO_DELAYS_S[-1] * sr) + int(0.4 * sr))])
    for delay_s, v, gain in zip(MOTION_ECHO_DELAYS_S, (-vx, vy, -vd), config.echo_gains):
        if gain:
            f = float(np.clip(1.0 / (1.0 + v / config.echo_speed), 0.6, 1.6))
            e = _event_sound(family, sound, sr, pitch * f, rng)
            i0 = int(delay_s * sr)
            out[i0:i0 + len(e)] += gain * e
    return out


def render_audio(scene: Scene, config: WorldConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stems (S, N, C) float32 and the event onset matrix (S, E) (seconds, -1 padding)."""
    sr, n = config.sample_rate, config.num_samples
    ctrl_t = np.arange(0, config.duration_s + 0.02, 0.005)
    audio_t = np.arange(n) / sr
    stems, events = [], []
    for obj in (o for o in scene.objects if o.sounding):
        dry = np.zeros(n)
        family = FAMILIES[obj.family]
        for t0 in obj.events:
            x, y, d = object_position(obj, np.array([t0, t0 + 1e-3]), config)
            v_r = (d[1] - d[0]) / 1e-3
            doppler = np.clip(1.0 / (1.0 + v_r / config.speed_of_sound), 0.7, 1.4)
            pitch = doppler * math.exp(rng.normal(0, 0.02))
            s = _event_sound(family, obj.sound, sr, pitch, rng)
            if config.y_glide:
                s = _glide(s, float(np.clip(-config.y_glide * (y[1] - y[0]) / 1e-3, -2.0, 2.0)), sr)
            s = s + config.brightness_gain * (0.5 - y[0]) * np.diff(s, prepend=0.0) * (sr / 6000)  # elevation
            if config.motion_echoes:
                s = _motion_echoes(s, family, obj.sound, pitch, (x[1] - x[0]) / 1e-3,
                                   (y[1] - y[0]) / 1e-3, v_r, config, rng)
            else:
                ea, eb = config.echo_delay_ms
                delay = int(round((ea + eb * np.clip(x[0], 0, 1)) * 1e-3 * sr))  # x → side-wall echo
                s = np.concatenate([s, np.zeros(delay)])
                s[delay:] += 0.35 * s[:-delay].copy()
            i0 = int(round(t0 * sr))
            seg = s[: n - i0] * rng.uniform(1.0 - config.event_gain_jitter, 1.0)
            dry[i0:i0 + len(seg)] += seg
        x, _, d = (np.interp(audio_t, ctrl_t, q) for q in object_position(obj, ctrl_t, config))
        wet = dry * (obj.level * (config.depth_range[0] / d) ** config.loudness_power)  # loudness ∝ 1/d
        if config.num_channels == 2:
            theta = np.clip(x, 0, 1) * (np.pi / 2)                                # constant-power pan
            wet = np.stack([wet * np.cos(theta), wet * np.sin(theta)], -1) * np.sqrt(2)
        else:
            wet = wet[:, None]
        stems.append(wet.astype(np.float32))
        events.append(obj.events)
    e_max = max(len(e) for e in events)
    event_mat = np.full((len(events), e_max), -1.0, np.float32)
    for i, e in enumerate(events):
        event_mat[i, : len(e)] = e
    return np.stack(stems), event_mat


# ----------------------------------------------------------------------------- video

def _sdf(shape: int, dx, dy, r):
    if shape == 0:
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == 1:
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    if shape == 2:
        return np.maximum(np.abs(dx) * 0.866 - dy * 0.5, dy) - 0.5 * r
    if shape == 3:
        return np.abs(np.sqrt(dx * dx + dy * dy) - 0.7 * r) - 0.3 * r
    return (np.abs(dx) + np.abs(dy) - r) * 0.7071


def _draw(img: np.ndarray, shape: int, cx: float, cy: float, r: float, rgb: np.ndarray) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
    y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    alpha = np.minimum(np.maximum(0.5 - _sdf(shape, dx, dy, r), 0), 1)[..., None]
    shade = (1.0 - 0.25 * np.minimum((dx * dx + dy * dy) * np.float32(1 / (r * r)), 1))[..., None]
    patch = img[y0:y1, x0:x1]
    patch += alpha * (rgb * shade - patch)


def _background(scene: Scene, config: WorldConfig, rng):
    """A textured canvas 1.5x the frame, and per-frame crop offsets and lighting."""
    h, w = config.height, config.width
    ch, cw = int(h * 1.5), int(w * 1.5)
    gh, gw = max(2, ch // 8), max(2, cw // 8)
    coarse = rng.uniform(-1, 1, size=(gh, gw, 1)) + 0.3 * rng.uniform(-1, 1, size=(gh, gw, 3))
    # bilinear upsample of the coarse noise
    yi, xi = np.linspace(0, gh - 1, ch), np.linspace(0, gw - 1, cw)
    y0, x0 = np.floor(yi).astype(int), np.floor(xi).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    fy, fx = (yi - y0)[:, None, None], (xi - x0)[None, :, None]
    tex = ((coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x1] * fx) * (1 - fy)
           + (coarse[y1][:, x0] * (1 - fx) + coarse[y1][:, x1] * fx) * fy)
    yy, xx = np.mgrid[0:ch, 0:cw]
    k = rng.uniform(2, 6, size=2) * 2 * np.pi
    grating = np.sin(xx / cw * k[0] + yy / ch * k[1])[..., None]
    canvas = scene.background["rgb"] * (1 + 0.25 * tex + 0.08 * grating)
    canvas = np.clip(canvas, 0, 255).astype(np.float32)
    t = np.arange(config.num_frames) / config.fps
    bg = scene.background
    oy = np.round((ch - h) / 2 * (1 + 0.9 * np.sin(2 * np.pi * t / bg["period"][0] + bg["phase"][0]))).astype(int)
    ox = np.round((cw - w) / 2 * (1 + 0.9 * np.sin(2 * np.pi * t / bg["period"][1] + bg["phase"][1]))).astype(int)
    light = 1 + 0.06 * np.sin(2 * np.pi * t / bg["light_period"] + bg["phase"][2])
    return canvas, oy, ox, light


def render_video(scene: Scene, config: WorldConfig, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 video (T, H, W, 3), boxes (T, O, 4) (-1 if not drawn) and depth (T, O) of all objects."""
    h, w, t_n, size = config.height, config.width, config.num_frames, min(config.height, config.width)
    frame_t = np.arange(t_n) / config.fps
    n_obj = len(scene.objects)
    pos = np.stack([np.stack(object_position(o, frame_t, config), -1) for o in scene.objects], 1)  # (T,O,3)
    flash = np.zeros((t_n, n_obj))
    ramp = np.linspace(1.0, 0.3, config.flash_frames) if config.flash_frames > 1 else np.ones(1)
    for j, obj in enumerate(scene.objects):
        if obj.kind == "onscreen":
            for t0 in obj.events:
                k = int(math.floor(t0 * config.fps + 1e-9))
                m = min(t_n - k, config.flash_frames)
                if m > 0:
                    flash[k:k + m, j] = np.maximum(flash[k:k + m, j], ramp[:m])
    radius_px = np.array([o.radius for o in scene.objects]) * size / pos[..., 2] * (1 + 0.3 * flash)
    cx, cy = pos[..., 0] * w, pos[..., 1] * h
    boxes = np.clip(np.stack([(cx - radius_px) / w, (cy - radius_px) / h,
                              (cx + radius_px) / w, (cy + radius_px) / h], -1), 0, 1).astype(np.float32)
    boxes[:, [not o.drawn for o in scene.objects]] = -1.0
    canvas, oy, ox, light = _background(scene, config, rng)
    noise = rng.normal(0, config.pixel_noise, size=(4, h, w, 3)).astype(np.float32) if config.pixel_noise > 0 else None
    noise_pick = rng.integers(0, 4, size=t_n)
    video = np.empty((t_n, h, w, 3), np.uint8)
    drawn = [j for j, o in enumerate(scene.objects) if o.drawn]
    white = np.full(3, 255.0)
    for k in range(t_n):
        img = canvas[oy[k]:oy[k] + h, ox[k]:ox[k] + w] * np.float32(light[k])
        for j in sorted(drawn, key=lambda j: -pos[k, j, 2]):
            obj = scene.objects[j]
            rgb = obj.rgb + (white - obj.rgb) * 0.85 * flash[k, j]
            _draw(img, obj.shape, cx[k, j], cy[k, j], radius_px[k, j], rgb.astype(np.float32))
        if noise is not None:
            img += noise[noise_pick[k]]
        np.clip(img, 0, 255, out=img)
        video[k] = img
    return video, boxes, pos[..., 2].astype(np.float32)


def _features(scene: Scene, config: WorldConfig, rng) -> np.ndarray:
    """Appearance descriptors of drawn objects, as a detector would give (no labels inside)."""
    c = 24
    grid = np.arange(c, dtype=np.float32) + 0.5 - c / 2
    dx, dy = grid[None, :], grid[:, None]
    rad = np.sqrt(dx * dx + dy * dy)
    rows = []
    for obj in scene.objects:
        alpha = np.clip(0.5 - _sdf(obj.shape, dx, dy, c * 0.4), 0, 1)
        shade = 1.0 - 0.25 * np.clip(rad * rad / (c * 0.4) ** 2, 0, 1)
        pix = (obj.rgb[None, None, :] * shade[..., None]).reshape(-1, 3)
        wgt = alpha.ravel() / alpha.sum()
        hist = np.concatenate([np.histogram(pix[:, i], bins=8, range=(0, 256), weights=wgt)[0] for i in range(3)])
        m = lambda a, b: float(np.sum(alpha * (dx / c) ** a * (dy / c) ** b) / alpha.sum())
        moments = [m(2, 0), m(0, 2), m(1, 1), m(3, 0), m(0, 3), alpha.sum() / c ** 2]
        profile = np.histogram(rad.ravel(), bins=6, range=(0, c / 2), weights=alpha.ravel())[0]
        profile = profile / (np.histogram(rad.ravel(), bins=6, range=(0, c / 2))[0] + 1e-9)
        size = obj.radius / np.mean(object_position(obj, np.linspace(0, config.duration_s, 5), config)[2])
        rows.append(np.concatenate([hist, 10 * np.asarray(moments), profile, [10 * size]]))
    raw = np.asarray(rows, np.float64)
    proj = np.random.default_rng(1234).normal(0, 1 / math.sqrt(raw.shape[1]), size=(raw.shape[1], config.num_features))
    feats = raw @ proj + rng.normal(0, config.feature_noise, size=(len(rows), config.num_features))
    feats[[not o.drawn for o in scene.objects]] = 0
    return feats.astype(np.float32)


# ----------------------------------------------------------------------------- clips

def generate_clip(config: WorldConfig, *, seed: int, index: int, split: str = "train",
                  name: str = "synthetic") -> dict:
    """The clip dict (records.encode_example input) of clip `index`."""
    scene, rng = sample_scene(config, seed, index, split)
    objs, o_max, t_n = scene.objects, config.max_objects, config.num_frames
    stems, event_mat = render_audio(scene, config, rng)
    mix = stems.sum(0)
    peak = float(np.abs(mix).max())
    gain = config.mix_peak / peak if peak > config.mix_peak else 1.0
    stems, mix = stems * np.float32(gain), mix * np.float32(gain)
    video, obj_boxes, obj_depth = render_video(scene, config, rng)
    feats = _features(scene, config, rng)

    n = len(objs)
    on_idx = [j for j, o in enumerate(objs) if o.kind == "onscreen"]
    boxes = np.full((t_n, config.num_onscreen[1], 4), -1.0, np.float32)
    boxes[:, : len(on_idx)] = obj_boxes[:, on_idx]
    pad_boxes = np.full((t_n, o_max, 4), -1.0, np.float32)
    pad_boxes[:, :n] = obj_boxes
    depth = np.full((t_n, o_max), -1.0, np.float32)
    depth[:, :n] = obj_depth
    info = np.zeros((o_max, 4), np.float32)
    info[:, 0] = -1
    for j, o in enumerate(objs):
        info[j] = (o.family, o.sounding, o.kind == "onscreen", 1)
    features = np.zeros((o_max, config.num_features), np.float32)
    features[:n] = feats

    windows = int(math.floor(config.duration_s + 1e-6))
    wt = np.arange(windows + 1, dtype=np.float64)
    xyz = np.stack([np.stack(object_position(o, wt, config), -1) for o in objs])  # (n, W+1, 3)
    scale = np.array([10.0, 10.0, 10.0 / (config.depth_range[1] - config.depth_range[0])])
    motion = np.zeros((o_max, windows, 3), np.float32)
    motion[:n] = np.diff(xyz, axis=1) * scale
    lifted = np.stack([(xyz[..., 0] - 0.5) * xyz[..., 2], (xyz[..., 1] - 0.5) * xyz[..., 2], xyz[..., 2]], -1)
    lifted = lifted[:, :windows].transpose(1, 0, 2)  # (W, n, 3)
    distance = np.full((windows, o_max, o_max), np.nan, np.float32)
    distance[:, :n, :n] = np.linalg.norm(lifted[:, :, None] - lifted[:, None], axis=-1)

    return {
        "id": f"{name}-{split}-s{seed}-{index:07d}",
        "label": scene.label,
        "label_name": MOTION_CLASSES[scene.label],
        "video": video,
        "video_encoding": config.video_encoding,
        "jpeg_quality": config.jpeg_quality,
        "fps": config.fps,
        "audio": mix,
        "sample_rate": config.sample_rate,
        "sources": stems,
        "sources_onscreen": [o.kind == "onscreen" for o in objs if o.sounding],
        "arrays": {"boxes": boxes, "object_boxes": pad_boxes, "object_depth": depth, "object_info": info,
                   "object_features": features, "motion": motion, "object_distance": distance,
                   "event_times": event_mat, "mix_peak": np.float32([peak]), "mix_gain": np.float32([gain])},
    }


def generate_example(config: WorldConfig, *, seed: int, index: int, split: str = "train",
                     name: str = "synthetic") -> bytes:
    return records.encode_example(generate_clip(config, seed=seed, index=index, split=split, name=name))


def _example_job(args) -> bytes:
    config, seed, index, split, name = args
    return generate_example(config, seed=seed, index=index, split=split, name=name)


def generate_dataset(out_dir: str, config: WorldConfig, num_clips: int, split: str = "train",
                     seed: int = 0, name: str = "synthetic", num_shards: int | None = None,
                     workers: int = 1, force: bool = False) -> str:
    """Writes num_clips clips as records; returns the manifest path. Reuses a matching data set."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    spec = {"world_version": WORLD_VERSION, "config": config.to_dict(), "seed": int(seed),
            "num_clips": int(num_clips), "split": split, "name": name}
    spec = json.loads(json.dumps(spec))  # tuples -> lists, as read back from JSON
    mpath = records.manifest_path(out_dir, name, split)
    if not force and os.path.isfile(mpath):
        try:
            old = records.read_manifest(mpath)
            if old.get("metadata", {}).get("synthetic") == spec and all(
                    os.path.isfile(os.path.join(out_dir, s["file"])) for s in old["shards"]):
                return mpath
        except ValueError:
            pass
    metadata = {"synthetic": spec, "sample_rate": config.sample_rate, "num_channels": config.num_channels,
                "fps": config.fps, "height": config.height, "width": config.width,
                "num_frames": config.num_frames, "num_samples": config.num_samples,
                "motion_classes": list(MOTION_CLASSES), "families": list(FAMILIES[: config.num_families])}
    jobs = [(config, seed, i, split, name) for i in range(num_clips)]
    with records.ShardWriter(out_dir, name, split, num_shards=num_shards, num_examples=num_clips,
                             metadata=metadata,
                             sources=[f"synthetic world v{WORLD_VERSION}, seed {seed}"]) as writer:
        for data in records.parallel_encode(_example_job, jobs, workers, chunksize=4):
            writer.write(data)
    return mpath


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.synthetic",
                                     description="Write the synthetic audio-visual world as record shards.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--num_clips", type=int, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="synthetic")
    parser.add_argument("--preset", default="multisensory_local", choices=PRESET_NAMES)
    parser.add_argument("--num_shards", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="regenerate even if a matching set exists")
    args = parser.parse_args(argv)
    if args.num_clips < 1:
        parser.error(f"--num_clips must be >= 1, got {args.num_clips}")
    if args.num_shards is not None and args.num_shards < 1:
        parser.error(f"--num_shards must be >= 1, got {args.num_shards}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    start = time.time()
    try:
        mpath = generate_dataset(args.out, preset(args.preset), args.num_clips, args.split, args.seed,
                                 args.name, args.num_shards, args.workers, args.force)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.num_clips} clips of {args.preset} in {mpath} ({time.time() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
