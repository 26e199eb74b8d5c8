"""Server-side batching: concurrent requests to one signature run as one call."""

from __future__ import annotations

import threading
import time
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
    runs when it holds `max_batch_size` rows or `timeout` seconds after its first request,
    on one of `threads` threads kept for the purpose (one more thread keeps the time).
    `close` ends those threads once the batches already queued have run.

    Example:
      >>> batcher = Batcher(lambda x: {"y": x["x"] * 2}, max_batch_size=8, timeout=0.01)
      >>> batcher({"x": np.array([1, 2])})["y"].tolist()
      [2, 4]
    """

    def __init__(
        self,
        run: Callable,
        *,
        max_batch_size: int,
        timeout: float,
        threads: int = 4,
        on_batch: Callable[[int], None] | None = None,
    ):
        self._run = run
        self._on_batch = on_batch
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self._pool = futures.ThreadPoolExecutor(threads, thread_name_prefix="tfhf-batch")
        self._due = threading.Condition()
        self._pending: list[_Pending] = []
        self._deadline: float | None = None
        self._closed = False
        self._timer = threading.Thread(
            target=self._flush_when_due, daemon=True, name="tfhf-batch-timer"
        )
        self._timer.start()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_of(inputs)
        if rows is None or rows > self.max_batch_size or self._closed:
            return self._run(inputs)
        future: futures.Future = futures.Future()
        with self._due:
            if self._closed:  # closed while this request waited for the lock
                return self._run(inputs)
            pending_rows = sum(r for _, r, _ in self._pending)
            if self._pending and (
                not _stackable(self._pending[0][0], inputs)
                or pending_rows + rows > self.max_batch_size
            ):
                self._flush_locked()
            self._pending.append((inputs, rows, future))
            if sum(r for _, r, _ in self._pending) >= self.max_batch_size:
                self._flush_locked()
            elif self._deadline is None:
                self._deadline = time.monotonic() + self.timeout
                self._due.notify()
        return future.result()

    def close(self) -> None:
        """Runs what is waiting, then ends the timer and the pool's threads once their
        batches are done. A request that arrives later runs alone, unbatched."""
        with self._due:
            self._closed = True
            self._flush_locked()
            self._due.notify()
        self._timer.join()
        self._pool.shutdown(wait=False)  # the queued batches still run

    def _flush_when_due(self) -> None:
        with self._due:
            while not self._closed:
                if self._deadline is None:
                    self._due.wait()
                elif (left := self._deadline - time.monotonic()) > 0:
                    self._due.wait(left)
                else:
                    self._flush_locked()

    def _flush_locked(self) -> None:
        batch, self._pending = self._pending, []
        self._deadline = None
        if batch:
            self._pool.submit(self._run_batch, batch)

    def _run_batch(self, batch: list[_Pending]) -> None:
        if self._on_batch is not None:
            self._on_batch(sum(rows for _, rows, _ in batch))
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


def rows_of(inputs: dict[str, np.ndarray]) -> int | None:
    """The first dimension every input shares, or None (a scalar, or dimensions differ)."""
    firsts = {np.shape(v)[0] if np.ndim(v) else None for v in inputs.values()}
    if len(firsts) != 1 or None in firsts:
        return None
    return firsts.pop()


def split_rows(inputs: dict[str, np.ndarray]) -> int | None:
    """The rows a request can be split into: the first dimension its row inputs share, where
    an input of first dimension 1 holds one value for every row (a control such as an lm
    export's `temperature` [1]); None when no such count exists.

    Example:
      >>> split_rows({"prompt": np.zeros(5), "temperature": np.zeros(1)})
      5
      >>> split_rows({"prompt": np.zeros(5), "temperature": np.zeros(3)}) is None
      True
    """
    firsts = {np.shape(v)[0] if np.ndim(v) else None for v in inputs.values()}
    if None in firsts or not firsts:
        return None
    rows = max(firsts)
    return rows if firsts <= {1, rows} else None


def _stackable(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[k])[1:] == np.shape(b[k])[1:] and a[k].dtype.kind == b[k].dtype.kind for k in a
    )
