"""Prometheus metrics, as TF Serving's `--monitoring_config_file` turns them on: requests by
model, version, signature, API and status, their latency, batch sizes, and model loads.

Example:
  >>> metrics = Metrics(parse_monitoring_config(
  ...     'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'))
  >>> with metrics.track("rest", "classify") as request:
  ...     request.update(version=1, signature="serving_default")
  >>> 'status="OK"' in metrics.exposition().decode()
  True
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import prometheus_client
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from tfhf.serving.model_server.errors import Cancelled, NotFound, RequestError

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's
# The label of a model or signature the server does not serve.
UNKNOWN = "unknown"


def _monitoring_config_class():
    """TF Serving's `MonitoringConfig` message (monitoring_config.proto, which the
    tensorflow-serving-api package does not ship), built from its two fields."""
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
    )
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)  # bool
    prometheus.field.add(name="path", number=2, type=9, label=1)  # string
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=11,  # message
        label=1,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
    )


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Whether Prometheus metrics are on, and the REST path that serves them."""

    enabled: bool = False
    path: str = DEFAULT_PATH


def parse_monitoring_config(text: str) -> MonitoringConfig:
    """TF Serving's text-format `MonitoringConfig` (`--monitoring_config_file`).

    Raises:
      ValueError: The text does not parse, or the path does not start with "/".

    Example:
      >>> parse_monitoring_config("prometheus_config { enable: true }")
      MonitoringConfig(enabled=True, path='/monitoring/prometheus/metrics')
    """
    message = _monitoring_config_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as e:
        raise ValueError(f"monitoring config: {e}") from None
    path = message.prometheus_config.path or DEFAULT_PATH
    if not path.startswith("/"):
        raise ValueError(f"monitoring config: path '{path}' must start with '/'")
    return MonitoringConfig(message.prometheus_config.enable, path)


class Metrics:
    """The server's metrics in a registry of their own; all calls are no-ops when the
    config leaves them off."""

    def __init__(self, config: MonitoringConfig = MonitoringConfig()):
        self.config = config
        self.registry = prometheus_client.CollectorRegistry()
        if not config.enabled:
            return
        r = self.registry
        self._requests = prometheus_client.Counter(
            "tfhf_serve_requests",
            "Predict requests, by model, version, signature, API (rest, grpc) and status.",
            ["model", "version", "signature", "api", "status"],
            registry=r,
        )
        self._latency = prometheus_client.Histogram(
            "tfhf_serve_request_seconds",
            "Time from a predict request's arrival (its body read) to its answer.",
            ["model", "signature", "api"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self._batch = prometheus_client.Histogram(
            "tfhf_serve_batch_rows",
            "Rows in each batch the server-side batcher ran.",
            ["model", "signature"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self._load = prometheus_client.Histogram(
            "tfhf_serve_model_load_seconds",
            "Time to load and warm up a model version.",
            ["model"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self._load_failures = prometheus_client.Counter(
            "tfhf_serve_model_load_failures",
            "Model versions that failed to load or warm up.",
            ["model"],
            registry=r,
        )

    @contextlib.contextmanager
    def track(self, api: str, model: str):
        """Counts and times one request; the caller fills in `version` and `signature` as
        it learns them. The status is read from the exception, if one leaves the block.

        Labels come only from what the server serves, never from the request as sent: a
        model is named once its version is known (found), a signature once the caller has
        found it in the export; anything else is counted under "unknown", so a client
        cannot grow the metrics with names of its own."""
        labels = {"version": "", "signature": ""}
        start = time.perf_counter()
        status = "OK"
        try:
            yield labels
        except RequestError:
            status = "INVALID_ARGUMENT"
            raise
        except NotFound:
            status = "NOT_FOUND"
            raise
        except Cancelled:
            status = "CANCELLED"
            raise
        except BaseException:
            status = "INTERNAL"
            raise
        finally:
            if self.config.enabled:
                version = str(labels["version"])
                model = model if version else UNKNOWN
                signature = labels["signature"] or UNKNOWN
                self._requests.labels(model, version, signature, api, status).inc()
                self._latency.labels(model, signature, api).observe(time.perf_counter() - start)

    def batch(self, model: str, signature: str, rows: int) -> None:
        """Records one batch the batcher ran."""
        if self.config.enabled:
            self._batch.labels(model, signature).observe(rows)

    def loaded(self, model: str, version: int, seconds: float, error: str | None) -> None:
        """Records one version's load: its time, or its failure."""
        if not self.config.enabled:
            return
        if error is None:
            self._load.labels(model).observe(seconds)
        else:
            self._load_failures.labels(model).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return prometheus_client.generate_latest(self.registry)
