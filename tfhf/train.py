"""python -m tfhf.train: train a model for one task, evaluate it, and export it for TF Serving.

Each task has its own settings and defaults: `--task=<name> --helpshort` lists them.

Examples:
  python -m tfhf.train --task=classify
  python -m tfhf.train --task=lm --helpshort
  python -m tfhf.train --flagfile=flags/classify.flags --epochs=2
  python -m tfhf.train --task=classify --train_file=reviews.csv --model=bert-base-uncased
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from absl import flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf import api
from tfhf.cli import EntryPoint, fail
from tfhf.config import GROUPS, TrainConfig, choices_of, group_of, help_of
from tfhf.errors import TfhfError
from tfhf.tasks import TASKS, get_task, import_task_modules

DEFAULT_TASK = "classify"


def task_named_in(argv: Sequence[str]) -> str:
    """The `--task` that `argv` (flagfiles read) gives last; the default task if none."""
    probe = flags.FlagValues()
    flags.DEFINE_string("task", DEFAULT_TASK, "", flag_values=probe)
    try:
        probe(list(argv), known_only=True)
    except flags.Error:
        return DEFAULT_TASK  # the full parse reports what is wrong
    return probe.task


def define_flags(task: str, flag_values: flags.FlagValues) -> None:
    """One flag per setting of `task`'s config: its type, its help, the task's default."""
    config_class = get_task(task).config_class
    for field in dataclasses.fields(config_class):
        name, default = field.name, field.default
        help_text = help_of(config_class, name)
        choices = sorted(TASKS) if name == "task" else choices_of(config_class, name)
        kwargs = dict(flag_values=flag_values)
        if choices:
            flags.DEFINE_enum(name, default, list(choices), help_text, **kwargs)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, help_text, **kwargs)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, **kwargs)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, **kwargs)
        else:
            flags.DEFINE_string(name, default, help_text, **kwargs)


def settings_by_group(task: str) -> list[tuple[str, list[str]]]:
    """The settings of `task`, by group (`tfhf.config.GROUPS`, in that order)."""
    config_class = get_task(task).config_class
    names = [field.name for field in dataclasses.fields(config_class)]
    return [
        (group, members)
        for group in GROUPS
        if (members := [n for n in names if group_of(config_class, n) == group])
    ]


def entry_point(flag_values: flags.FlagValues) -> EntryPoint:
    """`python -m tfhf.train` under tfhf's CLI convention, its flags defined on
    `flag_values` from the task the arguments name."""
    chosen = {"task": DEFAULT_TASK}

    def define(args: list[str]) -> None:
        task = task_named_in(["tfhf.train", *args])
        chosen["task"] = task if task in TASKS else DEFAULT_TASK
        define_flags(chosen["task"], flag_values)

    return EntryPoint(
        program="tfhf.train",
        doc=__doc__,
        groups=lambda: settings_by_group(chosen["task"]),
        define=define,
        unknown=lambda name: f"--{name} is not a setting of --task={chosen['task']}",
    )


def parse_flags(argv: Sequence[str], flag_values: flags.FlagValues) -> list[str]:
    """Defines the flags of the task `argv` names on `flag_values` and parses `argv` into
    them; returns the arguments left over."""
    return entry_point(flag_values).parse(argv, flag_values)


def config_from_flags(flag_values: flags.FlagValues) -> TrainConfig:
    """The task's config, read from flags defined by `define_flags` and parsed."""
    config_class = get_task(flag_values.task).config_class
    return config_class(
        **{f.name: flag_values[f.name].value for f in dataclasses.fields(config_class)}
    )


def parse_config(argv: Sequence[str]) -> TrainConfig:
    """The config that `python -m tfhf.train` runs for these arguments (`argv[0]` is the
    program name).

    Example:
      >>> config = parse_config(["tfhf.train", "--task=lm", "--epochs=2"])
      >>> type(config).__name__, config.epochs, config.batch_size
      ('LmConfig', 2, 16)
    """
    flag_values = flags.FlagValues()
    parse_flags(argv, flag_values)
    return config_from_flags(flag_values)


def run(config: TrainConfig) -> dict:
    """Runs `config.task` with `config`; returns its metrics (also in metrics.json)."""
    return api.run(config).metrics


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens at INFO
    run(config_from_flags(flags.FLAGS))


if __name__ == "__main__":
    try:
        import_task_modules(os.environ.get("TFHF_TASK_MODULES", ""))
    except TfhfError as e:
        fail(str(e))
    entry_point(flags.FLAGS).run(main)
