"""Tasks are found by module name (config.task → avjax.tasks.<name>.Task), not a registry."""
import importlib

from avjax.errors import UserError


def load(config):
    name = str(config.task)
    try:
        module = importlib.import_module(f"avjax.tasks.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"avjax.tasks.{name}":
            raise UserError(f"unknown task {name!r}: no module avjax/tasks/{name}.py") from None
        raise
    return module.Task(config)
