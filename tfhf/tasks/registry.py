"""A name -> task class registry, so new tasks plug into `--task` without touching the CLI."""

from __future__ import annotations

from tfhf.errors import TfhfError

TASKS: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: makes the task available as `--task=<name>`.

    Example:
      >>> @register_task("echo")  # doctest: +SKIP
      ... class EchoTask: ...
    """

    def wrap(cls):
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        cls.name = name
        TASKS[name] = cls
        return cls

    return wrap


def get_task(name: str):
    """A new instance of the task registered as `name`."""
    if name not in TASKS:
        raise TfhfError(f"unknown task '{name}' (tasks: {', '.join(sorted(TASKS))})")
    return TASKS[name]()
