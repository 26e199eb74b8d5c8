"""Server-side batching: concurrent requests to one signature run as one call."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import numpy as np

from tfhf.serving.model_server.errors import RequestError

# One waiting request: its inputs, its row count, and where its outputs go.
_Pending = tuple[dict[str, np.ndarray], int, futures.Future]


class Batcher:
    """Runs concurrent requests to one signature as one batch.

    A request joins a batch when each of its inputs has the request's row count as its
    first dimension (so rows can be stacked and split again); others run alone. A batch
    runs when it holds `max_batch_size` rows or `timeout` seconds after its first request.

    Example:
      >>> batcher = Batcher(lambda x: {"y": x["x"] * 2}, max_batch_size=8, timeout=0.01)
      >>> batcher({"x": np.array([1, 2])})["y"].tolist()
      [2, 4]
    """

    def __init__(self, run: Callable, *, max_batch_size: int, timeout: float):
        self._run = run
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._timer: threading.Timer | None = None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _rows_of(inputs)
        if rows is None or rows > self.max_batch_size:
            return self._run(inputs)
        future: futures.Future = futures.Future()
        with self._lock:
            pending_rows = sum(r for _, r, _ in self._pending)
            if self._pending and (
                not _stackable(self._pending[0][0], inputs)
                or pending_rows + rows > self.max_batch_size
            ):
                self._flush_locked()
            self._pending.append((inputs, rows, future))
            if sum(r for _, r, _ in self._pending) >= self.max_batch_size:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(self.timeout, self._flush)
                self._timer.daemon = True
                self._timer.start()
        return future.result()

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        batch, self._pending = self._pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch:
            threading.Thread(target=self._run_batch, args=(batch,), daemon=True).start()

    def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:
                batch[0][2].set_result(self._run(batch[0][0]))
                return
            names = batch[0][0].keys()
            stacked = {n: np.concatenate([inputs[n] for inputs, _, _ in batch]) for n in names}
            try:
                outputs = self._run(stacked)
            except RequestError:
                self._run_each(batch)  # one refused request must not fail the others
                return
            total = sum(rows for _, rows, _ in batch)
            if any(np.ndim(v) == 0 or len(v) != total for v in outputs.values()):
                self._run_each(batch)  # outputs not per row: run each alone
                return
            start = 0
            for _, rows, future in batch:
                future.set_result({k: v[start : start + rows] for k, v in outputs.items()})
                start += rows
        except Exception as e:  # each waiting request gets the batch's error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e)

    def _run_each(self, batch: list[_Pending]) -> None:
        for inputs, _, future in batch:
            try:
                future.set_result(self._run(inputs))
            except Exception as e:  # noqa: BLE001  (handed to that request's caller)
                future.set_exception(e)


def _rows_of(inputs: dict[str, np.ndarray]) -> int | None:
    firsts = {np.shape(v)[0] if np.ndim(v) else None for v in inputs.values()}
    if len(firsts) != 1 or None in firsts:
        return None
    return firsts.pop()


def _stackable(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[k])[1:] == np.shape(b[k])[1:] and a[k].dtype.kind == b[k].dtype.kind for k in a
    )
