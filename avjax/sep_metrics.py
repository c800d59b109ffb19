"""Separation quality on the host: SI-SDR, bss_eval SDR/SIR/SAR, and the evaluator that the
separation task hands to the training loop / `python -m avjax.evaluate`.

bss_eval: fast_bss_eval (numpy backend, 512-tap distortion filters like mir_eval's
bss_eval_sources v3), solved by conjugate gradient (``use_cg_iter``): its direct solver fails
under numpy 2, and CG agrees with mir_eval to ~1e-4 dB (tests/test_sep_metrics.py) at 5× its
speed. Values are clamped to ±100 dB (the mixture as an estimate has no artifacts: SAR = +inf). Rows whose references are silent (no defined SDR) are skipped and counted.
"""
from __future__ import annotations

import json
import os

import numpy as np

METHODS = ("model", "blank", "irm", "mix")          # suffixes: "" for the model
LABELS = {"mix": "mixture as estimate", "irm": "oracle ideal ratio mask",
          "model": "model", "blank": "model, video blanked"}
METRICS = ("sdr", "sir", "sar", "si_sdr", "si_sdri", "spec_l1")


def si_sdr(ref, est, eps: float = 1e-12, xp=np):
    """Scale-invariant SDR in dB (Le Roux et al. 2019) over the last axis, zero-mean signals.
    Host metrics in float64 (xp=numpy); xp=jax.numpy is the differentiable form the separation
    loss uses (model.sisdr_weight)."""
    if xp is np:
        ref = np.asarray(ref, np.float64)
        est = np.asarray(est, np.float64)
    ref = ref - ref.mean(-1, keepdims=True)
    est = est - est.mean(-1, keepdims=True)
    alpha = (ref * est).sum(-1, keepdims=True) / ((ref * ref).sum(-1, keepdims=True) + eps)
    target = alpha * ref
    noise = est - target
    return 10 * xp.log10(((target ** 2).sum(-1) + eps) / ((noise ** 2).sum(-1) + eps))


def bss_eval(refs: np.ndarray, ests: np.ndarray, filter_length: int = 512):
    """(sdr, sir, sar) per source, refs/ests (S, N), estimates already in reference order."""
    import fast_bss_eval
    sdr, sir, sar = fast_bss_eval.bss_eval_sources(
        np.asarray(refs, np.float64), np.asarray(ests, np.float64),
        filter_length=filter_length, use_cg_iter=30, clamp_db=100.0, compute_permutation=False)
    return np.asarray(sdr), np.asarray(sir), np.asarray(sar)


