"""The task registry: each `--task` value names one registered task class."""

# Importing the task modules registers them.
from tfhf.tasks import classify, lm, mlm  # noqa: E402,F401,I001
from tfhf.tasks.registry import TASKS, get_task, register_task

__all__ = ["TASKS", "get_task", "register_task"]
