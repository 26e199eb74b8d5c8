"""tfhf.serve against requests written to hurt it: ambiguous HTTP framing, bodies that
never arrive, deep JSON, too many connections, clients that leave, and gRPC tensors that
grow when decoded. Each is refused (or bounded) with a clear answer, and the server keeps
answering."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from sleeper_model import CHATTER_CHUNKS, export_chatter, export_sleeper
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfhf.models.loading import load_sequence_classifier
from tfhf.serving import model_server as ms
from tfhf.serving.export import export_classifier
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor


@pytest.fixture(scope="module")
def exports(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    model = load_sequence_classifier(tiny_model_dir, ["no", "yes"])
    preprocessor = BertPreprocessor(
        tiny_model_dir / "vocab.txt", lower_case=True, max_seq_length=16
    )
    export_classifier(model, preprocessor, ["no", "yes"], root / "classify")
    export_sleeper(root / "sleeper")
    return [ms.ModelSpec("classify", root / "classify"), ms.ModelSpec("sleeper", root / "sleeper")]


class Server:
    """Both front ends over `specs` on free loopback ports."""

    def __init__(
        self,
        specs,
        *,
        max_rows_per_call=64,
        batching=None,
        streams=None,
        grpc_workers=16,
        max_model_calls=4,
        metrics=None,
        **rest_args,
    ):
        self.manager = ms.ModelManager(
            specs,
            poll_seconds=0,
            metrics=metrics,
            max_rows_per_call=max_rows_per_call,
            batching=batching,
            streams=streams,
            max_model_calls=max_model_calls,
        )
        self.manager.start()
        rest_args = {"max_body_bytes": 20_000, "timeout_seconds": 1.0, **rest_args}
        self.rest = ms.rest_server(self.manager, port=0, **rest_args)
        threading.Thread(target=self.rest.serve_forever, daemon=True).start()
        self.port = self.rest.server_address[1]
        self.grpc, grpc_port = ms.grpc_server(self.manager, port=0, workers=grpc_workers)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")

    def post(self, path: str, body) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("POST", path, json.dumps(body).encode())
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        return response.status, payload

    def healthy(self) -> bool:
        status, _ = self.post("/v1/models/classify:predict", {"instances": ["fine"]})
        return status == 200

    def stop(self):
        self.channel.close()
        self.grpc.stop(grace=None)
        self.rest.shutdown()
        self.manager.stop()


@pytest.fixture(scope="module")
def server(exports):
    running = Server(exports)
    yield running
    running.stop()


def exchange(port: int, raw: bytes, *, wait: float = 5.0) -> tuple[bytes, bool]:
    """Sends `raw` on a new connection; (what came back, whether the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(raw)
        received = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            if not chunk:
                return received, True
            received += chunk
        return received, False


def json_body(response: bytes) -> dict:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


PREDICT = b"POST /v1/models/classify:predict HTTP/1.1\r\nHost: x\r\n"
CLOSE = b"Connection: close\r\n"  # so `exchange` returns with the answer, not at `wait`


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: 22\r\nContent-Length: 20\r\n",
    ],
    ids=["length-and-chunked", "two-lengths"],
)
def test_ambiguous_framing_is_refused_and_a_hidden_request_is_never_answered(server, headers):
    body = b'{"instances": ["a"]}\r\n0\r\n\r\nGET /v1/models/classify HTTP/1.1\r\nHost: x\r\n\r\n'
    response, closed = exchange(server.port, PREDICT + headers + b"\r\n" + body)
    assert b" 400 " in response.split(b"\r\n")[0], response[:200]
    assert response.count(b"HTTP/1.") == 1 and closed
    assert server.healthy()


@pytest.mark.parametrize(
    "first_line, extra", [(b"HTTP/1.1", b"Connection: close\r\n"), (b"HTTP/1.0", b"")]
)
def test_a_refused_request_that_asked_to_close_is_closed_at_once(server, first_line, extra):
    head = PREDICT.replace(b"HTTP/1.1", first_line) + extra
    response, closed = exchange(server.port, head + b"Content-Length: 9\r\n\r\n{not json", wait=3)
    assert b" 400 " in response.split(b"\r\n")[0]
    assert "malformed JSON" in json_body(response)["error"]
    assert closed


