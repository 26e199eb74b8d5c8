"""Prometheus metrics behind TF Serving's --monitoring_config_file: requests by model,
version, signature, API and status, latency, batch sizes, and model loads."""

from __future__ import annotations

import http.client
import json
import threading

import grpc
import pytest
import tensorflow as tf
from conftest import free_ports, run_module
from prometheus_client.parser import text_string_to_metric_families
from sleeper_model import export_sleeper
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfhf.serving import model_server as ms

CONFIG = 'prometheus_config { enable: true path: "/metrics/here" }'


def samples(text: str) -> dict:
    """(sample name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_batches_and_loads_are_counted_and_served_on_the_configured_path(tmp_path):
    export_sleeper(tmp_path / "m", 1)
    (tmp_path / "m" / "2").mkdir()  # a version that cannot load
    metrics = ms.Metrics(ms.parse_monitoring_config(CONFIG))
    batching = {"max_batch_size": 8, "timeout": 0.2, "threads": 2}
    manager = ms.ModelManager(
        [ms.ModelSpec("m", tmp_path / "m")], poll_seconds=0, batching=batching, metrics=metrics
    )
    manager.start()
    rest = ms.rest_server(manager, port=0)
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    server, port = ms.grpc_server(manager, port=0)

    def post(body) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", rest.server_address[1])
        connection.request("POST", "/v1/models/m:predict", json.dumps(body))
        status = connection.getresponse().status
        connection.close()
        return status

    try:
        # Three at once, so they run as one batch of 3 rows.
        threads = [threading.Thread(target=post, args=({"instances": [0.0]},)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert post({"instances": ["not a number"]}) == 400
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([0.0, 0.0]))
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30.0)

        connection = http.client.HTTPConnection("127.0.0.1", rest.server_address[1])
        connection.request("GET", "/metrics/here")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/plain")
        text = response.read().decode()
        got = samples(text)
    finally:
        server.stop(grace=None)
        rest.shutdown()
        manager.stop()

    def requests(api, status, signature="serving_default", version="1"):
        labels = dict(api=api, model="m", signature=signature, status=status, version=version)
        return got.get(("tfhf_serve_requests_total", tuple(sorted(labels.items()))), 0)

    assert requests("rest", "OK") == 3
    assert requests("rest", "INVALID_ARGUMENT") == 1
    assert requests("grpc", "OK") == 1
    latency = (("api", "rest"), ("model", "m"), ("signature", "serving_default"))
    assert got[("tfhf_serve_request_seconds_count", latency)] == 4
    batches = (("model", "m"), ("signature", "serving_default"))
    # The warmup-free batches: one of 3 REST rows and one of 2 gRPC rows.
    assert got[("tfhf_serve_batch_rows_count", batches)] == 2
    assert got[("tfhf_serve_batch_rows_sum", batches)] == 5
    assert got[("tfhf_serve_model_load_seconds_count", (("model", "m"),))] == 1
    assert got[("tfhf_serve_model_load_failures_total", (("model", "m"),))] == 1

    # TF Serving's own names and labels, beside tfhf's.
    def tf_serving(name, **labels):
        return got.get((f":tensorflow:serving:{name}", tuple(sorted(labels.items()))), 0)

    # Written as TF Serving writes it (no _total; the parser adds one to what it reads).
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 4\n' in text
    assert tf_serving("request_count_total", model_name="m", status="INVALID_ARGUMENT") == 1
    for entrypoint, answered in (("REST", 3), ("GRPC", 1)):
        labels = {"model_name": "m", "API": "Predict", "entrypoint": entrypoint}
        assert tf_serving("request_latency_count", **labels) == answered
        assert tf_serving("request_latency_bucket", **labels, le="+Inf") == answered
        assert tf_serving("request_latency_sum", **labels) > 0  # microseconds
    runtime = {"model_name": "m", "API": "Predict", "runtime": "TF1"}
    assert tf_serving("runtime_latency_count", **runtime) == 2  # the two batches
    buckets = [
        (float(dict(labels)["le"]), value)
        for (name, labels), value in got.items()
        if name == ":tensorflow:serving:runtime_latency_bucket"
    ]
    assert len(buckets) == 34 and buckets[0][0] == 10 and buckets[1][0] == 18
    assert [v for _, v in sorted(buckets)] == sorted(v for _, v in buckets)  # cumulative


def test_monitoring_config_is_tf_servings_text_format():
    assert ms.parse_monitoring_config("prometheus_config { enable: true }") == ms.MonitoringConfig(
        True, "/monitoring/prometheus/metrics"
    )
    assert not ms.parse_monitoring_config("").enabled
    with pytest.raises(ValueError, match="monitoring config"):
        ms.parse_monitoring_config("prometheus_config { enable: maybe }")
    with pytest.raises(ValueError, match="must start with '/'"):
        ms.parse_monitoring_config('prometheus_config { enable: true path: "metrics" }')


def test_the_cli_refuses_metrics_without_a_rest_port(tmp_path):
    config = tmp_path / "monitoring.config"
    config.write_text("prometheus_config { enable: true }")
    export_sleeper(tmp_path / "m", 1)
    result = run_module(
        "tfhf.serve",
        f"--model_base_path={tmp_path / 'm'}",
        f"--monitoring_config_file={config}",
        "--rest_api_port=0",
        f"--port={free_ports(1)[0]}",
    )
    assert result.returncode == 2
    assert "served on the REST port" in result.stderr.strip().splitlines()[-1]


def test_metric_labels_name_only_what_is_served(tmp_path):
    export_sleeper(tmp_path / "m", 1)
    metrics = ms.Metrics(ms.parse_monitoring_config(CONFIG))
    manager = ms.ModelManager([ms.ModelSpec("m", tmp_path / "m")], poll_seconds=0, metrics=metrics)
    manager.start()
    rest = ms.rest_server(manager, port=0)
    threading.Thread(target=rest.serve_forever, daemon=True).start()
    server, port = ms.grpc_server(manager, port=0)

    def post(path, body) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", rest.server_address[1])
        connection.request("POST", path, json.dumps(body))
        status = connection.getresponse().status
        connection.close()
        return status

    try:
        hostile = [f"name{i}\r{'x' * 100}" for i in range(30)]
        for name in hostile:
            assert (
                post(f"/v1/models/{name.replace(chr(13), '%0D')}:predict", {"instances": [0.0]})
                == 404
            )
            body = {"signature_name": name + "y" * 10_000, "instances": [0.0]}
            assert post("/v1/models/m:predict", body) == 400
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = name
            with (
                grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
                pytest.raises(grpc.RpcError),
            ):
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 30.0)
        text = metrics.exposition().decode()
    finally:
        server.stop(grace=None)
        rest.shutdown()
        manager.stop()
    assert "\r" not in text and "xxxx" not in text and "yyyy" not in text
    counts = {
        dict(labels)["model_name"]: value
        for (name, labels), value in samples(text).items()
        if name == ":tensorflow:serving:request_count_total"
    }
    assert counts == {"unknown": 60, "m": 30}
    requests = {
        labels: value
        for (name, labels), value in samples(text).items()
        if name == "tfhf_serve_requests_total"
    }
    by = {
        tuple(v for k, v in labels if k in ("api", "model", "signature", "status")): value
        for labels, value in requests.items()
    }
    assert by == {
        ("rest", "unknown", "unknown", "NOT_FOUND"): 30,
        ("rest", "m", "unknown", "INVALID_ARGUMENT"): 30,
        ("grpc", "unknown", "unknown", "NOT_FOUND"): 30,
    }
