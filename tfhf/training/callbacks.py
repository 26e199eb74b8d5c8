"""Keras callbacks for keeping the best epoch and measuring training throughput."""

from __future__ import annotations

import time

import numpy as np
import tf_keras


class KeepBestWeights(tf_keras.callbacks.Callback):
    """Restores, when training ends, the weights of the epoch with the best `monitor` value.

    Unlike `EarlyStopping(restore_best_weights=True)` it never stops training and
    restores even when the last epoch was not the best.
    """

    def __init__(self, monitor: str = "val_accuracy", mode: str = "max"):
        super().__init__()
        self.monitor = monitor
        self.sign = 1.0 if mode == "max" else -1.0
        self.best = -np.inf
        self.best_epoch = -1
        self._weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and self.sign * value > self.best:
            self.best = self.sign * value
            self.best_epoch = epoch
            self._weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self._weights is not None:
            self.model.set_weights(self._weights)
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
        if self._start is None:
            self._start = time.perf_counter()
        else:
            self.steps += 1

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

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every and step != self.steps_per_epoch:
            return
        logs = logs or {}
        rate = (
            step
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
