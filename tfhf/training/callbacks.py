"""Keras callbacks for keeping the best epoch, remembering finished epochs across a resume,
and measuring training throughput."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tf_keras

_BEST_WEIGHTS = "best.weights.h5"
_BEST_RECORD = "best.json"
_EPOCHS_RECORD = "epochs.json"


def _writes(model) -> bool:
    # On a multi-worker job only the chief writes into the shared run folder.
    return model.distribute_strategy.extended.should_checkpoint


class KeepBestWeights(tf_keras.callbacks.Callback):
    """Restores, when training ends, the weights of the epoch with the best `monitor` value.

    Unlike `EarlyStopping(restore_best_weights=True)` it never stops training and
    restores even when the last epoch was not the best.

    With `store`, the best weights are also written there, so that a run resumed after
    a crash still knows the best epoch from before the crash.
    """

    def __init__(
        self,
        monitor: str = "val_accuracy",
        mode: str = "max",
        *,
        store: Path | None = None,
        completed_epochs: int = 0,
    ):
        super().__init__()
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.store = store
        self.completed_epochs = completed_epochs  # epochs the resumed checkpoint holds
        self.best = -np.inf
        self.best_epoch = -1
        self._weights = None

    def on_train_begin(self, logs=None):
        if self.completed_epochs and self.store and (self.store / _BEST_RECORD).exists():
            record = json.loads((self.store / _BEST_RECORD).read_text())
            if record["epoch"] < self.completed_epochs:
                self.best, self.best_epoch = record["best"], record["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and self.sign * value > self.best:
            self.best = self.sign * value
            self.best_epoch = epoch
            self._weights = self.model.get_weights()
            if (
                self.store is not None
                and _writes(self.model)
                and epoch + 1 < self.params.get("epochs", 0)
            ):
                self.store.mkdir(parents=True, exist_ok=True)
                self.model.save_weights(str(self.store / _BEST_WEIGHTS))
                record = {"best": self.best, "epoch": epoch}
                (self.store / _BEST_RECORD).write_text(json.dumps(record))

    def on_train_end(self, logs=None):
        if self._weights is None and self.best_epoch >= 0 and self.store is not None:
            self.model.load_weights(str(self.store / _BEST_WEIGHTS))  # best was before a resume
        elif self._weights is not None:
            self.model.set_weights(self._weights)
        if self.best_epoch >= 0:
            print(
                f"tfhf: kept epoch {self.best_epoch + 1} ({self.monitor}="
                f"{self.sign * self.best:.4f})",
                flush=True,
            )


class Throughput(tf_keras.callbacks.Callback):
    """Steady-state training speed: seconds and steps in training batches.

    The first batch of each epoch (graph tracing, pipeline warm-up) and validation
    are left out, so `steps / seconds` is what a longer run would sustain.
    """

    def __init__(self):
        super().__init__()
        self.seconds = 0.0
        self.steps = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = None

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the last step of the call: with steps_per_execution > 1 it jumps.
        if self._start is not None:
            self.steps += batch - self._last
        else:
            self._start = time.perf_counter()
        self._last = batch

    def on_test_begin(self, logs=None):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def on_epoch_end(self, epoch, logs=None):
        self.on_test_begin()


class ProgressLog(tf_keras.callbacks.Callback):
    """Plain progress lines for logs and pipes, where Keras' progress bar would be noise.

    Prints about `lines_per_epoch` lines an epoch: step, running loss and
    accuracy, and examples (or tokens) per second.
    """

    def __init__(
        self,
        *,
        steps_per_epoch: int,
        epochs: int,
        batch_size: int,
        lines_per_epoch: int = 10,
        unit: str = "examples",
        units_per_example: int = 1,
    ):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.batch_size = batch_size
        self.unit = unit
        self.units_per_example = units_per_example
        self.every = max(1, steps_per_epoch // lines_per_epoch)
        self._epoch = 0
        self._start = 0.0
        self._first = 0  # the epoch's first step: 0, or where a resumed run continues
        self._printed = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.perf_counter()
        self._first = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._first is None:
            self._first = self._printed = batch

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        # `batch` jumps by steps_per_execution; print on crossing a multiple of `every`.
        if step // self.every == self._printed // self.every and step != self.steps_per_epoch:
            return
        self._printed = step
        logs = logs or {}
        rate = (
            (step - self._first)
            * self.batch_size
            * self.units_per_example
            / max(time.perf_counter() - self._start, 1e-9)
        )
        metrics = " ".join(f"{k} {v:.4f}" for k, v in logs.items())
        print(
            f"epoch {self._epoch + 1}/{self.epochs} step {step}/{self.steps_per_epoch} "
            f"{metrics} ({rate:.1f} {self.unit}/s)",
            flush=True,
        )

    def on_epoch_end(self, epoch, logs=None):
        metrics = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        print(f"epoch {epoch + 1}/{self.epochs} done: {metrics}", flush=True)


class EpochHistory(tf_keras.callbacks.Callback):
    """Runs a validation callback (one with a `results` list, such as `EvaluateEachEpoch`)
    at each epoch end and records, in `folder`, each finished epoch's validation figures
    and training loss; a run resumed after a crash reads them back, so its report covers
    the epochs finished before the crash (`train_losses` holds theirs)."""

    def __init__(
        self, validation: tf_keras.callbacks.Callback, folder: Path, *, completed_epochs: int = 0
    ):
        super().__init__()
        self.validation = validation
        self.path = folder / _EPOCHS_RECORD
        self.completed_epochs = completed_epochs  # epochs the resumed checkpoint holds
        self.train_losses: list[float] = []

    def set_model(self, model):
        super().set_model(model)
        self.validation.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.validation.set_params(params)

    def on_train_begin(self, logs=None):
        if self.completed_epochs and self.path.exists():
            epochs = json.loads(self.path.read_text())[: self.completed_epochs]
            self.validation.results[:] = [e["validation"] for e in epochs]
            self.train_losses = [e["loss"] for e in epochs]
        self._recorded = list(zip(self.validation.results, self.train_losses, strict=True))

    def on_epoch_end(self, epoch, logs=None):
        self.validation.on_epoch_end(epoch, logs)
        self._recorded.append((self.validation.results[-1], float((logs or {})["loss"])))
        if _writes(self.model) and epoch + 1 < self.params.get("epochs", 0):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            epochs = [{"validation": v, "loss": loss} for v, loss in self._recorded]
            self.path.write_text(json.dumps(epochs))
