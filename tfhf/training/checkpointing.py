"""Checkpoints that let a killed run continue where it stopped, and a stop on a bad loss."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import tensorflow as tf
import tf_keras

from tfhf.errors import TfhfError

# Keras' BackupAndRestore keeps its checkpoints here, below the backup folder.
_CHIEF_FOLDER = "chief"


def resume_point(backup_dir: Path, steps_per_epoch: int) -> tuple[int, int] | None:
    """(epoch, step within it) that a run continuing from `backup_dir` starts at, both
    0-based; None when there is nothing to continue from."""
    latest = tf.train.latest_checkpoint(str(backup_dir / _CHIEF_FOLDER))
    if latest is None:
        return None
    reader = tf.train.load_checkpoint(latest)
    epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    if epoch < 0 or batch < 0:
        return None
    if batch >= steps_per_epoch - 1:
        return epoch + 1, 0
    return epoch, batch + 1


def _all_finite(variables) -> bool:
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))


class Checkpointing(tf_keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (model, optimizer, epoch and step; multi-worker aware),
    saving every `every_steps` optimizer steps and at each epoch end.

    It also watches the loss: a non-finite value stops training at once, before anything
    is saved, and the last checkpoint is kept (normally it is deleted when training
    completes). `diverged_at` then holds the step, counted from 1 over the whole run.
    Place it after the callbacks whose epoch-end work it should capture.
    """

    def __init__(self, backup_dir: Path, *, every_steps: int, steps_per_epoch: int):
        super().__init__(str(backup_dir), save_freq=every_steps or "epoch")
        self._folder = backup_dir
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.diverged_at: int | None = None
        self.bad_loss: float | None = None
        self.saved_step = 0  # run step of the last checkpoint written here

    def _implements_train_batch_hooks(self):
        return True

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)  # restores the last checkpoint, if any
        except (ValueError, tf.errors.OpError) as e:
            raise TfhfError(
                f"the checkpoint in {self._folder} does not fit this model ({str(e)[:200]}); "
                "it is from a different run: remove it or choose another --workdir"
            ) from None
        epoch = int(self._training_state._ckpt_saved_epoch.numpy())
        batch = int(self._training_state._ckpt_saved_batch.numpy())
        if epoch >= 0 and batch >= 0:
            self.saved_step = epoch * self.steps_per_epoch + batch + 1

    def _run_step(self, batch: int) -> int:
        return self._current_epoch * self.steps_per_epoch + batch + 1

    def on_train_batch_begin(self, batch, logs=None):
        pass  # the step is recorded when a checkpoint is written, see _save

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = self._run_step(batch)
            self.bad_loss = float(loss)
            self.model.stop_training = True
            return
        # With steps_per_execution > 1, `batch` jumps; save on crossing a multiple.
        step = self._run_step(batch)
        if self.every_steps and step // self.every_steps > self.saved_step // self.every_steps:
            self._save(batch)

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged_at is None and self.saved_step != self._run_step(self.steps_per_epoch - 1):
            self._save(self.steps_per_epoch - 1)

    def _save(self, batch: int) -> None:
        if not _all_finite(self.model.trainable_variables):
            return  # never replace a good checkpoint by a broken state
        state = self._training_state
        state._ckpt_saved_epoch.assign(self._current_epoch)
        state._ckpt_saved_batch.assign(batch)
        state.back_up(epoch=self._current_epoch, batch=batch)
        self.saved_step = self._run_step(batch)

    def on_train_end(self, logs=None):
        if self.diverged_at is None:
            super().on_train_end(logs)
            if self.model.distribute_strategy.extended.should_checkpoint:
                shutil.rmtree(self._folder, ignore_errors=True)

    def raise_if_diverged(self) -> None:
        """Raises the run's one-line error when training stopped on a bad loss."""
        if self.diverged_at is None:
            return
        kept = (
            f"the last good checkpoint (step {self.saved_step}) is kept in {self._folder}"
            if tf.train.latest_checkpoint(str(self._folder / _CHIEF_FOLDER))
            else "no checkpoint had been written yet"
        )
        raise TfhfError(
            f"training stopped at step {self.diverged_at}: the loss became {self.bad_loss}; "
            f"{kept}; try a lower --learning_rate or --clip_norm=1.0"
        )
