"""Bounds on live streams: how many run at once, how many rows each may decode, and how long
one may wait for a client that stopped reading."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from tfhf.serving.model_server.batching import split_rows
from tfhf.serving.model_server.errors import Overloaded, RequestError


class StreamLimits:
    """What a stream may hold: a slot among `max_live` (0: no cap) and at most `max_rows`
    rows (0: no cap). A stream's decoding state (its key/value cache among it) lives as long
    as the stream, and a stream is not split into calls as a predict request is, so both
    bound the memory streams can hold; `write_timeout` (seconds) ends a stream whose client
    has stopped reading.

    Example:
      >>> limits = StreamLimits(max_live=1, max_rows=4)
      >>> with limits.slot():
      ...     limits.check_rows({"prompt": np.array([b"a", b"b"])})
      ...     limits.slot().__enter__()
      Traceback (most recent call last):
      ...
      tfhf.serving.model_server.errors.Overloaded: 1 streams are live, as many as this ...
    """

    def __init__(self, *, max_live: int = 0, max_rows: int = 0, write_timeout: float = 30.0):
        self.max_live, self.max_rows, self.write_timeout = max_live, max_rows, write_timeout
        self._lock = threading.Lock()
        self.live = 0

    @contextlib.contextmanager
    def slot(self, flag: str = "--max_live_streams"):
        """Holds one live stream's slot, or raises `Overloaded` at once when all are taken."""
        with self._lock:
            if self.max_live and self.live >= self.max_live:
                raise Overloaded(
                    f"{self.live} streams are live, as many as this server runs at once "
                    f"({flag}); retry later"
                )
            self.live += 1
        try:
            yield
        finally:
            with self._lock:
                self.live -= 1

    def check_rows(self, inputs: dict[str, np.ndarray]) -> None:
        """Raises `RequestError` for a stream of more rows than `max_rows`."""
        rows = split_rows(inputs) or 0
        if self.max_rows and rows > self.max_rows:
            raise RequestError(
                f"a stream decodes at most {self.max_rows} rows (--max_stream_rows), got "
                f"{rows}: split them over several streams, or use :predict"
            )
