"""`python -m tfhf.serve` under hostile traffic, on loopback: for each attack, what a
well-behaved classify client running alongside saw (one request every 0.2 s: answers,
failures, p50 and p99 latency), the server's memory (RSS) before, at its peak and after,
and what the attackers got.

  python benchmarks/serve_hostile.py --model_base_path=savedmodels/classify \
      --lm_base_path=savedmodels/lm
  python benchmarks/serve_hostile.py --model_base_path=savedmodels/classify \
      --lm_base_path=savedmodels/lm --serve_flags=--enable_batching --cases=lm_flood_rest

Each export's highest version is copied into a temporary base path (so a version switch
can be staged there), and the server runs from this checkout with its default limits,
Prometheus metrics on, and a model config file (classify and lm) it polls every second.
Attacks, first round: 200 clients sending headers a byte at a time; 1,000 idle
connections; malformed requests of seven kinds; a new version switched in under traffic;
a second model added to the config file and removed again; clients that send the largest
request and leave (twice, to see whether memory keeps growing); one largest request
waited for; a gRPC string that would grow 1,000-fold when decoded. Second round: a gRPC
list of strings padded to its declared shape; 500 lm streams that never read; gRPC
streams of 1,024 rows and streams that read one message; metric labels from 2,000 model
names and 200 signature names; 32 lm clients over REST and over gRPC; lm requests of
1,024 prompts, of long prompts and of long words; 400 clients leaving mid-body and
malformed gRPC messages; a base path that vanishes for 3 s; the reload-config RPC; a
version folder beyond int64; gRPC rapid reset (calls cancelled as soon as sent); a
1,024-row sampled stream that never reads. Then SIGTERM with requests in flight.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from absl import app, flags

_BASE = flags.DEFINE_string(
    "model_base_path", "savedmodels/classify", "A classify export root (make classify)."
)
_LM = flags.DEFINE_string("lm_base_path", "savedmodels/lm", "An lm export root (make lm).")
_SECONDS = flags.DEFINE_float("seconds", 10, "How long each timed attack lasts.")
_SERVE_FLAGS = flags.DEFINE_string(
    "serve_flags", "", "More tfhf.serve flags, space-separated (e.g. --enable_batching)."
)
_CASES = flags.DEFINE_list("cases", [], "Run only these cases (their names below); all if empty.")
_SERVER_REPO = flags.DEFINE_string(
    "server_repo", "", "Run the server of another checkout (an earlier commit, to compare)."
)

_REPO = Path(__file__).resolve().parents[1]
_PATH = "/v1/models/classify:predict"
_WORDS = "the film was long , slow and oddly moving in places".split()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _model_config(models: dict[str, Path]) -> str:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }} '
        for name, path in models.items()
    )
    return f"model_config_list {{ {entries}}}\n"


class _Server:
    def __init__(self, models: dict[str, Path]):
        self.rest, self.grpc = _free_port(), _free_port()
        self.models = models
        self.base_path = models["classify"]
        self.config_file = self.base_path.parent / "models.config"
        self.config_file.write_text(_model_config(models))
        monitoring = self.base_path.parent / "monitoring.config"
        monitoring.write_text("prometheus_config { enable: true }\n")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfhf.serve",
                f"--model_config_file={self.config_file}",
                "--model_config_file_poll_wait_seconds=1",
                f"--monitoring_config_file={monitoring}",
                f"--rest_api_port={self.rest}",
                f"--port={self.grpc}",
                *_SERVE_FLAGS.value.split(),
            ],
            cwd=_SERVER_REPO.value or _REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.proc.stdout:
            if "REST on" in line:
                break
        else:
            raise RuntimeError(f"tfhf.serve stopped before serving: {self.proc.stderr.read()}")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.log_lines = []
        threading.Thread(
            target=lambda: self.log_lines.extend(self.proc.stderr), daemon=True
        ).start()

    def rss(self) -> float:
        return _rss_mb(self.proc.pid)


class _Memory:
    """The server's RSS sampled every 50 ms: its peak while an attack runs."""

    def __init__(self, server: _Server):
        self.server, self.peak = server, server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.server.rss())
            except OSError:  # the process has ended
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


