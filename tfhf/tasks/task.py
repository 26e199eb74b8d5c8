"""The task contract: what a task supplies, and what `tfhf.runner.run` does with it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tfhf.config import TrainConfig
from tfhf.errors import TfhfError
from tfhf.runner import TrainingData
from tfhf.training.runtime import Runtime


class Task:
    """One `--task`: its settings and what is specific to it; the runner does the rest.

    A task is a subclass registered with `@register_task(name)`. It names its config class
    (a frozen dataclass deriving from `TrainConfig`, or from `ExportConfig` when the task
    exports a SavedModel) and overrides the hooks below. The runner makes one instance per
    run and calls the hooks in the order they are listed here, so a hook may keep on `self`
    what a later hook needs. Hooks up to `build_model` must not write anything but caches
    (fetched assets, a tokenized corpus) under `$TFHF_HOME` or the run's `--token_cache`.
    """

    name: ClassVar[str] = ""  # set by `register_task`
    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    # The validation log entry that picks the best epoch, and whether higher is better.
    monitor: ClassVar[str] = "val_loss"
    mode: ClassVar[str] = "min"
    # What the reference documents (and tests check against real runs): the task's own
    # metrics.json entries beside the runner's (dotted keys for nested figures; a meaning
    # that starts with "(if" marks an entry some runs leave out), the files it adds to the
    # workdir and to model/, and its export's signatures.
    metrics_doc: ClassVar[dict[str, str]] = {}
    workdir_files: ClassVar[dict[str, str]] = {}
    model_files: ClassVar[dict[str, str]] = {}
    export_signatures: ClassVar[tuple] = ()

    def __init__(self, config: TrainConfig):
        if not isinstance(config, self.config_class):
            raise TfhfError(
                f"--task={self.name} takes a {self.config_class.__name__}, "
                f"got a {type(config).__name__}"
            )
        self.config = config.resolved()

    def model_description(self) -> str:
        """What metrics.json names as the model."""
        return self.config.model

    def load_inputs(self) -> str:
        """Reads and checks the data (and resolves `--model`); returns the data's description.

        Called before the strategy starts; must raise `TfhfError` for bad inputs.
        """
        raise NotImplementedError

    def build_model(self, runtime: Runtime, scratch: Path):
        """The tokenizer and the Keras model to train, built inside `runtime.building()`, with
        every check that needs them. `scratch` is a folder removed after the run."""
        raise NotImplementedError

    def training_data(self, runtime: Runtime) -> TrainingData:
        """The training pipeline, the per-epoch validation, and how to count steps."""
        raise NotImplementedError

    def train_metrics(self) -> list:
        """Keras metrics reported while training, beside the loss."""
        return []

    def loss(self):
        """The training loss on float32 logits (None: cross-entropy against integer labels)."""
        return None

    def forward(self):
        """What the training loss is computed on: None for the model's logits at every
        position, or a function `(model, x, y, sample_weight, training) -> (logits, y,
        sample_weight)` (see `tfhf.training.train_step.install_train_step`)."""
        return None

    def evaluate(self, model, workdir: Path) -> dict:
        """The task's own figures for metrics.json, computed after training on the kept
        epoch's weights (the best epoch's validation figures are there already). Readable
        reports may go into `workdir`."""
        return {}

    def save(self, model, folder: Path) -> None:
        """Writes the trained model and its tokenizer into `folder` (replaced whole)."""
        raise NotImplementedError

    def load_saved(self, folder: Path):
        """The model `save` wrote, computing in float32 (for the export of a
        mixed-precision run)."""
        raise NotImplementedError

    def export(self, model, export_dir: Path) -> Path:
        """Writes a new SavedModel version under `export_dir`; returns its folder."""
        raise NotImplementedError

    def after_export(self, model) -> dict:
        """Figures from the exported (float32) model, such as samples, for metrics.json."""
        return {}

    def summary(self, metrics: dict) -> str:
        """The run's headline figures, printed at the end (here: the validation figures)."""
        figures = metrics["validation"].items()
        return "tfhf: validation " + ", ".join(f"{k} {v:.4f}" for k, v in figures)
