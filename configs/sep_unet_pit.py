"""Blind two-source separation without video (multisensory spec §2, "unet_pit"): the audio-only
U-Net with the permutation-invariant loss; mixtures are the two halves of a batch of clips.

Default: paper size (21 kHz, 128 × 1024 spectrograms, Adam 1e-4, ×0.1 at 120k, 160k steps,
clip 10), batch 12 mixtures (the paper's 24 clips), from scratch, predicted phase.
Train on your own corpus (e.g. speech): convert folders of audio files with
  python -m data_pipelines.audio_folder --in TRAIN_DIR --out RECS --sample_rate 21000
  python -m data_pipelines.audio_folder --in HELD_OUT_DIR --out RECS --split eval
then add --config.data.train_path=RECS/audio-train.manifest.json
--config.data.eval_path=RECS/audio-eval.manifest.json (windows of data.num_frames / data.fps
seconds are cut at random; clips are mixed in pairs).

Args: local — the CPU-sized variant of configs/sep_full.py:local (same front end and U-Net).
"""
from configs.sep_full import separation_config


def get_config(arg=None):
    return separation_config("unet_pit", arg)
