"""The tasks: each `--task` value names one registered `Task`.

Importing this package registers tfhf's own tasks. A task of your own registers when its
module is imported: name such modules in the environment variable `TFHF_TASK_MODULES`
(comma-separated, importable from the working directory or `PYTHONPATH`) and
`python -m tfhf.train --task=<name>` finds them.
"""

from tfhf.tasks import classify, lm, mlm, summarize, translate  # noqa: F401  (registers them)
from tfhf.tasks.registry import TASKS, get_task, import_task_modules, register_task
from tfhf.tasks.task import Task

__all__ = ["TASKS", "Task", "get_task", "import_task_modules", "register_task"]
