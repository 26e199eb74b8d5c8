"""Prometheus metrics, as TF Serving's `--monitoring_config_file` turns them on: requests by
model, version, signature, API and status, their latency, batch sizes, and model loads;
and beside them TF Serving's own request count and latencies, under TF Serving's names and
labels, so that dashboards and alerts built for TF Serving read them unchanged.

Example:
  >>> metrics = Metrics(parse_monitoring_config(
  ...     'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }'))
  >>> with metrics.track("rest", "classify") as request:
  ...     request.update(version=1, signature="serving_default")
  >>> 'status="OK"' in metrics.exposition().decode()
  True
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import threading
import time

import prometheus_client
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from tfhf.serving.model_server.errors import Cancelled, NotFound, Overloaded, RequestError

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
        self.tf_serving = TFServingMetrics()

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
        # TF Serving's status label is the code a gRPC client sees: the same for REST.
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
        except Overloaded:
            status = "RESOURCE_EXHAUSTED"
            raise
        except BaseException:
            status = "INTERNAL"
            raise
        finally:
            if self.config.enabled:
                version = str(labels["version"])
                model = model if version else UNKNOWN
                signature = labels["signature"] or UNKNOWN
                seconds = time.perf_counter() - start
                self._requests.labels(model, version, signature, api, status).inc()
                self._latency.labels(model, signature, api).observe(seconds)
                method = "PredictStream" if signature == "stream" else "Predict"
                self.tf_serving.request(model, status, method, api.upper(), seconds)

    def model_call(self, model: str, method: str, seconds: float) -> None:
        """Records one call of a served model's signature (TF Serving's runtime latency)."""
        if self.config.enabled:
            self.tf_serving.runtime(model, method, seconds)

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
        """The metrics in Prometheus' text format: tfhf's, then TF Serving's."""
        if not self.config.enabled:
            return b""
        return prometheus_client.generate_latest(self.registry) + self.tf_serving.exposition()


# TF Serving's latency buckets: 10 us times powers of 1.8, 33 of them (about 20 minutes).
TF_SERVING_BUCKETS = tuple(10 * 1.8**i for i in range(33))


class TFServingMetrics:
    """TF Serving's own request metrics, rendered as TF Serving renders them (its metric
    paths with ':' for '/', counters without a `_total` suffix, latencies in microseconds):

      :tensorflow:serving:request_count{model_name, status}  every predict request, status
          the gRPC code name (OK, INVALID_ARGUMENT, NOT_FOUND, ...), REST and gRPC alike
      :tensorflow:serving:request_latency{model_name, API, entrypoint}  answered requests,
          API "Predict" (or "PredictStream"), entrypoint "REST" or "GRPC"
      :tensorflow:serving:runtime_latency{model_name, API, runtime}  each model call, runtime
          "TF1" (TF Serving's name for the SavedModel runtime that serves these exports)

    prometheus_client cannot write a name that starts with ':' or a counter without
    `_total`, hence this small writer of its own.

    Example:
      >>> m = TFServingMetrics()
      >>> m.request("classify", "OK", "Predict", "REST", 0.002)
      >>> print(m.exposition().decode().splitlines()[1])
      :tensorflow:serving:request_count{model_name="classify",status="OK"} 1
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        # labels -> (count per bucket, sum in microseconds, count)
        self._request: dict[tuple[str, str, str], list] = {}
        self._runtime: dict[tuple[str, str, str], list] = {}

    def request(self, model: str, status: str, method: str, entrypoint: str, seconds: float):
        """One request's outcome; its latency too when it was answered (as TF Serving)."""
        with self._lock:
            key = (model, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            if status == "OK":
                _observe(self._request, (model, method, entrypoint), seconds * 1e6)

    def runtime(self, model: str, method: str, seconds: float) -> None:
        """One model call's time."""
        with self._lock:
            _observe(self._runtime, (model, method, "TF1"), seconds * 1e6)

    def exposition(self) -> bytes:
        """The three metrics in Prometheus' text format."""
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, status), count in sorted(self._counts.items()):
                lines.append(
                    f":tensorflow:serving:request_count{_labels(model_name=model, status=status)}"
                    f" {count}"
                )
            for name, third, series in (
                ("request_latency", "entrypoint", self._request),
                ("runtime_latency", "runtime", self._runtime),
            ):
                lines.append(f"# TYPE :tensorflow:serving:{name} histogram")
                for (model, method, last), (buckets, total, count) in sorted(series.items()):
                    labels = {"model_name": model, "API": method, third: last}
                    cumulative = 0
                    for bound, n in zip((*TF_SERVING_BUCKETS, float("inf")), buckets, strict=True):
                        cumulative += n
                        le = "+Inf" if bound == float("inf") else f"{bound:.10g}"
                        lines.append(
                            f":tensorflow:serving:{name}_bucket{_labels(**labels, le=le)}"
                            f" {cumulative}"
                        )
                    lines.append(f":tensorflow:serving:{name}_sum{_labels(**labels)} {total:.10g}")
                    lines.append(f":tensorflow:serving:{name}_count{_labels(**labels)} {count}")
        return ("\n".join(lines) + "\n").encode()


def _observe(series: dict, key: tuple, microseconds: float) -> None:
    if key not in series:
        series[key] = [[0] * (len(TF_SERVING_BUCKETS) + 1), 0.0, 0]
    buckets, total, count = series[key]
    buckets[bisect.bisect_left(TF_SERVING_BUCKETS, microseconds)] += 1
    series[key][1:] = [total + microseconds, count + 1]


def _labels(**labels: str) -> str:
    """`{name="value",...}` with each value escaped as Prometheus' text format requires."""

    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escaped(v)}"' for k, v in labels.items()) + "}"
