"""`python -m avjax.evaluate --workdir=DIR [--checkpoint=EXPORT] [--config.KEY=VALUE ...]`
→ DIR/eval/<step>.json with the task's held-out metrics.

Without --checkpoint the newest checkpoint of DIR is evaluated; with it, an exported model (DIR is
then only where results go, and defaults to the export folder). Overrides change evaluation, e.g.
--config.data.eval_path=OTHER_RECORDS.
"""
from __future__ import annotations

import os
import sys

import jax

from avjax.config_cli import apply_overrides
from avjax.errors import UserError, cli


def evaluate(workdir: str | None, checkpoint: str | None, overrides: dict[str, str]) -> dict:
    from avjax import export as export_lib, sharding
    from avjax.train import Trainer, write_json
    if checkpoint:
        exported = export_lib.load(checkpoint)
        config = exported.config
        apply_overrides(config, overrides)
        trainer = Trainer(config)
        state = trainer.initial_state()
        variables = exported.variables
        state = state.replace(
            params=sharding.put(variables["params"], trainer.state_sharding.params),
            model_state=sharding.put({k: v for k, v in variables.items() if k != "params"},
                                     trainer.state_sharding.model_state))
        step, out_dir = exported.step, workdir or checkpoint
    else:
        config = export_lib.read_workdir_config(workdir)
        apply_overrides(config, overrides)
        trainer, state, step = export_lib.restore_latest(workdir, config)
        out_dir = workdir
    metrics = trainer.evaluate(state)
    result = {"step": int(step), "task": str(config.task), "metrics": metrics,
              "overrides": overrides}
    if jax.process_index() == 0:
        os.makedirs(os.path.join(out_dir, "eval"), exist_ok=True)
        suffix = "" if not overrides else "-" + "-".join(
            f"{k}={v}" for k, v in sorted(overrides.items())).replace("/", "_")[:120]
        path = os.path.join(out_dir, "eval", f"{step}{suffix}.json")
        write_json(path, result)
        result["path"] = path
        report = getattr(trainer.last_evaluator, "write_report", None)
        if report is not None:
            report(os.path.join(out_dir, "eval"), int(step), metrics)
    return result


@cli
def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    flags, overrides = {}, {}
    for a in args:
        if not a.startswith("--") or "=" not in a:
            raise UserError(f"unexpected argument {a!r}")
        k, v = a[2:].split("=", 1)
        if k.startswith("config."):
            overrides[k[len("config."):]] = v
        elif k in ("workdir", "checkpoint"):
            flags[k] = v
        else:
            raise UserError(f"unknown flag --{k} (known: --workdir, --checkpoint, --config.KEY)")
    if not flags.get("workdir") and not flags.get("checkpoint"):
        raise UserError("usage: python -m avjax.evaluate --workdir=DIR [--checkpoint=EXPORT]")
    result = evaluate(flags.get("workdir"), flags.get("checkpoint"), overrides)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in result["metrics"].items())
    print(f"step {result['step']}: {summary}")
    if "path" in result:
        print(f"wrote {result['path']}")


if __name__ == "__main__":
    main()