class _GoodClient:
    """One single-text classify predict every 0.2 s on a keep-alive connection (the next
    at once when an answer took longer); a failure is anything but a 200 within 10 s."""

    def __init__(self, port: int):
        self.port, self.latencies, self.failures = port, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = json.dumps({"instances": ["a quietly moving film"]})
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                connection.request("POST", _PATH, body=body)
                response = connection.getresponse()
                ok = response.status == 200 and "predictions" in json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            took = time.perf_counter() - start
            self.latencies.append(took)
            self.failures += not ok
            self._stop.wait(max(0.0, 0.2 - took))

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        if not self.latencies:
            return f"{0:>6}{self.failures:>6}{'-':>8}{'-':>8}"
        p50, p99 = (np.percentile(self.latencies, q) * 1000 for q in (50, 99))
        return f"{len(self.latencies):>6}{self.failures:>6}{p50:>8.0f}{p99:>8.0f}"


def _status(response: bytes) -> str:
    if response in (b"reset", b"no answer", b""):
        return response.decode() or "closed"
    return response.split(b"\r\n", 1)[0].split()[1].decode()


def _exchange(port: int, raw: bytes, wait: float = 10) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
            sock.sendall(raw)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received
    except TimeoutError:
        return b"no answer"
    except ConnectionError:
        return b"reset"


def _head(length: int, extra: bytes = b"") -> bytes:
    return (
        f"POST {_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Length: {length}\r\n".encode()
        + extra
        + b"\r\n"
    )


def _largest_body() -> bytes:
    """1,000 texts of 500 words: just under the default 4 MiB body limit."""
    text = " ".join(_WORDS[i % len(_WORDS)] for i in range(500))
    return json.dumps({"instances": [text] * 1000}).encode()


def slow_headers(server: _Server) -> str:
    socks = [socket.create_connection(("127.0.0.1", server.rest)) for _ in range(200)]
    request = _head(0)
    deadline, i = time.monotonic() + _SECONDS.value, 0
    while time.monotonic() < deadline and i < len(request) - 4:
        for sock in socks:
            try:
                sock.send(request[i : i + 1])
            except OSError:
                pass
        i += 1
        time.sleep(0.05)
    for sock in socks:
        sock.close()
    return f"200 clients sent {i} header bytes each"


def idle_connections(server: _Server) -> str:
    socks = [socket.create_connection(("127.0.0.1", server.rest)) for _ in range(1000)]
    time.sleep(_SECONDS.value)
    refused = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            refused += sock.recv(16).startswith(b"HTTP/1.1 503")
        except BlockingIOError:
            pass
        sock.close()
    return f"1000 held open, {refused} answered 503"


def malformed(server: _Server) -> str:
    def post(body: bytes, extra: bytes = b"") -> bytes:
        return _head(len(body), extra) + body

    kinds = {
        "header 10 KB": post(b"{}", b"X-Big: " + b"a" * 10_000 + b"\r\n"),
        "body 5 MB": post(b"x" * (5 << 20)),
        "JSON depth 5000": post(b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "text/plain": post(b'{"instances": ["a"]}', b"Content-Type: text/plain\r\n"),
        "bad UTF-8": post(b'{"instances": ["\xff\xfe"]}'),
        "bad b64": post(b'{"instances": [{"b64": "%%%%"}]}'),
    }
    seen = Counter()
    deadline = time.monotonic() + _SECONDS.value
    while time.monotonic() < deadline:
        for kind, raw in kinds.items():
            seen[(kind, _status(_exchange(server.rest, raw)))] += 1
    # A body that stops short is answered once the REST timeout (30 s) has passed.
    truncated = _head(100) + b'{"instances": ["a'
    seen[("truncated", _status(_exchange(server.rest, truncated, wait=40)))] += 1
    by_kind = {}
    for (kind, status), n in sorted(seen.items()):
        by_kind.setdefault(kind, []).append(f"{status} x{n}")
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in by_kind.items())