def test_a_body_shorter_than_its_content_length_gets_a_408(server, caplog):
    start = time.monotonic()
    response, closed = exchange(server.port, PREDICT + b"Content-Length: 100\r\n\r\n{", wait=10)
    assert response.startswith(b"HTTP/1.1 408") and closed
    assert "did not arrive within 1 s" in json_body(response)["error"]
    assert time.monotonic() - start < 5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert server.healthy()


def test_a_body_over_the_limit_that_is_sent_still_gets_its_413(server):
    body = json.dumps({"instances": ["x" * 50_000]}).encode()
    head = PREDICT + b"Content-Length: %d\r\n\r\n" % len(body)
    response, closed = exchange(server.port, head + body)
    assert response.startswith(b"HTTP/1.1 413")
    assert "exceeds the limit of 20000" in json_body(response)["error"]
    assert closed


def test_deep_json_is_a_400_without_a_traceback(server, caplog):
    for depth in (40, 600, 5000):
        body = ('{"instances": ' + "[" * depth + '"a"' + "]" * depth + "}").encode()
        head = PREDICT + CLOSE + b"Content-Length: %d\r\n\r\n" % len(body)
        response, _ = exchange(server.port, head + body, wait=2)
        assert b" 400 " in response.split(b"\r\n")[0]
        error = json_body(response)["error"]
        assert "deeper than 32 levels" in error or "malformed JSON" in error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert server.healthy()


def test_an_empty_batch_is_a_clear_400(server):
    for body in ({"inputs": []}, {"inputs": {"text": []}}):
        status, payload = server.post("/v1/models/classify:predict", body)
        assert status == 400 and "input 'text' is empty" in payload["error"], payload


def test_a_method_other_than_get_or_post_is_a_405(server):
    request = b"PUT /v1/models/classify HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n"
    response, _ = exchange(server.port, request)
    assert response.startswith(b"HTTP/1.1 405")
    assert "PUT is not supported" in json_body(response)["error"]


def test_64_clients_connecting_at_once_are_all_answered(server):
    statuses = []

    def ask():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("GET", "/v1/models/classify")
        statuses.append(connection.getresponse().status)
        connection.close()

    threads = [threading.Thread(target=ask) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 64


def test_a_connection_beyond_the_cap_gets_a_503_and_a_slot_frees_when_one_closes(exports):
    capped = Server(exports[1:], max_connections=2)
    try:
        idle = [socket.create_connection(("127.0.0.1", capped.port)) for _ in range(2)]
        time.sleep(0.3)  # both accepted
        response, closed = exchange(
            capped.port, b"GET /v1/models/sleeper HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n"
        )
        assert response.startswith(b"HTTP/1.1 503") and closed
        assert "too many open connections" in json_body(response)["error"]
        idle[0].close()
        time.sleep(0.3)
        response, _ = exchange(
            capped.port, b"GET /v1/models/sleeper HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n", wait=2
        )
        assert response.startswith(b"HTTP/1.1 200")
        idle[1].close()
    finally:
        capped.stop()


def test_a_client_that_leaves_mid_request_stops_its_work(exports):
    # One thread runs requests, one row per model call: a request of 30 rows of 0.2 s
    # would hold it for 6 s unless the server stops once its client has gone.
    alone = Server(exports[1:], threads=1, max_rows_per_call=1)
    try:
        body = json.dumps({"instances": [0.2] * 30}).encode()
        head = b"POST /v1/models/sleeper:predict HTTP/1.1\r\nHost: x\r\n"
        with socket.create_connection(("127.0.0.1", alone.port)) as sock:
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.5)
        start = time.monotonic()
        status, payload = alone.post("/v1/models/sleeper:predict", {"instances": [0.0, 0.5]})
        assert status == 200 and payload["predictions"] == [0.0, 1.0]
        assert time.monotonic() - start < 2.5
    finally:
        alone.stop()


