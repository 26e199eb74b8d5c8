"""A model's versions: which one is served, how a new one replaces it, and their status."""

from __future__ import annotations

import logging
import threading
import time

from tfhf.serving.model_server.config import MAX_VERSION, ModelSpec
from tfhf.serving.model_server.errors import NotFound
from tfhf.serving.model_server.memory import release_memory
from tfhf.serving.model_server.metrics import Metrics
from tfhf.serving.model_server.servable import Servable
from tfhf.serving.model_server.sharing import FairShare

log = logging.getLogger("tfhf.serve")


class ServedModel:
    """A model name and its versions: those its spec's policy picks are served (by default
    the highest); a new one is served only once it has loaded and warmed up, and the ones
    it replaces are unloaded in the same step. A version removed from disk is unloaded.

    Args:
      spec: The model's name, base path, version policy and labels.
      batching: `Batcher` arguments for every version, or None.
      max_rows_per_call: Requests with more rows run in parts this size (`Servable`).
      xla_twins: Answer a signature with its XLA twin where an export has one (`Servable`).
      metrics: Where the versions' batchers record batch sizes, or None.
      share: The slots the versions' model calls take turns for (`FairShare`), or None.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        batching: dict | None = None,
        max_rows_per_call: int = 64,
        metrics: Metrics | None = None,
        xla_twins: bool = True,
        share: FairShare | None = None,
    ):
        self.spec = spec
        self.share = share
        self.metrics = metrics
        self.batching = batching
        self.max_rows_per_call = max_rows_per_call
        self.xla_twins = xla_twins
        # Guards the served versions and the status map together, so a request never sees
        # a switch half done (two versions AVAILABLE, or a version served but LOADING).
        self._lock = threading.Lock()
        self._served: dict[int, Servable] = {}
        self._status: dict[int, tuple[str, str]] = {}
        self._failed: dict[int, float] = {}  # version -> folder mtime when it failed
        self._base_missing = False  # said once, when the base path goes, and once back
        self._ignored: set[int] = set()  # version folders out of int64 range, said once
        self.on_load: list = []  # callbacks(model name, version, seconds, error or None)

    @property
    def current(self) -> Servable | None:
        """The highest version being served, or None before one has loaded."""
        with self._lock:
            return self._served[max(self._served)] if self._served else None

    @property
    def versions(self) -> list[int]:
        """The versions being served, ascending."""
        with self._lock:
            return sorted(self._served)

    @property
    def status(self) -> dict[int, tuple[str, str]]:
        """A copy of version -> (state, error message), as TF Serving reports them."""
        with self._lock:
            return dict(self._status)

    def version_of_label(self, label: str) -> int:
        """The version `label` names in the spec.

        Raises:
          NotFound: The spec has no such label.
        """
        if label not in self.spec.labels:
            raise NotFound(
                f"Unrecognized servable version label: {label} (model {self.spec.name} has "
                f"{', '.join(sorted(self.spec.labels)) or 'no labels'})"
            )
        return self.spec.labels[label]

    def servable(self, version: int | None = None, *, label: str | None = None) -> Servable:
        """The served `version`, the one `label` names, or the highest when both are None.

        Raises:
          NotFound: Nothing is served yet, the label is unknown, or that version is not
            served.
        """
        if label is not None:
            version = self.version_of_label(label)
        with self._lock:
            if version is None and self._served:
                return self._served[max(self._served)]
            if version in self._served:
                return self._served[version]
        wanted = (
            f"Specific({self.spec.name}, {version})"
            if version is not None
            else f"Latest({self.spec.name})"
        )
        raise NotFound(f"Servable not found for request: {wanted}")

    def poll(self) -> None:
        """Loads the versions the policy wants that are not served yet, then serves them and
        unloads the rest in one step. A version that fails keeps the old ones serving; it is
        tried again once its folder changes."""
        on_disk = self.spec.versions_on_disk()
        if on_disk is None:
            # The base path is gone (moved away for a moment, or a mount dropped): what is
            # loaded keeps serving until it returns or the config drops the model.
            if not self._base_missing:
                self._base_missing = True
                log.warning(
                    "model %s: base path %s is missing; still serving %s until it returns",
                    self.spec.name,
                    self.spec.base_path,
                    _versions_text(self.versions),
                )
            return
        if self._base_missing:
            self._base_missing = False
            log.warning("model %s: base path %s is back", self.spec.name, self.spec.base_path)
        too_large = {v for v in on_disk if v > MAX_VERSION} - self._ignored
        for version in sorted(too_large):
            log.warning(
                "model %s: version folder %d ignored: versions must fit in int64",
                self.spec.name,
                version,
            )
        self._ignored |= too_large
        on_disk = [v for v in on_disk if v <= MAX_VERSION]
        served = set(self.versions)
        loaded, warmed = {}, {}
        while True:  # a failed version drops out, and the policy picks again
            loadable = [v for v in on_disk if self._failed.get(v) != self._mtime(v)]
            wanted = self.spec.policy.select(loadable)
            missing = wanted - served - set(loaded)
            if not missing:
                break
            for version in sorted(missing, reverse=True):
                servable = self._load(version)
                if servable is not None:
                    loaded[version], warmed[version] = servable
        keep = (wanted & served) | set(loaded)
        if not keep:
            # Nothing wanted could load: the newest version still on disk keeps serving.
            keep = set(sorted(v for v in served if v in on_disk)[-1:])
        gone = served - keep
        if not loaded and not gone:
            return
        with self._lock:
            self._served.update(loaded)
            unloaded = [self._served.pop(version) for version in gone]
            for version in gone:
                self._status[version] = ("END", "")
            for version in loaded:
                self._status[version] = ("AVAILABLE", "")
        _unload(unloaded)
        for version in sorted(loaded):
            log.warning(
                "model %s: serving version %d (%d warmup requests replayed)",
                self.spec.name,
                version,
                warmed[version],
            )
        for version in sorted(gone):
            log.warning("model %s: version %d unloaded", self.spec.name, version)

    def close(self) -> None:
        """Stops serving every version (the model left the config, or moved elsewhere)."""
        with self._lock:
            unloaded, self._served = list(self._served.values()), {}
            for version in self._status:
                self._status[version] = ("END", "")
        _unload(unloaded)

    def _load(self, version: int) -> tuple[Servable, int] | None:
        """(the loaded version, how many warmup requests it replayed), or None."""
        with self._lock:
            self._status[version] = ("LOADING", "")
        start = time.monotonic()
        try:
            servable = Servable(
                self.spec.name,
                version,
                self.spec.base_path / str(version),
                batching=self.batching,
                max_rows_per_call=self.max_rows_per_call,
                metrics=self.metrics,
                xla_twins=self.xla_twins,
                share=self.share,
            )
            warmed = servable.warm_up()
        except Exception as e:  # noqa: BLE001  (any failure keeps the old versions serving)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._failed[version] = self._mtime(version)
            with self._lock:
                self._status[version] = ("END", reason)
                serving = sorted(self._served)
            log.error(
                "model %s version %d failed to load, still serving %s: %s",
                self.spec.name,
                version,
                f"version {serving[-1]}" if serving else "nothing",
                reason,
            )
            for callback in self.on_load:
                callback(self.spec.name, version, time.monotonic() - start, reason)
            return None
        for callback in self.on_load:
            callback(self.spec.name, version, time.monotonic() - start, None)
        return servable, warmed

    def _mtime(self, version: int) -> float:
        # A version that failed is tried again once its folder changes (a copy completing).
        folder = self.spec.base_path / str(version)
        try:
            return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
        except OSError:
            return -1.0


def _versions_text(versions: list[int]) -> str:
    if not versions:
        return "nothing"
    return "version" + ("s " if len(versions) > 1 else " ") + ", ".join(map(str, versions))


def _unload(servables: list[Servable]) -> None:
    """Ends the batching threads of versions no longer served and hands their memory back
    (requests still holding one finish on it first)."""
    for servable in servables:
        servable.close()
    if servables:
        servables.clear()
        release_memory(collect=True)