def _model_status(server: _Server, name: str) -> list[dict]:
    """The model's `model_version_status` list, empty when the server does not know it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest, timeout=10)
    connection.request("GET", f"/v1/models/{name}")
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return payload["model_version_status"] if response.status == 200 else []


def _model_state(server: _Server, name: str) -> str:
    states = _model_status(server, name)
    return states[0]["state"] if states else "none"


def version_switch(server: _Server, base_path: Path) -> str:
    start = time.monotonic()
    shutil.copytree(base_path / "1", base_path / "2.tmp")
    (base_path / "2.tmp").rename(base_path / "2")
    while time.monotonic() - start < 120:
        states = _model_status(server, "classify")
        if states and states[0] == {**states[0], "version": "2", "state": "AVAILABLE"}:
            break
        time.sleep(0.2)
    time.sleep(1)
    return f"version 2 served after {time.monotonic() - start - 1:.1f} s"


def config_reload(server: _Server) -> str:
    """A second model added to the polled config file, served, then removed again."""
    extra = server.base_path.parent / "extra"
    if not extra.exists():
        shutil.copytree(server.base_path / "1", extra / "1")
    times = []
    for models, wanted in (
        ({**server.models, "extra": extra}, "AVAILABLE"),
        (server.models, "none"),
    ):
        start = time.monotonic()
        server.config_file.write_text(_model_config(models))
        while _model_state(server, "extra") != wanted and time.monotonic() - start < 120:
            time.sleep(0.2)
        times.append(time.monotonic() - start)
    return f"a second model served after {times[0]:.1f} s, dropped after {times[1]:.1f} s"


def leaving_clients(server: _Server) -> str:
    body = _largest_body()
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", server.rest)) as sock:
            sock.sendall(_head(len(body)) + body)
            time.sleep(0.3)
    return f"10 clients sent {len(body) / 1e6:.1f} MB requests and left after 0.3 s"


def largest_request(server: _Server) -> str:
    body = _largest_body()
    start = time.monotonic()
    status = _status(_exchange(server.rest, _head(len(body)) + body, wait=300))
    return f"1000 texts of 500 words: {status} in {time.monotonic() - start:.1f} s"


def _code(call, *args) -> str:
    """The gRPC status code name `call(*args)` ends with."""
    import grpc

    try:
        call(*args)
    except grpc.RpcError as e:
        return e.code().name
    return "OK"


def grpc_amplification(server: _Server) -> str:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classify"
    proto = tf.make_tensor_proto(["x" * 3_500_000])
    proto.tensor_shape.dim[0].size = 1000
    request.inputs["text"].CopyFrom(proto)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = time.monotonic()
        outcome = _code(stub.Predict, request, 30.0)
    return f"3.5 MB string declared [1000]: {outcome} in {time.monotonic() - start:.2f} s"


_LM_PATH = "/v1/models/lm"
_PROMPT = "To be, or not to be, that is the question"


def _grpc_stubs(server: _Server):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc}")
    return (
        channel,
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def _lm_request(prompts: list[str], **controls):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "lm"
    request.inputs["prompt"].CopyFrom(tf.make_tensor_proto(prompts))
    for name, value in controls.items():
        dtype = tf.float32 if isinstance(value, float) else tf.int32
        request.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype))
    return request


def _post(port: int, path: str, body: dict, timeout: float = 300) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=json.dumps(body))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def grpc_padding(server: _Server) -> str:
    import tensorflow as tf

    channel, predictions, _ = _grpc_stubs(server)
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classify"
    proto = tf.make_tensor_proto([b"a", b"word " * 400_000])
    proto.tensor_shape.dim[0].size = 64  # make_ndarray pads with the last string
    request.inputs["text"].CopyFrom(proto)
    start = time.monotonic()
    outcome = _code(predictions.Predict, request, 60.0)
    channel.close()
    return f"['a', 2 MB] declared [64]: {outcome} in {time.monotonic() - start:.2f} s"


def _streams_never_read(server: _Server, inputs: dict, count: int, wait: float) -> str:
    """`count` REST streams of `inputs` whose clients never read; what each had been sent
    after `wait` seconds."""
    body = json.dumps({"inputs": inputs}).encode()
    head = (
        f"POST {_LM_PATH}:predict_stream HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.rest))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(head + body)
        socks.append(sock)
    time.sleep(wait)
    seen = Counter()
    for sock in socks:
        sock.settimeout(0.5)
        try:
            seen[_status(sock.recv(64))] += 1
        except (TimeoutError, ConnectionError):
            seen["nothing yet"] += 1
        sock.close()
    return ", ".join(f"{k} x{n}" for k, n in sorted(seen.items()))


def unread_streams(server: _Server) -> str:
    inputs = {"prompt": [_PROMPT] * 64, "chunk_tokens": [1]}
    seen = _streams_never_read(server, inputs, 500, _SECONDS.value)
    return f"500 streams of 64 prompts, never read: {seen}"


def unread_grpc_streams(server: _Server) -> str:
    import grpc
    from tensorflow_serving.apis import predict_pb2

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc}")
    stream = channel.unary_stream(
        "/tfhf.serving.PredictionStreamService/PredictStream",
        request_serializer=predict_pb2.PredictRequest.SerializeToString,
        response_deserializer=predict_pb2.PredictResponse.FromString,
    )
    seen = Counter()
    readers = []
    for rows in (1024,) * 16 + (64,) * 16:
        reader = stream(_lm_request([_PROMPT] * rows, chunk_tokens=1), timeout=60)
        try:
            next(reader)  # one message, then no more reading
            seen[f"{rows} rows: streaming"] += 1
            readers.append(reader)
        except grpc.RpcError as e:
            seen[f"{rows} rows: {e.code().name}"] += 1
    time.sleep(_SECONDS.value)
    for reader in readers:
        reader.cancel()
    channel.close()
    return "; ".join(f"{k} x{n}" for k, n in sorted(seen.items()))


def metric_labels(server: _Server) -> str:
    for i in range(2000):
        _post(server.rest, f"/v1/models/m{i}{'x' * 96}:predict", {"instances": ["a"]})
    for i in range(200):
        body = {"signature_name": f"s{i}" + "y" * 100_000, "instances": ["a"]}
        _post(server.rest, f"{_PATH}", body)
    connection = http.client.HTTPConnection("127.0.0.1", server.rest, timeout=60)
    start = time.monotonic()
    connection.request("GET", "/monitoring/prometheus/metrics")
    size = len(connection.getresponse().read())
    connection.close()
    return (
        f"2,000 model names, 200 signatures of 100 KB: /metrics {size / 1e3:.0f} KB, "
        f"scraped in {time.monotonic() - start:.2f} s"
    )


def _lm_flood(server: _Server, api: str, clients: int = 32, prompts: int = 1) -> str:
    stop, answers, failures = threading.Event(), [0], [0]

    def generate():
        if api == "grpc":
            channel, predictions, _ = _grpc_stubs(server)
            request = _lm_request([_PROMPT] * prompts, max_new_tokens=123 - 12)
        while not stop.is_set():
            try:
                if api == "grpc":
                    predictions.Predict(request, 120.0)
                else:
                    body = {"inputs": {"prompt": [_PROMPT] * prompts, "max_new_tokens": [123 - 12]}}
                    status, _ = _post(server.rest, f"{_LM_PATH}:predict", body, timeout=120)
                    if status != 200:
                        raise OSError(status)
                answers[0] += 1
            except Exception:  # noqa: BLE001  (counted)
                failures[0] += 1
        if api == "grpc":
            channel.close()

    threads = [threading.Thread(target=generate, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(_SECONDS.value)
    stop.set()
    for thread in threads:
        thread.join()
    return (
        f"{clients} lm clients over {api.upper()}, {prompts} prompt(s) of ~123 tokens each: "
        f"{answers[0]} answers, {failures[0]} failures in {_SECONDS.value:g} s"
    )


def lm_flood_rest(server: _Server) -> str:
    return _lm_flood(server, "rest")


def lm_flood_grpc(server: _Server) -> str:
    return _lm_flood(server, "grpc")


def lm_flood_wide(server: _Server) -> str:
    return _lm_flood(server, "rest", clients=8, prompts=64)


def lm_many_prompts(server: _Server) -> str:
    outcomes = []
    for name, prompts in (
        ("1,024 prompts", [_PROMPT] * 1024),
        ("1,024 of 3.6 KB", [(_PROMPT + " ") * 87] * 1024),
        ("64 of 3,680 letters", ["a" * 3680] * 64),
        ("64 of 2,000 letters", ["ab" * 1000] * 64),
    ):
        start = time.monotonic()
        body = {"inputs": {"prompt": prompts, "max_new_tokens": [16]}}
        status, _ = _post(server.rest, f"{_LM_PATH}:predict", body)
        outcomes.append(f"{name}: {status} in {time.monotonic() - start:.1f} s")
    return "; ".join(outcomes)


def leave_mid_body(server: _Server) -> str:
    before = len(server.log_lines)
    for _ in range(400):
        with socket.create_connection(("127.0.0.1", server.rest)) as sock:
            sock.sendall(_head(1000) + b'{"instances": ["a')
    import grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc}")
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    codes = Counter()
    for _ in range(100):
        try:
            raw(b"\xff\xff\xff garbage", timeout=10)
        except grpc.RpcError as e:
            codes[e.code().name] += 1
    channel.close()
    time.sleep(1)
    added = server.log_lines[before:]
    tracebacks = sum("Traceback" in line for line in added)
    return (
        f"400 REST clients left mid-body, 100 malformed gRPC ({dict(codes)}): "
        f"{len(added)} log lines, {tracebacks} tracebacks"
    )


def base_path_vanishes(server: _Server) -> str:
    away = server.base_path.with_name("classify.away")
    server.base_path.rename(away)
    time.sleep(3)
    away.rename(server.base_path)
    time.sleep(2)
    return f"classify's base path gone for 3 s: state now {_model_state(server, 'classify')}"


def reload_rpc(server: _Server) -> str:
    from tensorflow_serving.apis import model_management_pb2

    channel, _, models = _grpc_stubs(server)
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.SetInParent()  # no models: unload everything
    outcome = _code(models.HandleReloadConfigRequest, request, 10.0)
    channel.close()
    return f"HandleReloadConfigRequest with no models: {outcome}"


def huge_version(server: _Server) -> str:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2

    lm = server.models["lm"]
    versions = [p for p in lm.iterdir() if p.name.isdigit()]
    shutil.copytree(versions[0], lm / "99999999999999999999")
    time.sleep(3)
    channel, predictions, models = _grpc_stubs(server)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "lm"
    try:
        status = models.GetModelStatus(request, 10.0)
        served = [v.version for v in status.model_version_status]
        predictions.Predict(_lm_request([_PROMPT], max_new_tokens=4), 60.0)
        outcome = f"gRPC status OK, versions {served}, Predict OK"
    except grpc.RpcError as e:
        outcome = f"gRPC {e.code().name}"
    channel.close()
    shutil.rmtree(lm / "99999999999999999999")
    return f"version folder 99999999999999999999: {outcome}"


_RAPID_RESET = """
import sys, time
import grpc, tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
port, seconds, prompt = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
request = predict_pb2.PredictRequest()
request.model_spec.name = "lm"
request.inputs["prompt"].CopyFrom(tf.make_tensor_proto([prompt] * 64))
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
sent, start = 0, time.monotonic()
while time.monotonic() - start < seconds:
    for _ in range(100):
        stub.Predict.future(request, 60.0).cancel()  # HEADERS, DATA, then RST_STREAM
        sent += 1
