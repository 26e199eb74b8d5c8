"""Typed run configuration: what the entry points build from flags and `run()` consumes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "fp16", "bf16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one `python -m tfhf.train` run depends on.

    Field names are the flag names, so `to_flagfile()` writes a file that
    `--flagfile` reads back into the same config.
    """

    task: str = "classify"
    model: str = "minilm-l6"
    dataset: str = "rotten_tomatoes"
    train_file: str = ""
    validation_file: str = ""
    test_file: str = ""
    text_column: str = "text"
    label_column: str = "label"
    max_seq_length: int = 128
    batch_size: int = 32
    epochs: int = 1
    max_steps_per_epoch: int = 0
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    workdir: str = ""
    export_dir: str = ""
    # Language modelling (--task=lm); the vocabulary and size flags serve mlm too.
    block_size: int = 128
    vocab_size: int = 4096
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    # Masked language modelling (--task=mlm).
    mlm_probability: float = 0.15
    whole_word_masking: bool = False
    # Scale: where and how fast the training step runs, and how a run survives a crash.
    strategy: str = "auto"
    tpu: str = ""
    mixed_precision: str = "none"
    jit_compile: bool = False
    steps_per_execution: int = 1
    grad_accum_steps: int = 1
    clip_norm: float = 0.0
    checkpoint_every_steps: int = 100

    @classmethod
    def for_task(cls, task: str, **overrides) -> TrainConfig:
        """The config with `task`'s own defaults, then `overrides`, applied."""
        from tfhf.tasks import get_task

        return cls(**{**get_task(task).defaults, "task": task, **overrides})

    def resolved(self) -> TrainConfig:
        """This config with the per-task default folders filled in."""
        return dataclasses.replace(
            self,
            workdir=self.workdir or str(Path("runs") / self.task),
            export_dir=self.export_dir or str(Path("savedmodels") / self.task),
        )

    def training_problems(self) -> list[str]:
        """What is wrong with the flags every task trains with, one phrase per problem."""
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
        if self.strategy not in STRATEGIES:
            problems.append(
                f"--strategy must be one of {', '.join(STRATEGIES)}, got '{self.strategy}'"
            )
        if self.mixed_precision not in MIXED_PRECISION:
            problems.append(
                f"--mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"got '{self.mixed_precision}'"
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

    def model_size_problems(self) -> list[str]:
        """What is wrong with the flags that size a transformer trained from scratch."""
        problems = [
            f"--{name} must be positive, got {getattr(self, name)}"
            for name in ("n_layer", "n_head", "n_embd")
            if getattr(self, name) < 1
        ]
        if self.n_head >= 1 and self.n_embd % self.n_head:
            problems.append(
                f"--n_embd ({self.n_embd}) must be a multiple of --n_head ({self.n_head})"
            )
        return problems

    def to_flagfile(self) -> str:
        """The config as absl flagfile lines, one `--name=value` per field."""
        lines = [f"--{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)]
        return "\n".join(lines) + "\n"