def test_a_flooded_model_cannot_keep_another_model_waiting(exports):
    # Two REST threads and two model calls at once, one of each kept for each model. Six
    # sleeper requests of 1.5 s arrive first: in one first-come pool they would hold both
    # threads, and classify would wait behind them for 4.5 s or more.
    running = Server(exports, threads=2, max_model_calls=2)
    finished = []

    def sleep(api: str) -> None:
        if api == "rest":
            running.post("/v1/models/sleeper:predict", {"instances": [1.5]})
        else:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "sleeper"
            request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([1.5], dtype=tf.float32))
            prediction_service_pb2_grpc.PredictionServiceStub(running.channel).Predict(request, 30)
        finished.append(time.monotonic())

    try:
        flood = [threading.Thread(target=sleep, args=(api,)) for api in ["rest", "grpc"] * 3]
        for thread in flood:
            thread.start()
        assert _wait_for(
            lambda: running.manager.models["sleeper"].current._share.running("sleeper")
        )
        time.sleep(0.2)  # the rest of the flood queues
        assert running.healthy()
        classify = predict_pb2.PredictRequest()
        classify.model_spec.name = "classify"
        classify.inputs["text"].CopyFrom(tf.make_tensor_proto(["fine"]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
        assert stub.Predict(classify, 10.0).outputs["label"]
        answered = time.monotonic()
        for thread in flood:
            thread.join()
        assert answered < min(finished)  # both answered before the first sleeper ended
        assert len(finished) == 6
    finally:
        running.stop()


def test_grpc_calls_cancelled_while_they_wait_for_their_turn_never_run(exports):
    # HTTP/2 rapid reset: calls sent and cancelled at once. A call whose client has gone by
    # its turn is skipped, so the model runs only the calls someone waits for.
    metrics = ms.Metrics(ms.parse_monitoring_config("prometheus_config { enable: true }"))
    running = Server(exports, max_model_calls=2, metrics=metrics)  # one slot per model
    stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)

    def sleeper(seconds: float):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "sleeper"
        request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([seconds], dtype=tf.float32))
        return request

    try:
        holder = stub.Predict.future(sleeper(1.5), 30)
        assert _wait_for(
            lambda: running.manager.models["sleeper"].current._share.running("sleeper")
        )
        share = running.manager.models["sleeper"].current._share
        waiting = [stub.Predict.future(sleeper(1.0), 30) for _ in range(10)]
        assert _wait_for(lambda: len(share._waiting.get("sleeper", ())) == 10)
        for call in waiting:
            call.cancel()
        assert holder.result().outputs["doubled"].float_val == [3.0]
        assert stub.Predict(sleeper(0.0), 30).outputs["doubled"].float_val == [0.0]
    finally:
        running.stop()
    calls = metrics.tf_serving.exposition().decode()
    runtime = [
        line
        for line in calls.splitlines()
        if "runtime_latency_count" in line and '"sleeper"' in line
    ]
    assert runtime == [
        ':tensorflow:serving:runtime_latency_count{model_name="sleeper",API="Predict",'
        'runtime="TF1"} 2'
    ]


def test_requests_with_more_rows_than_one_call_give_one_calls_outputs(exports):
    split = Server(exports, max_rows_per_call=2)
    try:
        texts = ["good", "bad film", "fine , really", "no", "a b c d e"]
        status, whole = split.post("/v1/models/classify:predict", {"instances": texts})
        assert status == 200
        servable = split.manager.model("classify").current
        one_call = servable._call("serving_default", {"text": tf.constant(texts).numpy()})
        got = [row["probabilities"] for row in whole["predictions"]]
        np.testing.assert_allclose(got, one_call["probabilities"], atol=1e-6)
    finally:
        split.stop()


def test_with_batching_on_a_request_larger_than_a_batch_still_runs_in_parts(exports):
    split = Server(exports, max_rows_per_call=2, batching={"max_batch_size": 4, "timeout": 0.01})
    try:
        servable = split.manager.model("classify").current
        function, calls = servable._functions["serving_default"], []

        def counting(**inputs):
            calls.append(int(inputs["text"].shape[0]))
            return function(**inputs)

        servable._functions["serving_default"] = counting
        texts = ["good", "bad film", "fine , really", "no", "a b c d e"]
        status, _ = split.post("/v1/models/classify:predict", {"instances": texts})
        assert status == 200 and calls == [2, 2, 1]  # not one call of 5
    finally:
        split.stop()


def grpc_predict(server, proto, *, model="classify", name="text"):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[name].CopyFrom(proto)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, 30.0)
    return e.value


def test_grpc_refuses_a_string_that_would_fill_a_declared_shape(server):
    proto = tf.make_tensor_proto(["x" * 3_500_000])
    proto.tensor_shape.dim[0].size = 1000  # one value on the wire, 3.5 GB once decoded
    start = time.monotonic()
    error = grpc_predict(server, proto)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decodes to 3500000000 bytes" in error.details()
    assert time.monotonic() - start < 5
    assert server.healthy()