def best_permutation(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """Two sources: ests reordered to the assignment with the larger summed SI-SDR."""
    keep = si_sdr(refs, ests).sum()
    swap = si_sdr(refs, ests[::-1]).sum()
    return ests[::-1] if swap > keep else ests


class SepEvaluator:
    """Accumulates per-example metrics of every method; ``result()`` gives the means.

    full: the on-screen source (fg head) is the headline (keys without prefix); the off-screen
    source's are prefixed "off_". unet_pit: each estimate pair takes its better assignment and
    metrics average both sources. Baselines carry suffixes: _blank (full only), _irm, _mix."""

    def __init__(self, variant: str, sample_rate: int, bss: bool = True):
        self.variant, self.sample_rate, self.bss = variant, sample_rate, bss
        self.rows: list[dict[str, float]] = []
        self.skipped = 0

    def _score(self, refs, ests, mix_si_sdr):
        out = {}
        s = si_sdr(refs, ests)
        out["si_sdr"], out["si_sdri"] = s, s - mix_si_sdr
        if self.bss:
            out["sdr"], out["sir"], out["sar"] = bss_eval(refs, ests)
        return out

    def update(self, outputs) -> None:
        o = {k: np.asarray(v) for k, v in dict(outputs).items()}
        methods = [m for m in METHODS if m in o or m == "mix"]
        for i in np.nonzero(o["weight"] > 0)[0]:
            refs = o["sources"][i].astype(np.float64)
            if not np.all(np.sqrt(np.mean(refs ** 2, axis=-1)) > 1e-6):
                self.skipped += 1
                continue
            mix = o["mix"][i].astype(np.float64)
            mix_si = si_sdr(refs, np.stack([mix, mix]))
            row = {}
            for m in methods:
                ests = np.stack([mix, mix]) if m == "mix" else o[m][i].astype(np.float64)
                if self.variant != "full" and m in ("model", "blank"):
                    ests = best_permutation(refs, ests)
                scores = self._score(refs, ests, mix_si)
                scores["spec_l1"] = np.full(2, float(o[f"spec_l1_{m}"][i]))
                suffix = "" if m == "model" else f"_{m}"
                for k, v in scores.items():
                    if self.variant == "full":
                        row[f"{k}{suffix}"] = float(v[0])
                        if m in ("model", "blank") and k != "spec_l1":
                            row[f"off_{k}{suffix}"] = float(v[1])
                    else:
                        row[f"{k}{suffix}"] = float(np.mean(v))
            self.rows.append(row)

    def result(self) -> dict[str, float]:
        if not self.rows:
            from avjax.errors import UserError
            raise UserError("no held-out mixture could be scored (all references silent?); "
                            "check data.eval_path")
        keys = self.rows[0].keys()
        res = {k: float(np.mean([r[k] for r in self.rows])) for k in keys}
        res["num_examples"] = float(len(self.rows))
        if self.skipped:
            res["skipped_silent"] = float(self.skipped)
        if "si_sdri_irm" in res and res["si_sdri_irm"] > 0:
            res["si_sdri_frac_of_irm"] = res["si_sdri"] / res["si_sdri_irm"]
        return res

    def write_report(self, out_dir: str, step: int, metrics: dict) -> str:
        path = os.path.join(out_dir, f"{step}_separation.md")
        with open(path + ".tmp", "w") as f:
            f.write(report_markdown(self.variant, step, metrics))
        os.replace(path + ".tmp", path)
        return path


def report_markdown(variant: str, step: int, metrics: dict) -> str:
    """The metrics table: one row per method, columns SDR, SIR, SAR, SI-SDR, SI-SDRi, spec L1."""
    what = ("on-screen source (fg head)" if variant == "full"
            else "both sources, best assignment")
    lines = [f"# Separation ({variant}), step {step}", "",
             f"Held-out mixtures: {int(metrics.get('num_examples', 0))}; scores of the {what}, "
             "in dB except spectrogram L1 (normalised dB, [-1, 1] scale).", "",
             "| method | SDR | SIR | SAR | SI-SDR | SI-SDRi | spec L1 |",
             "|---|---|---|---|---|---|---|"]
    for m in ("mix", "irm", "model", "blank"):
        suffix = "" if m == "model" else f"_{m}"
        if f"si_sdr{suffix}" not in metrics:
            continue
        cells = [f"{metrics[f'{k}{suffix}']:.2f}" if f"{k}{suffix}" in metrics else "–"
                 for k in METRICS]
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    if variant == "full" and "off_si_sdr" in metrics:
        lines += ["", "Off-screen source (bg head):", "",
                  "| method | SDR | SIR | SAR | SI-SDR | SI-SDRi |", "|---|---|---|---|---|---|"]
        for m in ("model", "blank"):
            suffix = "" if m == "model" else f"_{m}"
            if f"off_si_sdr{suffix}" in metrics:
                cells = [f"{metrics.get(f'off_{k}{suffix}', float('nan')):.2f}"
                         for k in METRICS[:-1]]
                lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    if "si_sdri_frac_of_irm" in metrics:
        lines += ["", f"Model SI-SDRi / oracle IRM SI-SDRi: {metrics['si_sdri_frac_of_irm']:.2f}"]
    return "\n".join(lines) + "\n"


def write_json(path: str, obj) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
