"""DIR/metrics.jsonl (the contract other tools read) and TensorBoard events; process 0 only."""
from __future__ import annotations

import json
import math
import os

import jax


def _plain(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)


class MetricsWriter:
    def __init__(self, workdir: str, resume_step: int | None = None):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if not self.enabled:
            return
        if resume_step is not None and os.path.exists(self.path):
            self._truncate_after(resume_step)
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)  # a fresh run owns its log
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), flush_secs=30)

    def _truncate_after(self, step: int) -> None:
        """Lines logged after the checkpoint we resume from will be logged again: drop them."""
        keep = []
        with open(self.path) as f:
            for line in f:
                try:
                    if json.loads(line)["step"] <= step:
                        keep.append(line)
                except (ValueError, KeyError):
                    pass
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "split": split, **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in metrics.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
