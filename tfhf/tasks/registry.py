"""A name -> task class registry, so new tasks plug into `--task` without touching the CLI."""

from __future__ import annotations

from tfhf.errors import TfhfError

TASKS: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: makes a `Task` subclass available as `--task=<name>`.

    Its config class must name the task as its `task` default, so that a config alone
    says which task it is for.

    Example:
      >>> import dataclasses
      >>> from tfhf.config import TrainConfig
      >>> from tfhf.tasks.task import Task
      >>> @dataclasses.dataclass(frozen=True)
      ... class EchoConfig(TrainConfig):
      ...     task: str = "echo"
      >>> @register_task("echo")
      ... class EchoTask(Task):
      ...     config_class = EchoConfig
      >>> get_task("echo").name, get_task("echo")(EchoConfig()).config.workdir
      ('echo', 'runs/echo')
      >>> del TASKS["echo"]
    """

    def wrap(cls):
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        declared = cls.config_class().task
        if declared != name:
            raise ValueError(
                f"task '{name}': {cls.config_class.__name__}.task defaults to '{declared}'"
            )
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str) -> type:
    """The task class registered as `name`."""
    if name not in TASKS:
        raise TfhfError(f"unknown task '{name}' (tasks: {', '.join(sorted(TASKS))})")
    return TASKS[name]


def import_task_modules(names: str) -> None:
    """Imports the comma-separated modules in `names` (the value of `TFHF_TASK_MODULES`),
    which register their tasks as they load."""
    import importlib

    for module in filter(None, (name.strip() for name in names.split(","))):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise TfhfError(f"TFHF_TASK_MODULES: cannot import {module}: {e}") from None
