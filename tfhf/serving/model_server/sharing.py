"""Work shared fairly between models: one model's load cannot starve another's."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator


class FairShare:
    """How many pieces of work run at once, and whose goes next.

    At most `capacity` run at once, and each model holds at most its share of them:
    `capacity` over the number of models served (`models()`), at least one. A model's
    share is kept for it: work of a busy model never takes the slots another model would
    find free, so a request to an idle model starts at once however long the busy model's
    work runs.

    When a slot frees, the waiting model that has used the least time goes next (seconds
    of its work, so a request's cost counts, not only its count); one model's work goes in
    the order it came. A model that was idle starts level with the least used of the busy
    ones: idle time is not saved up to spend later.

    Example:
      >>> share = FairShare(capacity=2, models=lambda: 2)
      >>> with share.turn("classify"):
      ...     share.running("classify")
      1
    """

    def __init__(self, capacity: int, models: Callable[[], int] = lambda: 1):
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._models = models
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}
        self._used: dict[str, float] = {}  # seconds of work, levelled when a model wakes
        self._waiting: dict[str, deque[Callable[[], None]]] = {}

    def share(self) -> int:
        """Pieces of work one model may run at once."""
        return max(1, self.capacity // max(1, self._models()))

    def running(self, model: str) -> int:
        """Pieces of `model`'s work running now."""
        return self._running.get(model, 0)

    @contextlib.contextmanager
    def turn(self, model: str) -> Iterator[None]:
        """Blocks until it is `model`'s turn, holds a slot while the block runs."""
        granted = threading.Event()
        self._queue(model, granted.set)
        granted.wait()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._release(model, time.perf_counter() - start)

    @contextlib.asynccontextmanager
    async def turn_async(self, model: str) -> AsyncIterator[None]:
        """`turn` for a coroutine: waits without holding a thread. Cancelled while it
        waits, it leaves the queue."""
        loop = asyncio.get_running_loop()
        granted = loop.create_future()

        def grant() -> None:
            loop.call_soon_threadsafe(lambda: granted.done() or granted.set_result(None))

        self._queue(model, grant)
        try:
            await asyncio.shield(granted)
        except asyncio.CancelledError:
            if not self._withdraw(model, grant):
                self._release(model, 0.0)  # granted just as it was cancelled
            raise
        start = time.perf_counter()
        try:
            yield
        finally:
            self._release(model, time.perf_counter() - start)

    def _queue(self, model: str, grant: Callable[[], None]) -> None:
        with self._lock:
            if model not in self._running and model not in self._waiting:
                busy = [self._used[m] for m in (*self._running, *self._waiting)]
                self._used[model] = max(self._used.get(model, 0.0), min(busy, default=0.0))
            self._waiting.setdefault(model, deque()).append(grant)
            self._grant_locked()

    def _withdraw(self, model: str, grant: Callable[[], None]) -> bool:
        """Takes a waiting turn out of the queue; False when it was already granted."""
        with self._lock:
            queue = self._waiting.get(model)
            if queue is None or grant not in queue:
                return False
            queue.remove(grant)
            if not queue:
                del self._waiting[model]
            return True

    def _release(self, model: str, seconds: float) -> None:
        with self._lock:
            self._running[model] -= 1
            if not self._running[model]:
                del self._running[model]
            self._used[model] += seconds
            self._grant_locked()

    def _grant_locked(self) -> None:
        """Starts every waiting turn that may go now, least used model first."""
        share = self.share()
        while sum(self._running.values()) < self.capacity:
            ready = [m for m in self._waiting if self._running.get(m, 0) < share]
            if not ready:
                return
            model = min(ready, key=self._used.__getitem__)
            grant = self._waiting[model].popleft()
            if not self._waiting[model]:
                del self._waiting[model]
            self._running[model] = self._running.get(model, 0) + 1
            grant()
