"""The Keras `fit` call every task makes: per-epoch validation, best epoch kept, progress."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from tfhf.training import callbacks
from tfhf.training.checkpointing import Checkpointing, resume_point
from tfhf.training.optimizer import adamw
from tfhf.training.train_step import install_train_step


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a task reports from training."""

    losses: list[float]
    best_epoch: int  # 0-based index of the epoch whose weights the model now holds
    seconds: float  # steady-state training time (see `callbacks.Throughput`)
    steps: int  # steps timed in `seconds`
    optimizer_steps: int  # updates the weights have had, over all runs of a resumed training


def compile_for_training(
    model,
    config,
    *,
    total_steps: int,
    metrics: list | None = None,
    loss=None,
    forward=None,
) -> None:
    """Compiles `model` the way every task trains: AdamW on the warmup/decay schedule
    (clipped to `--clip_norm`), `loss` (default: cross-entropy) on float32 logits, and
    tfhf's train step with `--grad_accum_steps`, `--jit_compile` and `--steps_per_execution`,
    its loss computed on what `forward` returns (see `install_train_step`).

    Call it where the model was built (inside `Runtime.building()`), so the optimizer's
    variables live with the model's. `config` is the run's `TrainConfig`.
    """
    model.compile(
        optimizer=adamw(
            learning_rate=config.learning_rate,
            total_steps=total_steps,
            warmup_ratio=config.warmup_ratio,
            weight_decay=config.weight_decay,
            clip_norm=config.clip_norm,
        ),
        loss=loss or tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=metrics,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    install_train_step(model, accum_steps=config.grad_accum_steps, forward=forward)
    # The step's metric results are already aggregated over replicas and workers; Keras'
    # default ("sum" across workers) would multiply a multi-worker job's logged loss.
    model.distribute_reduction_method = "first"


def weights_digest(model) -> str:
    """sha256 of the model's weights in order: equal digests, identical models (replicas
    and workers of one run end with the same one)."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def fit(
    model,
    train_ds: tf.data.Dataset,
    *,
    epochs: int,
    steps_per_epoch: int,
    batch_size: int,
    validation: tf_keras.callbacks.Callback,
    monitor: str,
    mode: str,
    workdir: Path,
    checkpoint_every_steps: int = 0,
    unit: str = "examples",
    units_per_example: int = 1,
    extra_callbacks: Sequence[tf_keras.callbacks.Callback] = (),
) -> FitResult:
    """Trains `model` (already compiled) and leaves it holding its best epoch's weights.

    Checkpoints go to `<workdir>/checkpoints` every `checkpoint_every_steps` steps and at
    each epoch end; when that folder holds one from an interrupted run, training continues
    from it (weights, optimizer, epoch and step; the data stream is advanced past the
    batches already trained on). The folder is removed when training completes.

    Args:
      validation: A callback that evaluates after each epoch and adds `val_*` entries
        to the logs, including `monitor`.
      monitor, mode: The log entry that picks the best epoch, and "max" or "min".
      workdir: The run folder: TensorBoard logs go to `logs/`, checkpoints and the
        record of finished epochs to `checkpoints/`.
      unit, units_per_example: How progress lines count speed (examples, or tokens).
      extra_callbacks: Keras callbacks of the caller's, run after the validation (their
        `on_epoch_end` logs hold the `val_*` entries) and before the checkpoint.

    Raises:
      TfhfError: when the training loss stops being finite (the last good checkpoint is
        kept).
    """
    backup_dir = workdir / "checkpoints"
    start = resume_point(backup_dir, steps_per_epoch)
    # Multi-worker jobs shard batches across workers; file-based sharding cannot apply.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_ds = train_ds.with_options(options)
    if start is not None:
        done = start[0] * steps_per_epoch + start[1]
        print(
            f"tfhf: resuming from the checkpoint in {backup_dir}: epoch {start[0] + 1}, "
            f"step {start[1] + 1} of {steps_per_epoch} ({done} steps done)",
            flush=True,
        )
        # Keras restores the counters but reads the data from its start; skipping the
        # batches already trained on puts the (seeded, deterministic) stream where it was.
        train_ds = train_ds.skip(done)
    completed_epochs = start[0] if start else 0
    meter = callbacks.Throughput()
    best = callbacks.KeepBestWeights(
        monitor, mode, store=backup_dir, completed_epochs=completed_epochs
    )
    validation_history = callbacks.EpochHistory(
        validation, backup_dir, completed_epochs=completed_epochs
    )
    checkpoints = Checkpointing(
        backup_dir, every_steps=checkpoint_every_steps, steps_per_epoch=steps_per_epoch
    )
    # The validation callback runs before the callbacks that read its entries, and the
    # checkpoint comes last, so that it captures the epoch's record.
    cbs = [
        meter,
        validation_history,
        best,
        tf_keras.callbacks.TensorBoard(log_dir=str(workdir / "logs"), update_freq=50),
        *extra_callbacks,
    ]
    interactive = sys.stdout.isatty()
    if not interactive:
        cbs.append(
            callbacks.ProgressLog(
                steps_per_epoch=steps_per_epoch,
                epochs=epochs,
                batch_size=batch_size,
                unit=unit,
                units_per_example=units_per_example,
            )
        )
    cbs.append(checkpoints)
    history = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=cbs,
        verbose=1 if interactive else 0,
    )
    checkpoints.raise_if_diverged()
    losses = validation_history.train_losses + [float(v) for v in history.history["loss"]]
    return FitResult(
        losses, best.best_epoch, meter.seconds, meter.steps, int(model.optimizer.iterations.numpy())
    )
