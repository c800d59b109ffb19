"""`python -m avjax.export --workdir=DIR --out=PATH`: parameters + model state + resolved config,
loadable without the training loop:

    from avjax.export import load
    exported = load(PATH)            # .config, .variables ({"params", "batch_stats"}), .step
    out = exported.task.model.apply(exported.variables, ...)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from avjax.config_cli import config_from_json, config_to_json, parse_command_line
from avjax.errors import UserError, cli

FORMAT = "avjax-export-v1"


@dataclasses.dataclass
class Exported:
    config: Any
    variables: dict
    step: int
    meta: dict

    @property
    def task(self):
        from avjax import tasks
        return tasks.load(self.config)


def read_workdir_config(workdir: str):
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise UserError(f"{workdir!r} has no config.json: not an avjax workdir (train with "
                        f"python -m avjax.main --config=... --workdir={workdir})")
    with open(path) as f:
        return config_from_json(f.read())


def restore_latest(workdir: str, config=None, step: int | None = None):
    """(trainer, state, step) from DIR's newest checkpoint, or the one at `step`."""
    from avjax import checkpointing
    from avjax.train import Trainer
    config = config or read_workdir_config(workdir)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 1000)
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise UserError(f"no checkpoint in {workdir}/checkpoints (train first, or wait for "
                        f"checkpoint_every steps)")
    trainer = Trainer(config)
    state = ckpt.restore(step, trainer.abstract_target())
    ckpt.close()
    return trainer, state, step


def export(workdir: str, out: str) -> str:
    trainer, state, step = restore_latest(workdir)
    variables = jax.device_get({"params": state.params, **state.model_state})
    n_params = int(sum(np.size(x) for x in jax.tree.leaves(variables["params"])))
    if jax.process_index() != 0:
        return out
    tmp = out.rstrip("/") + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(os.path.join(os.path.abspath(tmp), "variables"), variables)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        f.write(config_to_json(trainer.config))
    meta = {"format": FORMAT, "task": str(trainer.config.task), "step": int(step),
            "num_params": n_params}
    with open(os.path.join(tmp, "export.json"), "w") as f:
        json.dump(meta, f, indent=2)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load(path: str) -> Exported:
    meta_path = os.path.join(path, "export.json")
    if not os.path.exists(meta_path):
        raise UserError(f"{path!r} is not an avjax export (no export.json); make one with "
                        f"python -m avjax.export --workdir=DIR --out={path}")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path!r} has export format {meta.get('format')!r}, expected {FORMAT}")
    with open(os.path.join(path, "config.json")) as f:
        config = config_from_json(f.read())
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(os.path.join(os.path.abspath(path), "variables"))
    return Exported(config=config, variables=variables, step=int(meta["step"]), meta=meta)


@cli
def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    unknown = set(flags) - {"workdir", "out"}
    if unknown or not flags.get("workdir") or not flags.get("out"):
        raise UserError("usage: python -m avjax.export --workdir=DIR --out=PATH")
    out = export(flags["workdir"], flags["out"])
    print(f"exported to {out}")


if __name__ == "__main__":
    main()
