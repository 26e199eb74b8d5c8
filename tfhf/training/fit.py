"""The Keras `fit` call every task makes: per-epoch validation, best epoch kept, progress."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from tfhf.errors import TfhfError
from tfhf.training import callbacks


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a task reports from training."""

    losses: list[float]
    best_epoch: int  # 0-based index of the epoch whose weights the model now holds
    seconds: float  # steady-state training time (see `callbacks.Throughput`)
    steps: int  # steps timed in `seconds`


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
    log_dir: Path,
    unit: str = "examples",
    units_per_example: int = 1,
) -> FitResult:
    """Trains `model` (already compiled) and leaves it holding its best epoch's weights.

    Args:
      validation: A callback that evaluates after each epoch and adds `val_*` entries
        to the logs, including `monitor`.
      monitor, mode: The log entry that picks the best epoch, and "max" or "min".
      log_dir: TensorBoard log folder.
      unit, units_per_example: How progress lines count speed (examples, or tokens).

    Raises:
      TfhfError: when the training loss stops being finite.

    Example:
      >>> result = fit(model, ds, epochs=1, steps_per_epoch=10, batch_size=8,
      ...              validation=cb, monitor="val_loss", mode="min",
      ...              log_dir=Path("runs/x/logs"))  # doctest: +SKIP
    """
    meter = callbacks.Throughput()
    best = callbacks.KeepBestWeights(monitor, mode)
    # The validation callback runs before the callbacks that read its entries.
    cbs = [
        meter,
        validation,
        best,
        tf_keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq=50),
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
    history = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=cbs,
        verbose=1 if interactive else 0,
    )
    losses = [float(v) for v in history.history["loss"]]
    if not np.all(np.isfinite(losses)):
        raise TfhfError(f"training diverged: loss became {losses[-1]}; try a lower --learning_rate")
    return FitResult(losses, best.best_epoch, meter.seconds, meter.steps)


def fit_token_model(
    model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    *,
    config,
    steps_per_epoch: int,
    tokens_per_example: int,
    detail: str = "",
    log_dir: Path,
) -> tuple[FitResult, dict[str, float]]:
    """Trains a token predictor (causal or masked LM) from `(inputs, labels, weights)` batches
    with AdamW and a weighted cross-entropy; returns the fit and the best epoch's validation.

    `config` is the run's `TrainConfig`; `detail` is added to the line announcing the run.
    """
    from tfhf.training.evaluation import EvaluateTokensEachEpoch
    from tfhf.training.optimizer import adamw

    model.compile(
        optimizer=adamw(
            learning_rate=config.learning_rate,
            total_steps=steps_per_epoch * config.epochs,
            warmup_ratio=config.warmup_ratio,
            weight_decay=config.weight_decay,
        ),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    print(
        f"tfhf: training {config.epochs} epoch(s) x {steps_per_epoch} steps, batch "
        f"{config.batch_size} x {tokens_per_example} tokens, {detail}"
        f"{model.count_params():,} parameters",
        flush=True,
    )
    validating = EvaluateTokensEachEpoch(val_ds)
    trained = fit(
        model,
        train_ds,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=config.batch_size,
        validation=validating,
        monitor="val_loss",
        mode="min",
        log_dir=log_dir,
        unit="tokens",
        units_per_example=tokens_per_example,
    )
    return trained, validating.results[trained.best_epoch]
