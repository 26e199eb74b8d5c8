"""Typed run configuration: the settings every task trains with, declared once.

Each setting is a dataclass field whose metadata holds its help text (and its choices,
for an enum): `tfhf.train` generates its flags from these fields, with the task's own
defaults. A task's config subclasses `TrainConfig` (or `ExportConfig`, if the task exports
a SavedModel), restating the defaults it wants and adding its own settings.

Example:
  >>> @dataclasses.dataclass(frozen=True)
  ... class EchoConfig(TrainConfig):
  ...     task: str = "echo"
  ...     batch_size: int = 8
  ...     repeats: int = setting(2, "How often to echo.")
  >>> config = EchoConfig(epochs=0).resolved()
  >>> config.workdir, config.batch_size, help_of(EchoConfig, "repeats")
  ('runs/echo', 8, 'How often to echo.')
  >>> config.problems()
  ['--epochs must be positive, got 0']
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "fp16", "bf16")
# The one default seed: training, sampling in tfhf.generate and the exports' `seed` input.
DEFAULT_SEED = 42
# How a .txt file is cut into texts (tfhf.data.records).
TEXT_FORMATS = ("lines", "paragraphs", "document")
# Training examples shuffled at once by default: a full shuffle of the packaged corpora's
# blocks, a bounded one (about 50 MB of 128-token blocks) of a larger corpus.
SHUFFLE_BUFFER = 100_000

# What a setting is about, in the order `--helpshort` and the reference list them. A task's
# own setting declared without a group is listed under "task".
GROUPS = ("run", "data", "model", "optimisation", "scale", "evaluation", "export", "task")


def setting(default, help: str, *, group: str = "task", choices: tuple[str, ...] = ()):  # noqa: A002
    """A config field with its help text, its group (one of `GROUPS`) and its allowed values,
    from which a flag is made."""
    if group not in GROUPS:
        raise ValueError(f"unknown setting group '{group}' (groups: {', '.join(GROUPS)})")
    return dataclasses.field(
        default=default, metadata={"help": help, "group": group, "choices": choices}
    )


def _declared(config_class: type, name: str, key: str):
    """`key` of setting `name`'s metadata from the nearest class that declares it, so that a
    task restating only a default keeps the common help and group."""
    for cls in config_class.__mro__:
        field = getattr(cls, "__dataclass_fields__", {}).get(name)
        if field is not None and key in field.metadata:
            return field.metadata[key]
    raise KeyError(f"setting '{name}' of {config_class.__name__} has no {key}")


def help_of(config_class: type, name: str) -> str:
    """The help text of setting `name`."""
    return _declared(config_class, name, "help")


def group_of(config_class: type, name: str) -> str:
    """The group (one of `GROUPS`) setting `name` is listed under."""
    return _declared(config_class, name, "group")


def choices_of(config_class: type, name: str) -> tuple[str, ...]:
    """The values setting `name` allows (empty: any value of its type)."""
    try:
        return _declared(config_class, name, "choices")
    except KeyError:
        return ()


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything every `python -m tfhf.train` run depends on.

    Field names are the flag names, so `to_flagfile()` writes a file that `--flagfile`
    reads back into the same config.
    """

    task: str = setting("", "What to train.", group="run")
    model: str = setting(
        "",
        "The model to start from: a local HuggingFace-format folder "
        "(a tfhf workdir works too) or a hub id.",
        group="model",
    )
    dataset: str = setting("", "Data to train on when --train_file is not given.", group="data")
    train_file: str = setting(
        "",
        "Training data: a file, a glob, a comma-separated list or a folder of .csv, .tsv, "
        ".jsonl or TFRecord files (or .txt for text), each optionally .gz; gs:// paths work "
        "where TensorFlow's GCS filesystem does.",
        group="data",
    )
    validation_file: str = setting(
        "",
        "Validation data, named as --train_file; split off the training data if unset.",
        group="data",
    )
    skip_bad_records: bool = setting(
        False,
        "Skip a malformed record of the data files (bad JSON, a missing column, a row of "
        "the wrong width) and count it, rather than stop on it; the count and the first "
        "one's place are printed.",
        group="data",
    )
    batch_size: int = setting(
        32,
        "Examples per training step: the global batch, shared out among the replicas.",
        group="optimisation",
    )
    epochs: int = setting(1, "Passes over the training data.", group="optimisation")
    max_steps_per_epoch: int = setting(
        0, "Cap on steps per epoch, for quick runs; 0 means a whole epoch.", group="optimisation"
    )
    learning_rate: float = setting(1e-4, "Peak AdamW learning rate.", group="optimisation")
    warmup_ratio: float = setting(
        0.1, "Fraction of steps with a linearly rising learning rate.", group="optimisation"
    )
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay.", group="optimisation")
    seed: int = setting(
        DEFAULT_SEED, "Seed for initialisation, shuffling, splits and sampling.", group="run"
    )
    workdir: str = setting("", "Run folder; default runs/<task>.", group="run")
    # Scale: where and how fast the training step runs, and how a run survives a crash.
    strategy: str = setting(
        "auto",
        "tf.distribute strategy. auto: a TPU if one answers, MirroredStrategy over several "
        "GPUs, else the default. multi_worker reads the cluster from TF_CONFIG.",
        choices=STRATEGIES,
        group="scale",
    )
    tpu: str = setting("", "TPU name or grpc:// address; empty: Colab's local TPU.", group="scale")
    mixed_precision: str = setting(
        "none",
        "Compute in float16 (with loss scaling) or bfloat16; weights stay float32. TPUs use bf16.",
        choices=MIXED_PRECISION,
        group="scale",
    )
    jit_compile: bool = setting(False, "XLA-compile the training step.", group="scale")
    steps_per_execution: int = setting(
        1,
        "Training steps per call into the compiled function (fewer host round trips).",
        group="scale",
    )
    grad_accum_steps: int = setting(
        1,
        "Split each batch into this many micro-batches and sum their gradients: the same "
        "update as the whole batch, with a micro-batch's memory.",
        group="scale",
    )
    clip_norm: float = setting(
        0.0, "Clip gradients to this global norm; 0 means no clipping.", group="optimisation"
    )
    checkpoint_every_steps: int = setting(
        100,
        "Checkpoint every N steps (and at each epoch end) in <workdir>/checkpoints; rerunning "
        "the same command resumes from it. 0: epoch ends only.",
        group="scale",
    )

    def resolved(self) -> TrainConfig:
        """This config with the per-task default folders filled in."""
        return dataclasses.replace(self, workdir=self.workdir or str(Path("runs") / self.task))

    def problems(self) -> list[str]:
        """What is wrong with the settings, one phrase per problem (empty: nothing).

        A task's config extends the list with the checks of its own settings.
        """
        problems = [
            f"--{name} must be positive, got {getattr(self, name)}"
            for name in ("batch_size", "epochs")
            if getattr(self, name) < 1
        ]
        if self.max_steps_per_epoch < 0:
            problems.append(
                f"--max_steps_per_epoch must be 0 (whole epoch) or positive, "
                f"got {self.max_steps_per_epoch}"
            )
        if not self.learning_rate > 0:
            problems.append(f"--learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            problems.append(f"--weight_decay must not be negative, got {self.weight_decay}")
        for field in dataclasses.fields(self):
            allowed = choices_of(type(self), field.name)
            if allowed and getattr(self, field.name) not in allowed:
                problems.append(
                    f"--{field.name} must be one of {', '.join(allowed)}, "
                    f"got '{getattr(self, field.name)}'"
                )
        for name in ("steps_per_execution", "grad_accum_steps"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} must be positive, got {getattr(self, name)}")
        if self.grad_accum_steps > 1 and self.batch_size % self.grad_accum_steps:
            problems.append(
                f"--batch_size ({self.batch_size}) must be a multiple of --grad_accum_steps "
                f"({self.grad_accum_steps})"
            )
        if self.clip_norm < 0:
            problems.append(f"--clip_norm must be 0 (off) or positive, got {self.clip_norm}")
        if self.checkpoint_every_steps < 0:
            problems.append(
                f"--checkpoint_every_steps must be 0 (epoch ends only) or positive, "
                f"got {self.checkpoint_every_steps}"
            )
        return problems

    def to_flagfile(self) -> str:
        """The config as absl flagfile lines, one `--name=value` per field."""
        lines = [f"--{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class ExportConfig(TrainConfig):
    """The settings of a task that exports a SavedModel for TF Serving."""

    export_dir: str = setting(
        "", "SavedModel root (versions inside); default savedmodels/<task>.", group="export"
    )
    export: bool = setting(
        True, "Export a SavedModel after training (--noexport: the workdir only).", group="export"
    )

    def resolved(self) -> ExportConfig:
        return dataclasses.replace(
            super().resolved(), export_dir=self.export_dir or str(Path("savedmodels") / self.task)
        )


@dataclasses.dataclass(frozen=True)
class ScratchModelConfig(TrainConfig):
    """The settings that size a transformer trained from scratch (when --model is empty)."""

    vocab_size: int = setting(4096, "From scratch: the tokenizer's vocabulary size.", group="model")
    n_layer: int = setting(4, "From scratch: transformer layers.", group="model")
    n_head: int = setting(4, "From scratch: attention heads.", group="model")
    n_embd: int = setting(256, "From scratch: hidden size.", group="model")

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.model:
            return problems
        problems += [
            f"--{name} must be positive, got {getattr(self, name)}"
            for name in ("n_layer", "n_head", "n_embd")
            if getattr(self, name) < 1
        ]
        if self.n_head >= 1 and self.n_embd % self.n_head:
            problems.append(
                f"--n_embd ({self.n_embd}) must be a multiple of --n_head ({self.n_head})"
            )
        return problems


@dataclasses.dataclass(frozen=True)
class CorpusConfig(ScratchModelConfig):
    """The settings of the tasks that learn from unlabelled text (lm, mlm)."""

    train_file: str = setting(
        "",
        "Training text, named as the files of any task (a file, a glob, a list, a folder; "
        ".gz too): each .txt file one document, or .csv/.tsv/.jsonl/TFRecord rows with "
        "--text_column. Read as it is needed: memory does not grow with its size.",
        group="data",
    )
    text_column: str = setting(
        "text", "Column with the text of .csv/.tsv/.jsonl/TFRecord files.", group="data"
    )
    text_format: str = setting(
        "document",
        "How .txt files are cut into documents: 'document' (each file one), 'lines' (one "
        "per non-blank line) or 'paragraphs' (one per block between blank lines).",
        group="data",
    )
    vocab_sample_bytes: int = setting(
        128_000_000,
        "From scratch: the tokenizer is trained on a seeded sample of at most this many bytes "
        "of the training text (all of it when it is smaller), drawn from every file.",
        group="data",
    )
    shuffle_buffer: int = setting(
        SHUFFLE_BUFFER,
        "Training examples shuffled at once: memory holds this many; when the corpus has "
        "fewer, each epoch is a full shuffle.",
        group="data",
    )
    token_cache: str = setting(
        "",
        "Folder (local or any tf.io.gfile path, such as gs://) where the tokenized corpus and "
        "the trained tokenizer are kept for later runs on the same text; empty: "
        "$TFHF_HOME/token_cache.",
        group="data",
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.text_format not in TEXT_FORMATS:
            problems.append(
                f"--text_format must be one of {', '.join(TEXT_FORMATS)}, got '{self.text_format}'"
            )
        problems += [
            f"--{name} must be positive, got {getattr(self, name)}"
            for name in ("vocab_sample_bytes", "shuffle_buffer")
            if getattr(self, name) < 1
        ]
        return problems
