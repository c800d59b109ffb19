"""`--config=configs/x.py[:args] --config.KEY=VALUE` parsing with one-line errors.

Own loader because ml_collections.config_flags answers a typo'd key with a traceback.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
from typing import Any, Sequence

import ml_collections

from avjax.errors import UserError


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Load `path[:args]` and call its get_config(args)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise UserError(f"config file {path!r} not found (configs live in configs/, e.g. "
                        f"--config=configs/shift.py:local)")
    mod_spec = importlib.util.spec_from_file_location(
        "avjax_config_" + os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(mod_spec)
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    import sys
    if root not in sys.path:  # configs import `configs.common`
        sys.path.insert(0, root)
    mod_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path!r} has no get_config(arg) function")
    return module.get_config(arg or None)


def _all_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        keys.append(prefix + k)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


def _parse_value(key: str, text: str, current: Any) -> Any:
    def bad(kind):
        return UserError(f"bad value for config key {key!r}: {text!r} is not {kind}")

    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise bad("a boolean (true/false)")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if isinstance(current, str):
        return text
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise bad("a tuple like (1, 2)") from None
        if isinstance(value, (int, float)):
            value = (value,)
        if not isinstance(value, (tuple, list)):
            raise bad("a tuple like (1, 2)")
        return type(current)(value)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: dict[str, str]) -> None:
    known = _all_keys(cfg)
    for key, text in overrides.items():
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise UserError(f"unknown config key {key!r}{hint}")
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        if isinstance(node[leaf], ml_collections.ConfigDict):
            raise UserError(f"config key {key!r} is a group; set one of its fields, "
                            f"e.g. --config.{key}.{next(iter(node[leaf].keys()))}=...")
        with node.ignore_type():
            node[leaf] = _parse_value(key, text, node[leaf])


def parse_command_line(argv: Sequence[str], *, extra_flags: Sequence[str] = ()
                       ) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
    """Returns (config with overrides applied, other --flag=value pairs)."""
    spec, overrides, other = None, {}, {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            raise UserError(f"unexpected argument {a!r}; use --config=FILE[:ARGS], "
                            f"--workdir=DIR and --config.KEY=VALUE")
        name, _, value = a[2:].partition("=")
        if name == "config":
            spec = value
        elif name.startswith("config."):
            overrides[name[len("config."):]] = value
        elif name in extra_flags:
            other[name] = value
        else:
            allowed = ", ".join(["--config", "--config.KEY"] + [f"--{f}" for f in extra_flags])
            raise UserError(f"unknown flag --{name} (known: {allowed})")
    if spec is None:
        raise UserError("missing --config=FILE[:ARGS], e.g. --config=configs/shift.py:local")
    cfg = load_config_file(spec)
    apply_overrides(cfg, overrides)
    return cfg, other


def config_to_json(cfg: ml_collections.ConfigDict) -> str:
    return json.dumps(cfg.to_dict(), indent=2, sort_keys=True, default=str)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    def tuples(x):
        if isinstance(x, dict):
            return {k: tuples(v) for k, v in x.items()}
        if isinstance(x, list):
            return tuple(tuples(v) for v in x)
        return x
    return ml_collections.ConfigDict(tuples(json.loads(text)))
