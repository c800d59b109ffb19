"""Entry point: `python -m avjax.main --config=configs/<task>.py[:ARGS] --workdir=DIR [--config.KEY=VALUE ...]`.

Only parses the command line; the work is avjax.train.train_and_evaluate.
"""
import sys

from avjax.config_cli import parse_command_line
from avjax.errors import UserError, cli


@cli
def main(argv=None):
    config, flags = parse_command_line(sys.argv[1:] if argv is None else argv,
                                       extra_flags=("workdir",))
    if not flags.get("workdir"):
        raise UserError("missing --workdir=DIR (where checkpoints and metrics.jsonl go)")
    from avjax import train
    try:
        result = train.train_and_evaluate(config, flags["workdir"])
    except KeyboardInterrupt as e:
        print(f"{e or 'interrupted'}; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    if "eval" in result:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in result["eval"].items())
        print(f"final eval: {summary}")


if __name__ == "__main__":
    main()
