"""The CLI contract: --config=FILE[:ARGS], --config.KEY=VALUE, one-line errors."""
import os
import re
import subprocess
import sys

import pytest

from avjax.config_cli import apply_overrides, load_config_file, parse_command_line
from avjax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIFT = os.path.join(ROOT, "configs", "shift.py")


def test_args_and_overrides():
    cfg, flags = parse_command_line([f"--config={SHIFT}:local", "--config.total_steps=7",
                                     "--config.optimizer.lr=0.5", "--config.data.shuffle=false",
                                     "--config.optimizer.decay_steps=(3, 5)", "--workdir=/x"],
                                    extra_flags=("workdir",))
    assert cfg.total_steps == 7 and cfg.optimizer.lr == 0.5 and cfg.data.shuffle is False
    assert cfg.optimizer.decay_steps == (3, 5) and flags == {"workdir": "/x"}
    assert cfg.model.width == 0.25            # the local variant
    paper = load_config_file(SHIFT)
    assert paper.model.width == 1.0 and paper.data.crop_size == 224
    assert load_config_file(SHIFT + ":cam").model.cam_variant


@pytest.mark.parametrize("override, message", [
    ("--config.optimizer.lrr=1", "unknown config key 'optimizer.lrr' (did you mean 'optimizer.lr'?)"),
    ("--config.total_steps=ten", "'ten' is not an integer"),
    ("--config.data.shuffle=maybe", "is not a boolean"),
    ("--config.optimizer=3", "is a group"),
])
def test_bad_overrides(override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_command_line([f"--config={SHIFT}", override])


def test_missing_file_and_flag():
    with pytest.raises(UserError, match="not found"):
        load_config_file("configs/nope.py")
    with pytest.raises(UserError, match="unknown flag --wordkir"):
        parse_command_line([f"--config={SHIFT}", "--wordkir=x"], extra_flags=("workdir",))


def test_main_prints_one_line_and_exits_nonzero(tmp_path):
    r = subprocess.run([sys.executable, "-m", "avjax.main", f"--config={SHIFT}:local",
                        f"--workdir={tmp_path}/w", "--config.modle.width=2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: unknown config key 'modle.width' (did you mean 'model.width'?)"]
    assert not os.path.exists(tmp_path / "w")   # nothing half-written