print(sent)
"""


def rapid_reset(server: _Server) -> str:
    # From a process of its own: the attack's Python must not slow the good client's.
    sent = subprocess.run(
        [sys.executable, "-c", _RAPID_RESET, str(server.grpc), str(_SECONDS.value), _PROMPT],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    return f"{int(sent):,} lm calls of 64 prompts cancelled as soon as sent"


def sampled_stream_1024(server: _Server) -> str:
    inputs = {"prompt": [_PROMPT] * 1024, "temperature": [0.8], "chunk_tokens": [1]}
    seen = _streams_never_read(server, inputs, 8, _SECONDS.value / 2)
    return f"8 sampled streams of 1,024 prompts, never read: {seen}"


def sigterm_in_flight(server: _Server) -> str:
    body = json.dumps({"instances": [" ".join(_WORDS * 10)] * 64})
    answers = []

    def ask():
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.rest, timeout=120)
            connection.request("POST", _PATH, body=body)
            answers.append(connection.getresponse().status)
        except (OSError, http.client.HTTPException):
            answers.append("failed")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join()
    code = server.proc.wait(timeout=120)
    try:
        socket.create_connection(("127.0.0.1", server.rest), timeout=2).close()
        after = "a new connection was accepted"
    except ConnectionRefusedError:
        after = "new connections refused"
    return (
        f"8 requests of 64 texts in flight: {dict(Counter(answers))}; exit {code} after "
        f"{time.monotonic() - start:.1f} s; {after}"
    )


def _copy_highest(source: Path, into: Path) -> Path:
    versions = sorted(int(p.name) for p in source.glob("[0-9]*") if p.name.isdigit())
    if not versions:
        sys.exit(f"error: {source} holds no version folder; train and export it first")
    shutil.copytree(source / str(versions[-1]), into / "1")
    return into


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    root = Path(tempfile.mkdtemp())
    models = {
        "classify": _copy_highest(Path(_BASE.value), root / "classify"),
        "lm": _copy_highest(Path(_LM.value), root / "lm"),
    }
    server = _Server(models)
    print(
        f"tfhf.serve pid {server.proc.pid} {_SERVE_FLAGS.value}: classify from {_BASE.value}, "
        f"lm from {_LM.value}",
        flush=True,
    )
    print(
        f"{'case':<22}{'good':>6}{'fail':>6}{'p50':>8}{'p99':>8}"
        f"{'RSS MB: before':>16}{'peak':>6}{'after':>7}  attackers got"
    )
    attacks = [
        ("slow_headers", slow_headers),
        ("idle_connections", idle_connections),
        ("malformed_requests", malformed),
        ("version_switch", lambda s: version_switch(s, s.base_path)),
        ("config_reload", config_reload),
        ("clients_that_leave", leaving_clients),
        ("the_same_again", leaving_clients),  # does memory keep growing, or is it reused?
        ("largest_request", largest_request),
        ("grpc_amplification", grpc_amplification),
        ("grpc_padding", grpc_padding),
        ("unread_streams", unread_streams),
        ("unread_grpc_streams", unread_grpc_streams),
        ("metric_labels", metric_labels),
        ("lm_flood_rest", lm_flood_rest),
        ("lm_flood_grpc", lm_flood_grpc),
        ("lm_flood_wide", lm_flood_wide),
        ("lm_many_prompts", lm_many_prompts),
        ("leave_mid_body", leave_mid_body),
        ("base_path_vanishes", base_path_vanishes),
        ("reload_rpc", reload_rpc),
        ("huge_version", huge_version),
        ("rapid_reset", rapid_reset),
        ("sampled_stream_1024", sampled_stream_1024),
    ]
    unknown = set(_CASES.value) - {name for name, _ in attacks} - {"sigterm"}
    if unknown:
        raise app.UsageError(f"unknown cases: {', '.join(sorted(unknown))}")
    for name, attack in attacks:
        if _CASES.value and name not in _CASES.value:
            continue
        before = server.rss()
        memory = _Memory(server)
        good = _GoodClient(server.rest)
        started = time.monotonic()
        outcome = attack(server)
        time.sleep(max(0.0, 3 - (time.monotonic() - started)))  # at least 15 good requests
        figures = good.stop()
        time.sleep(1)
        peak = memory.stop()
        print(
            f"{name:<22}{figures}{before:>16.0f}{peak:>6.0f}{server.rss():>7.0f}  {outcome}",
            flush=True,
        )
    if not _CASES.value or "sigterm" in _CASES.value:
        print(f"{'sigterm':<22}{'':>28}{server.rss():>16.0f}{'':>13}  ", end="")
        print(sigterm_in_flight(server), flush=True)
    else:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=120)
    log = Path(tempfile.mkdtemp()) / "serve.log"
    log.write_text("".join(server.log_lines))
    tracebacks = sum("Traceback" in line for line in server.log_lines)
    print(f"server log: {len(server.log_lines)} lines, {tracebacks} tracebacks ({log})")


if __name__ == "__main__":
    app.run(main)