def test_grpc_counts_the_padding_a_short_list_of_strings_decodes_to(server):
    # Two strings declared [64]: decoding repeats the last one 63 times, 126 MB from a 2 MB
    # message; the size is counted as decoded, not as sent.
    proto = tf.make_tensor_proto([b"a", b"word " * 400_000])
    proto.tensor_shape.dim[0].size = 64
    start = time.monotonic()
    error = grpc_predict(server, proto)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"decodes to {1 + 63 * 2_000_000} bytes" in error.details()
    assert time.monotonic() - start < 5
    assert server.healthy()


def test_grpc_refuses_a_tensor_kind_no_request_carries(server):
    proto = tf.make_tensor_proto(["a"])
    proto.dtype = tf.variant.as_datatype_enum
    error = grpc_predict(server, proto)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dtype DT_VARIANT" in error.details()


def test_grpc_calls_beyond_the_cap_are_refused_at_once_not_queued(exports):
    manager = ms.ModelManager(exports, poll_seconds=0)
    manager.start()
    grpc_server, port = ms.grpc_server(manager, port=0, workers=1, max_concurrent_rpcs=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "sleeper"
    request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    try:
        calls = [stub.Predict.future(request, 30.0) for _ in range(2)]  # one runs, one waits
        time.sleep(0.3)
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, 30.0)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - start < 0.5  # not after the two ahead of it
        for call in calls:
            doubled = tf.make_ndarray(call.result().outputs["doubled"])
            np.testing.assert_array_equal(doubled, [2.0])
        stub.Predict(request, 30.0)  # the cap is on calls at once, not in all
    finally:
        channel.close()
        grpc_server.stop(grace=None)
        manager.stop()


def test_slow_and_idle_connections_do_not_stop_a_well_behaved_client(server):
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    head = PREDICT + b"Content-Length: 20\r\n"
    answered, dropped = [], set()
    try:
        for i in range(30):  # a header byte from each slow client every 50 ms
            for sock in slow:
                try:
                    sock.send(head[i : i + 1])
                except OSError:
                    dropped.add(sock)
            answered.append(server.healthy())
            time.sleep(0.05)
        # Without a whole request within the timeout (1 s here), a connection is closed.
        for sock in slow + idle:
            sock.settimeout(5)
            try:
                if sock.recv(1) == b"":
                    dropped.add(sock)
            except OSError:
                dropped.add(sock)
    finally:
        for sock in slow + idle:
            sock.close()
    assert answered == [True] * 30
    assert len(dropped) == 400


