"""The served models, and the thread that watches their folders for new versions."""

from __future__ import annotations

import logging
import threading

from tfhf.serving.model_server.config import ModelSpec
from tfhf.serving.model_server.errors import NotFound
from tfhf.serving.model_server.served_model import ServedModel

log = logging.getLogger("tfhf.serve")


class ModelManager:
    """The served models, and a thread that polls their folders for new versions.

    Args:
      specs: The models to serve.
      poll_seconds: How often to look for new versions; 0 looks only in `start`.
      batching: `Batcher` arguments for every model, or None.
      max_rows_per_call: Requests with more rows run in parts this size (`Servable`).
    """

    def __init__(
        self,
        specs: list[ModelSpec],
        *,
        poll_seconds: float = 1.0,
        batching: dict | None = None,
        max_rows_per_call: int = 64,
    ):
        self.models = {
            s.name: ServedModel(s, batching=batching, max_rows_per_call=max_rows_per_call)
            for s in specs
        }
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Loads every model's newest version, then polls in the background."""
        for model in self.models.values():
            model.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ends the background polling; the loaded versions keep serving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def model(self, name: str) -> ServedModel:
        """The model served as `name`.

        Raises:
          NotFound: No model has that name.
        """
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def status(self, name: str, version: int | None = None) -> list[dict]:
        """TF Serving's `model_version_status` list for a model (or one version)."""
        items = sorted(self.model(name).status.items(), reverse=True)
        if not items:
            raise NotFound(f"Could not find any versions of model {name}")
        if version is not None:
            items = [(v, s) for v, s in items if v == version]
            if not items:
                raise NotFound(f"Could not find any versions of model {name} (version {version})")
        return [
            {
                "version": str(v),
                "state": state,
                "status": {
                    "error_code": "OK" if not message else "UNKNOWN",
                    "error_message": message,
                },
            }
            for v, (state, message) in items
        ]

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for model in self.models.values():
                try:
                    model.poll()
                except Exception:  # noqa: BLE001  (a bad folder must not end the polling)
                    log.exception("model %s: polling failed", model.spec.name)
