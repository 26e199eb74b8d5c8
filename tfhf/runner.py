"""The lifecycle every task shares, written once: from a config to a trained, saved and
exported model and its `metrics.json`.

The runner calls the hooks of a task (a `tfhf.tasks.Task`, which says what each hook
must do) in this order:

  config checks -> seed -> task.load_inputs -> strategy and precision -> task.build_model
  -> open the workdir -> task.training_data
  -> compile (task.train_metrics, task.loss, task.forward)
  -> fit (checkpoints, resume, NaN stop, best epoch) -> task.evaluate -> task.save
  -> task.export and task.after_export (tasks whose config is an `ExportConfig`)
  -> metrics.json -> task.summary

Nothing is written before `build_model` returns, so every problem found while reading
the inputs or building the model leaves no trace; metrics.json, written last, marks a
complete run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras

from tfhf.config import ExportConfig
from tfhf.data import records
from tfhf.errors import TfhfError
from tfhf.files import open_workdir, write_text_atomically
from tfhf.training import runtime as runtimes
from tfhf.training.fit import compile_for_training, fit, weights_digest

# The entries of every run's metrics.json (a task adds its own, `Task.metrics_doc`). Tests
# compare these documented keys with real runs' metrics.json, so the reference is true.
RUN_METRICS = {
    "task": "The task's name.",
    "model": "What the run started from: --model, or what it trained from scratch.",
    "data": "Where the data came from, and the size of each split.",
    "parameters": "The model's weights, counted.",
    "train_loss_per_epoch": "Mean training loss of each epoch.",
    "best_epoch": "The epoch (from 1) whose weights were kept: the best on validation.",
    "optimizer_steps": "Updates the weights have had, over every run of a resumed training.",
    "weights_sha256": "sha256 of the final weights: equal digests, identical models.",
    "wall_seconds": "The run's wall time, reading the data to writing metrics.json.",
    "config": "Every setting of the run, by name (what flags.txt holds).",
}
EXPORT_METRICS = {"export": "The SavedModel version folder the run wrote."}
# What every run leaves in its workdir (a task adds its own, `Task.workdir_files`).
WORKDIR_FILES = {
    "metrics.json": "The run's figures (below). Written last: its presence marks a complete run.",
    "flags.txt": "The resolved settings, one --name=value a line: `--flagfile=<workdir>/"
    "flags.txt` repeats the run.",
    "model/": "The trained model and its tokenizer in HuggingFace format (save_pretrained: "
    "config.json, tf_model.h5, the tokenizer's files), which transformers' TF Auto classes "
    "load as they are.",
    "logs/": "TensorBoard logs: train/ and validation/.",
    "checkpoints/": "While training only: a checkpoint every --checkpoint_every_steps steps "
    "and at each epoch end; running the same command again resumes from it. Removed when "
    "training completes.",
}


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What a task trains on, as the runner needs it.

    Attributes:
      train: Training batches; the runner repeats nothing, so the pipeline must yield at
        least `examples / batch` batches per epoch (repeat it for more than one epoch).
      examples: Training examples in one epoch (texts, token blocks, windows).
      whole_batches: The pipeline drops a last partial batch (static shapes), so an epoch
        is `examples // batch` steps rather than rounded up.
      validation: A callback that evaluates after each epoch, adds `val_*` entries to the
        logs (the task's `monitor` among them) and keeps each epoch's figures in `results`.
      unit, units_per_example: How speed is counted (examples, or tokens per example).
      detail: Added after the batch size in the line announcing the run.
      flops_per_example: Model FLOPs of training on one example (forward and backward, as
        `tfhf.training.flops` estimates them); 0 when the task does not estimate them.
    """

    train: tf.data.Dataset
    examples: int
    whole_batches: bool
    validation: tf_keras.callbacks.Callback
    unit: str = "examples"
    units_per_example: int = 1
    detail: str = ""
    flops_per_example: float = 0.0