def test_clients_that_leave_mid_body_log_one_line_each_and_no_traceback(server, caplog):
    with caplog.at_level("INFO", logger="tfhf.serve"):
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(PREDICT + b"Content-Length: 1000\r\n\r\n" + b'{"instances": [')
            time.sleep(0.05)
        time.sleep(0.5)
        assert server.healthy()
    records = [r for r in caplog.records if r.name.startswith(("tfhf", "aiohttp"))]
    assert not [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert len(records) <= 5
    assert all("\n" not in r.getMessage() for r in records)


def test_a_malformed_grpc_message_is_refused_in_one_line(server, caplog):
    call = server.channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda raw: raw,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    with caplog.at_level("INFO"):
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                call(b"\xff\xff\xff not a protocol buffer", timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert server.healthy()


class Scaled(tf.Module):
    """`serving_default`: `x` (float32 [batch]) times `factor` ([1] for the whole batch, or
    [batch]), as an lm export's controls are; `serving_default_xla` the same, compiled."""

    def scale(self, x, factor):
        return {"y": x * factor}

    SPECS = [tf.TensorSpec([None], tf.float32, name=n) for n in ("x", "factor")]

    @tf.function(input_signature=SPECS)
    def plain(self, x, factor):
        return self.scale(x, factor)

    @tf.function(input_signature=SPECS, jit_compile=True)
    def compiled(self, x, factor):
        return self.scale(x, factor)


@pytest.mark.parametrize("max_rows_per_call, parts", [(2, [2, 2, 1]), (0, [64, 36])])
def test_a_request_with_one_value_controls_is_split_too(tmp_path, max_rows_per_call, parts):
    module = Scaled()
    signatures = {
        "serving_default": module.plain.get_concrete_function(),
        "serving_default_xla": module.compiled.get_concrete_function(),
    }
    tf.saved_model.save(module, str(tmp_path / "m" / "1"), signatures=signatures)
    rows = 5 if max_rows_per_call else 100
    running = Server([ms.ModelSpec("m", tmp_path / "m")], max_rows_per_call=max_rows_per_call)
    try:
        servable = running.manager.model("m").current
        function, calls = servable._functions["serving_default"], []

        def counting(**inputs):
            calls.append((int(inputs["x"].shape[0]), int(inputs["factor"].shape[0])))
            return function(**inputs)

        servable._functions["serving_default"] = counting
        x = list(range(rows))
        status, answer = running.post("/v1/models/m:predict", {"inputs": {"x": x, "factor": [3.0]}})
        assert status == 200 and answer["outputs"] == [3.0 * v for v in x]
        # The XLA twin answers, in parts no larger than its largest row bucket (64), each
        # with the whole one-value control.
        assert calls == [(n, 1) for n in parts]
    finally:
        running.stop()


@pytest.fixture(scope="module")
def chatty(exports, tmp_path_factory):
    """The classify export beside a `Chatter`, whose streams fill a connection fast."""
    root = tmp_path_factory.mktemp("chatty")
    export_chatter(root / "chatter")
    return [exports[0], ms.ModelSpec("chatter", root / "chatter")]


STREAM = b"POST /v1/models/chatter:predict_stream HTTP/1.1\r\nHost: x\r\n"


def _stuck_stream(port: int, rows: int = 1) -> socket.socket:
    """A stream whose client sends its request and never reads."""
    body = json.dumps({"inputs": {"prompt": ["a"] * rows}}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(STREAM + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return sock


def _wait_for(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_live_streams_are_capped_and_one_that_stops_reading_ends_after_the_timeout(chatty, caplog):
    limits = ms.StreamLimits(max_live=2, max_rows=4, write_timeout=1.0)
    running = Server(chatty, streams=limits)
    stuck = []
    try:
        stuck = [_stuck_stream(running.port) for _ in range(2)]
        assert _wait_for(lambda: limits.live == 2)
        response, _ = exchange(
            running.port,
            STREAM + CLOSE + b'Content-Length: 29\r\n\r\n{"inputs": {"prompt": ["a"]}}',
        )
        assert response.startswith(b"HTTP/1.1 503")
        assert "--max_live_streams" in json_body(response)["error"]
        assert running.healthy()  # a predict is no stream: it is answered meanwhile
        # The stuck ones end once their writes have waited a second: their slots free.
        assert _wait_for(lambda: limits.live == 0, seconds=15)
        status, refused = running.post(
            "/v1/models/chatter:predict_stream", {"inputs": {"prompt": ["a"] * 5}}
        )
        assert status == 400 and "at most 4 rows" in refused["error"]
    finally:
        for sock in stuck:
            sock.close()
        running.stop()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_grpc_streams_that_stop_reading_leave_threads_for_other_calls(chatty):
    limits = ms.StreamLimits(max_live=8, max_rows=4, write_timeout=1.0)
    running = Server(chatty, streams=limits, grpc_workers=4)  # two threads for streams
    stream = running.channel.unary_stream(
        "/tfhf.serving.PredictionStreamService/PredictStream",
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "chatter"
    request.inputs["prompt"].CopyFrom(tf.make_tensor_proto(["a", "b"]))
    try:
        readers = [stream(request, timeout=60) for _ in range(2)]
        for reader in readers:
            next(reader)  # one message read, then no more
        assert _wait_for(lambda: limits.live == 2)
        with pytest.raises(grpc.RpcError) as refused:
            next(stream(request, timeout=60))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        start = time.monotonic()
        classify = predict_pb2.PredictRequest()
        classify.model_spec.name = "classify"
        classify.inputs["text"].CopyFrom(tf.make_tensor_proto(["fine"]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
        assert stub.Predict(classify, 10.0).outputs["label"]
        assert time.monotonic() - start < 5
        # The write timeout cancels the stuck calls, which frees their threads and state.
        assert _wait_for(lambda: limits.live == 0, seconds=15)
        for reader in readers:
            with pytest.raises(grpc.RpcError) as ended:
                for _ in range(CHATTER_CHUNKS):
                    next(reader)
            assert ended.value.code() == grpc.StatusCode.CANCELLED
    finally:
        running.stop()
