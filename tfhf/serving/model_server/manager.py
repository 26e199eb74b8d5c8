"""The served models, the thread that watches their folders for new versions, and
reloading the model config without a restart."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from tfhf.serving.model_server.config import ModelSpec, parse_model_config
from tfhf.serving.model_server.errors import NotFound
from tfhf.serving.model_server.metrics import Metrics
from tfhf.serving.model_server.served_model import ServedModel
from tfhf.serving.model_server.sharing import FairShare
from tfhf.serving.model_server.streams import StreamLimits

# Each live stream holds its decoding state (a key/value cache per row) until it ends.
DEFAULT_MAX_LIVE_STREAMS = 32
DEFAULT_MAX_STREAM_ROWS = 64


def default_max_model_calls() -> int:
    """Model calls at once over both front ends: twice the cores this process may use (on 2
    cores, 4 kept a classify client's p99 at 76 ms beside 32 lm clients, where 8 let it
    reach 152 ms and 2 halved the lm's answers)."""
    return 2 * max(1, len(os.sched_getaffinity(0)))


log = logging.getLogger("tfhf.serve")


class ModelManager:
    """The served models, and a thread that polls their folders for new versions.

    Args:
      specs: The models to serve.
      poll_seconds: How often to look for new versions; 0 looks only in `start`.
      batching: `Batcher` arguments for every model, or None.
      max_rows_per_call: Requests with more rows run in parts this size (`Servable`).
      xla_twins: Answer a signature with its XLA twin where an export has one (`Servable`).
      metrics: Where requests, batches and loads are recorded; None records nothing.
      streams: The bounds on live streams (`StreamLimits`) both front ends apply.
      max_model_calls: Model calls running at once, each model holding at most its share
        (`FairShare`); None: `default_max_model_calls()`.
    """

    def __init__(
        self,
        specs: list[ModelSpec],
        *,
        poll_seconds: float = 1.0,
        batching: dict | None = None,
        max_rows_per_call: int = 64,
        metrics: Metrics | None = None,
        xla_twins: bool = True,
        streams: StreamLimits | None = None,
        max_model_calls: int | None = None,
    ):
        self.metrics = metrics or Metrics()
        self.streams = streams or StreamLimits(
            max_live=DEFAULT_MAX_LIVE_STREAMS, max_rows=DEFAULT_MAX_STREAM_ROWS
        )
        self._model_args = {
            "batching": batching,
            "max_rows_per_call": max_rows_per_call,
            "metrics": self.metrics,
            "xla_twins": xla_twins,
            "share": FairShare(
                max_model_calls or default_max_model_calls(), models=lambda: len(self.models)
            ),
        }
        # Replaced whole, never changed in place: a request reads one consistent mapping.
        self.models = {s.name: ServedModel(s, **self._model_args) for s in specs}
        self.poll_seconds = poll_seconds
        # callbacks(model name, version, seconds, error or None)
        self.on_load: list = [self.metrics.loaded]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reloading = threading.Lock()
        self._lock = threading.Lock()  # one poll or reload at a time

    def start(self) -> None:
        """Loads every model's versions, then polls in the background."""
        for model in self.models.values():
            model.on_load = self.on_load
            model.poll()
        if self.poll_seconds > 0:
            self._background(self._poll_forever)

    def watch_config(self, path: Path, seconds: float) -> None:
        """Re-reads TF Serving's model config file every `seconds` and `reload`s it when it
        has changed; a file that does not parse is logged and the running config kept."""
        last = path.read_text()

        def watch() -> None:
            nonlocal last
            while not self._stop.wait(seconds):
                try:
                    text = path.read_text()
                    if text != last:
                        last = text
                        self.reload(parse_model_config(text))
                except (OSError, ValueError) as e:
                    log.error("model config %s: %s; keeping the running config", path, e)

        self._background(watch)

    def reload(self, specs: list[ModelSpec]) -> None:
        """Serves exactly `specs` from now on, without a restart: a new model is loaded, a
        removed one dropped, a model with a new base path loaded there before it replaces
        the old, a new policy or labels applied. Models that stay answer throughout."""
        with self._reloading:
            models = {}
            for spec in specs:
                model = self.models.get(spec.name)
                if model is None or model.spec.base_path != spec.base_path:
                    model = ServedModel(spec, **self._model_args)
                    model.on_load = self.on_load
                else:
                    model.spec = spec
                with self._lock:
                    model.poll()
                models[spec.name] = model
            gone = sorted(set(self.models) - set(models))
            replaced = [m for m in self.models.values() if models.get(m.spec.name) is not m]
            self.models = models
        for model in replaced:  # dropped, or re-pointed at another base path
            model.close()
        log.warning(
            "model config reloaded: serving %s%s",
            ", ".join(sorted(models)),
            f"; dropped {', '.join(gone)}" if gone else "",
        )

    def stop(self) -> None:
        """Ends the background polling; the loaded versions keep serving."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _background(self, target) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def model(self, name: str) -> ServedModel:
        """The model served as `name`.

        Raises:
          NotFound: No model has that name.
        """
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def servable(self, name: str, version: int | None = None, label: str | None = None):
        """The served `Servable` for a request's model, version or label (`ServedModel`).

        Raises:
          NotFound: No such model, label, or served version.
        """
        return self.model(name).servable(version, label=label)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[dict]:
        """TF Serving's `model_version_status` list for a model (or one version or label)."""
        model = self.model(name)
        if label is not None:
            version = model.version_of_label(label)
        items = sorted(model.status.items(), reverse=True)
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
                    with self._lock:
                        model.poll()
                except Exception:  # noqa: BLE001  (a bad folder must not end the polling)
                    log.exception("model %s: polling failed", model.spec.name)