def steps_per_epoch(examples: int, batch_size: int, *, whole_batches: bool, cap: int) -> int:
    """Optimizer steps in one epoch of `examples`, at most `cap` (0: no cap).

    Example:
      >>> steps_per_epoch(100, 32, whole_batches=False, cap=0)
      4
      >>> steps_per_epoch(100, 32, whole_batches=True, cap=2)
      2
    """
    steps = max(1, examples // batch_size) if whole_batches else math.ceil(examples / batch_size)
    return min(steps, cap) if cap else steps


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What a finished run leaves.

    Attributes:
      metrics: The figures written to `<workdir>/metrics.json`.
      model: The trained Keras model (a transformers TF model), holding the kept epoch's
        weights; for a mixed-precision run that exported, the float32 copy it exported.
      workdir: The run folder (`model/`, `metrics.json`, `flags.txt`, `logs/`).
      export: The SavedModel version folder the run wrote, or None.
    """

    metrics: dict
    model: Any
    workdir: Path
    export: Path | None


def run(task, *, callbacks: Sequence[tf_keras.callbacks.Callback] = ()) -> RunResult:
    """Trains, evaluates, saves and exports what `task` describes; returns the metrics
    written to `<workdir>/metrics.json` with the model and where it was written.

    `callbacks` are Keras callbacks added to the training `fit` (after the per-epoch
    validation, whose `val_*` entries their `on_epoch_end` logs hold).

    Raises:
      TfhfError: for bad settings or inputs (before anything is written), and for a
        training loss that stops being finite.
    """
    config = task.config
    problems = config.problems()
    if problems:
        raise TfhfError("; ".join(problems))
    started = time.perf_counter()
    tf_keras.utils.set_random_seed(config.seed)
    scratch = Path(tempfile.mkdtemp(prefix="tfhf-"))
    runtime = version_dir = None
    try:
        # Records are read in load_inputs, and by the tasks that tokenize a corpus once in
        # build_model.
        with records.skipping(config.skip_bad_records) as skipped:
            data_description = task.load_inputs()
            runtime = runtimes.start(config)
            model = task.build_model(runtime, scratch)
        if skipped.count:
            print(
                f"tfhf: skipped {skipped.count} bad records (--skip_bad_records); the first: "
                f"{skipped.first}",
                flush=True,
            )
        workdir = runtime.placement.workdir
        open_workdir(workdir, config.to_flagfile())

        data = task.training_data(runtime)
        steps = steps_per_epoch(
            data.examples,
            config.batch_size,
            whole_batches=data.whole_batches,
            cap=config.max_steps_per_epoch,
        )
        with runtime.building():
            compile_for_training(
                model,
                config,
                total_steps=steps * config.epochs,
                metrics=task.train_metrics(),
                loss=task.loss(),
                forward=task.forward(),
            )
        print(
            f"tfhf: training {config.epochs} epoch(s) x {steps} steps, batch "
            f"{config.batch_size}{data.detail}, {model.count_params():,} parameters",
            flush=True,
        )
        trained = fit(
            model,
            data.train,
            epochs=config.epochs,
            steps_per_epoch=steps,
            batch_size=config.batch_size,
            validation=data.validation,
            monitor=task.monitor,
            mode=task.mode,
            workdir=workdir,
            checkpoint_every_steps=config.checkpoint_every_steps,
            unit=data.unit,
            units_per_example=data.units_per_example,
            extra_callbacks=callbacks,
        )
        results = {"validation": data.validation.results[trained.best_epoch]}
        results.update(task.evaluate(model, workdir))
        task.save(model, workdir / "model")
        if isinstance(config, ExportConfig) and config.export:
            if runtime.mixed:
                # The export computes in float32 whatever the training precision was.
                model = task.load_saved(workdir / "model")
            export_dir = runtime.placement.export_dir
            print(f"tfhf: exporting the SavedModel to {export_dir}", flush=True)
            version_dir = task.export(model, export_dir)
            results.update(task.after_export(model))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if runtime is not None:
            runtime.placement.cleanup()

    examples_per_second = trained.steps * config.batch_size / max(trained.seconds, 1e-9)
    metrics = {
        "task": task.name,
        "model": task.model_description(),
        "data": data_description,
        **results,
        "parameters": int(model.count_params()),
        f"train_{data.unit}_per_second": round(examples_per_second * data.units_per_example, 2),
        **(
            {"train_model_flops_per_second": round(examples_per_second * data.flops_per_example)}
            if data.flops_per_example
            else {}
        ),
        "train_loss_per_epoch": trained.losses,
        "best_epoch": trained.best_epoch + 1,
        "optimizer_steps": trained.optimizer_steps,
        **({"export": str(version_dir)} if version_dir else {}),
        "weights_sha256": weights_digest(model),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "config": dataclasses.asdict(config),
    }
    if runtime.placement.chief:
        write_text_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(task.summary(metrics), flush=True)
    if data.flops_per_example:
        print(
            f"tfhf: training ran at {metrics['train_model_flops_per_second'] / 1e9:.1f} model "
            "GFLOP/s (6 x weights x tokens, attention and output layer included)",
            flush=True,
        )
    saved = f"; SavedModel {version_dir}" if version_dir else ""
    print(f"tfhf: workdir {workdir}{saved}", flush=True)
    return RunResult(metrics, model, Path(workdir), Path(version_dir) if version_dir else None)
