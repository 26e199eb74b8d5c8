"""A model's versions: which one is served, how a new one replaces it, and their status."""

from __future__ import annotations

import logging
import threading

from tfhf.serving.model_server.config import ModelSpec
from tfhf.serving.model_server.errors import NotFound
from tfhf.serving.model_server.servable import Servable

log = logging.getLogger("tfhf.serve")


class ServedModel:
    """A model name and its versions: the highest integer version is served; a new one
    replaces it only once it has loaded and warmed up.

    Args:
      spec: The model's name and base path.
      batching: `Batcher` arguments for every version, or None.
      max_rows_per_call: Requests with more rows run in parts this size (`Servable`).
    """

    def __init__(
        self, spec: ModelSpec, *, batching: dict | None = None, max_rows_per_call: int = 64
    ):
        self.spec = spec
        self.batching = batching
        self.max_rows_per_call = max_rows_per_call
        # Guards the served version and the status map together, so a request never sees
        # a switch half done (two versions AVAILABLE, or a version served but LOADING).
        self._lock = threading.Lock()
        self._current: Servable | None = None
        self._status: dict[int, tuple[str, str]] = {}
        self._failed: dict[int, float] = {}  # version -> folder mtime when it failed

    @property
    def current(self) -> Servable | None:
        """The version being served, or None before one has loaded."""
        with self._lock:
            return self._current

    @property
    def status(self) -> dict[int, tuple[str, str]]:
        """A copy of version -> (state, error message), as TF Serving reports them."""
        with self._lock:
            return dict(self._status)

    def servable(self, version: int | None) -> Servable:
        """The served version if it is `version` (any when None).

        Raises:
          NotFound: Nothing is served yet, or another version is.
        """
        current = self.current
        if current is None or (version is not None and version != current.version):
            wanted = (
                f"Specific({self.spec.name}, {version})"
                if version is not None
                else (f"Latest({self.spec.name})")
            )
            raise NotFound(f"Servable not found for request: {wanted}")
        return current

    def poll(self) -> None:
        """Loads the highest version on disk if it is new; keeps the old one on failure."""
        versions = self.spec.versions_on_disk()
        current = self.current
        candidates = [
            v
            for v in versions
            if self._failed.get(v) != self._mtime(v) and (current is None or v > current.version)
        ]
        if not candidates:
            return
        version = candidates[-1]
        with self._lock:
            self._status[version] = ("LOADING", "")
        try:
            servable = Servable(
                self.spec.name,
                version,
                self.spec.base_path / str(version),
                batching=self.batching,
                max_rows_per_call=self.max_rows_per_call,
            )
            warmed = servable.warm_up()
        except Exception as e:  # noqa: BLE001  (any failure keeps the old version serving)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._failed[version] = self._mtime(version)
            with self._lock:
                self._status[version] = ("END", reason)
            log.error(
                "model %s version %d failed to load, still serving %s: %s",
                self.spec.name,
                version,
                f"version {current.version}" if current else "nothing",
                reason,
            )
            return
        with self._lock:
            self._current = servable
            self._status[version] = ("AVAILABLE", "")
            if current is not None:
                self._status[current.version] = ("END", "")
        log.warning(
            "model %s: serving version %d (%d warmup requests replayed)",
            self.spec.name,
            version,
            warmed,
        )

    def _mtime(self, version: int) -> float:
        # A version that failed is tried again once its folder changes (a copy completing).
        folder = self.spec.base_path / str(version)
        try:
            return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
        except OSError:
            return -1.0
