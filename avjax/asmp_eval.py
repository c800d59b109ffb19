"""Host side of ASMP's evaluation (spec/asmp.md §8): bss_eval SDR/SIR/SAR, the swapped-graph
and blanked-graph ablations, trivial baselines, direction accuracy per video position, the
majority-class baseline, a confusion-matrix PNG and a markdown table.

Rows with weight 0 (the padding of the last evaluation batch) are skipped. SDR/SIR/SAR are
bss_eval_sources without permutation (filter length 512, as mir_eval), computed per pair on the
two clips trimmed to the pair's length, averaged over the two sources, then over pairs; pairs
where a reference is silent are counted in ``skipped_pairs``; an all-zero or non-finite
estimate of one variant is left out of that variant's mean (counted in ``undefined_<variant>``). The backend
is fast_bss_eval on torch tensors (the same definitions as mir_eval.separation.bss_eval_sources,
much faster; mir_eval when torch is missing); data.bss_backend=mir_eval uses mir_eval itself.

Majority-class baseline: accuracy of always predicting the most frequent direction class of the
evaluated labels (an upper bound on any constant predictor).
"""
from __future__ import annotations

import os

import numpy as np

VARIANTS = {"": "est", "_swapped": "est_swapped", "_blank": "est_blank",
            "_slot_sum": "est_slot_sum", "_oracle_irm": "oracle", "_mixture": "mix"}


def bss_eval(ref: np.ndarray, est: np.ndarray, backend: str = "fast_bss_eval"):
    """(2, L) references and estimates → (sdr, sir, sar) arrays of 2, no permutation."""
    if backend == "mir_eval":
        import mir_eval
        sdr, sir, sar, _ = mir_eval.separation.bss_eval_sources(ref, est, compute_permutation=False)
        return sdr, sir, sar
    try:
        # fast_bss_eval's numpy path breaks on numpy >= 2 (np.linalg.solve's 1-D rule changed);
        # its torch path is fine. Without torch, mir_eval (same numbers, ~4x slower).
        import fast_bss_eval
        import torch
    except ImportError:
        return bss_eval(ref, est, "mir_eval")
    out = fast_bss_eval.bss_eval_sources(torch.from_numpy(ref.astype(np.float64)),
                                         torch.from_numpy(est.astype(np.float64)),
                                         compute_permutation=False)
    return tuple(o.numpy() for o in out)


class Evaluator:
    def __init__(self, num_direction_classes: int = 28, sample_rate: int = 11025,
                 backend: str = "fast_bss_eval"):
        self.c = int(num_direction_classes)
        self.backend = backend
        self.sums = {k: np.zeros(3) for k in VARIANTS}
        self.counts = {k: 0 for k in VARIANTS}
        self.pairs = 0
        self.skipped = 0
        self.confusion = np.zeros((self.c, self.c), np.int64)
        self.dir_correct = np.zeros(2)
        self.dir_total = np.zeros(2)
        self.cls_correct = 0.0
        self.cls_total = 0.0

    def update(self, out) -> None:
        out = {k: np.asarray(v) for k, v in out.items()}
        for i in np.nonzero(out["weight"] > 0)[0]:
            n = int(out["length"][i])
            ref = out["ref"][i, :, :n]
            if np.any(np.abs(ref).max(-1) < 1e-6):
                self.skipped += 1
            else:
                self.pairs += 1
                for suffix, key in VARIANTS.items():
                    est = out[key][i, ..., :n]
                    if est.ndim == 1:
                        est = np.stack([est, est])
                    if np.any(np.abs(est).max(-1) < 1e-9):
                        continue          # an all-zero estimate: bss_eval is undefined
                    with np.errstate(all="ignore"):
                        v = np.stack(bss_eval(ref, est, self.backend)).mean(-1)
                    if np.all(np.isfinite(v)):
                        self.sums[suffix] += v
                        self.counts[suffix] += 1
            pred = out["dir_logits"][i].argmax(-1)             # (2, P)
            for v in range(2):
                for p in range(pred.shape[1]):
                    if out["dir_valid"][i, v, p] > 0:
                        t = int(out["dir"][i, v, p])
                        self.confusion[t, int(pred[v, p])] += 1
                        self.dir_correct[v] += float(pred[v, p] == t)
                        self.dir_total[v] += 1
            cpred = out["cls_logits"][i].argmax(-1)
            self.cls_correct += float(((cpred == out["cls"][i]) * out["cls_valid"][i]).sum())
            self.cls_total += float(out["cls_valid"][i].sum())

    def result(self) -> dict:
        r: dict = {}
        for suffix, s in self.sums.items():
            if self.counts[suffix]:
                for j, name in enumerate(("sdr", "sir", "sar")):
                    r[f"{name}{suffix}"] = float(s[j] / self.counts[suffix])
            if self.counts[suffix] < self.pairs:   # all-zero or non-finite: left out of the mean
                r[f"undefined{suffix or '_model'}"] = float(self.pairs - self.counts[suffix])
        if "sdr" in r and "sdr_swapped" in r:
            r["sdr_gain_over_swapped"] = r["sdr"] - r["sdr_swapped"]
        r["num_pairs"] = float(self.pairs)
        r["skipped_pairs"] = float(self.skipped)
        tot = self.dir_total.sum()
        if tot:
            r["direction_accuracy"] = float(self.dir_correct.sum() / tot)
            for v in range(2):
                if self.dir_total[v]:
                    r[f"direction_accuracy_pos{v}"] = float(self.dir_correct[v] / self.dir_total[v])
            r["direction_majority_baseline"] = float(self.confusion.sum(1).max() / tot)
            r["direction_majority_class"] = float(self.confusion.sum(1).argmax())
        if self.cls_total:
            r["class_accuracy"] = float(self.cls_correct / self.cls_total)
        return r

    def write_report(self, out_dir: str, step: int, metrics: dict) -> None:
        os.makedirs(out_dir, exist_ok=True)
        png = os.path.join(out_dir, f"{step}_direction_confusion.png")
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            cm = self.confusion.astype(np.float64)
            rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            fig, ax = plt.subplots(figsize=(7, 6))
            im = ax.imshow(rows, cmap="viridis", vmin=0, vmax=1)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
            ax.set_title(f"direction confusion (row-normalised), step {step}")
            fig.colorbar(im, ax=ax)
            fig.tight_layout()
            fig.savefig(png, dpi=90)
            plt.close(fig)
        except Exception as e:  # a plotting problem must not lose the numbers
            png = f"(no PNG: {e})"
        m = metrics
        lines = [f"# ASMP evaluation, step {step}", "",
                 f"{int(m.get('num_pairs', 0))} pairs ({int(m.get('skipped_pairs', 0))} skipped: "
                 f"silent reference)", "",
                 "| estimate | SDR (dB) | SIR (dB) | SAR (dB) |", "|---|---|---|---|"]
        names = {"": "model (own graph)", "_swapped": "model, graphs swapped",
                 "_blank": "model, visual input blanked",
                 "_slot_sum": "model, object + background slots summed (diagnostic)",
                 "_oracle_irm": "oracle ideal ratio mask",
                 "_mixture": "mixture as estimate"}
        for suffix, label in names.items():
            if f"sdr{suffix}" in m:
                lines.append(f"| {label} | {m[f'sdr{suffix}']:.2f} | {m[f'sir{suffix}']:.2f} | "
                             f"{m[f'sar{suffix}']:.2f} |")
        if "direction_accuracy" in m:
            lines += ["", "| direction | accuracy |", "|---|---|",
                      f"| video position 0 | {m.get('direction_accuracy_pos0', float('nan')):.3f} |",
                      f"| video position 1 | {m.get('direction_accuracy_pos1', float('nan')):.3f} |",
                      f"| average | {m['direction_accuracy']:.3f} |",
                      f"| majority-class baseline (class {int(m['direction_majority_class'])}) | "
                      f"{m['direction_majority_baseline']:.3f} |", "",
                      f"{self.c} direction classes; confusion matrix: {os.path.basename(png)}"]
        if "class_accuracy" in m:
            lines += ["", f"audio-class accuracy of the classifier: {m['class_accuracy']:.3f}"]
        with open(os.path.join(out_dir, f"{step}_report.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
