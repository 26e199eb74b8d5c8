"""`python -m tfhf.serve` under hostile traffic, on loopback: for each attack, what a
well-behaved client running alongside saw (requests, failures, p99 latency), the server's
memory (RSS) before and after, and what the attackers got.

  python benchmarks/serve_hostile.py --model_base_path=savedmodels/classify
  python benchmarks/serve_hostile.py --model_base_path=savedmodels/classify --seconds=20

The export's highest version is copied into a temporary base path (so a version switch
can be staged there), and the server runs from this checkout with its default limits and
a model config file it polls every second. Attacks: 200 clients sending headers a byte at
a time; 1,000 idle connections; malformed requests of seven kinds; a new version switched
in under traffic; a second model added to the config file and removed again; clients that
send the largest request and leave (twice, to see whether memory keeps growing); one
largest request waited for; a gRPC string that would grow 1,000-fold when decoded;
SIGTERM with requests in flight.
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
_SECONDS = flags.DEFINE_float("seconds", 10, "How long each timed attack lasts.")

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
    def __init__(self, base_path: Path):
        self.rest, self.grpc = _free_port(), _free_port()
        self.base_path = base_path
        self.config_file = base_path.parent / "models.config"
        self.config_file.write_text(_model_config({"classify": base_path}))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfhf.serve",
                f"--model_config_file={self.config_file}",
                "--model_config_file_poll_wait_seconds=1",
                f"--rest_api_port={self.rest}",
                f"--port={self.grpc}",
            ],
            cwd=_REPO,
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


class _GoodClient:
    """Single-text predicts on one keep-alive connection, as fast as they are answered."""

    def __init__(self, port: int):
        self.port, self.latencies, self.failures = port, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
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
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.latencies.append(time.perf_counter() - start)
            self.failures += not ok
            time.sleep(0.01)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        p99 = np.percentile(self.latencies, 99) * 1000 if self.latencies else float("nan")
        return f"{len(self.latencies):>6}{self.failures:>6}{p99:>9.0f}"


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
        ({"classify": server.base_path, "extra": extra}, "AVAILABLE"),
        ({"classify": server.base_path}, "none"),
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
        try:
            stub.Predict(request, 30.0)
            outcome = "OK"
        except grpc.RpcError as e:
            outcome = e.code().name
    return f"3.5 MB string declared [1000]: {outcome} in {time.monotonic() - start:.2f} s"


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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    source = Path(_BASE.value)
    versions = sorted(int(p.name) for p in source.glob("[0-9]*") if p.name.isdigit())
    if not versions:
        sys.exit(f"error: {source} holds no version folder; run `make classify` first")
    base_path = Path(tempfile.mkdtemp()) / "classify"
    shutil.copytree(source / str(versions[-1]), base_path / "1")
    server = _Server(base_path)
    print(f"tfhf.serve pid {server.proc.pid}, model {source}/{versions[-1]}", flush=True)
    print(f"{'attack':<22}{'good':>6}{'fail':>6}{'p99 ms':>9}{'RSS MB':>16}  attackers got")
    attacks = [
        ("slow headers", slow_headers),
        ("idle connections", idle_connections),
        ("malformed requests", malformed),
        ("version switch", lambda s: version_switch(s, base_path)),
        ("config reload", config_reload),
        ("clients that leave", leaving_clients),
        ("the same, again", leaving_clients),  # does memory keep growing, or is it reused?
        ("largest request", largest_request),
        ("gRPC amplification", grpc_amplification),
    ]
    for name, attack in attacks:
        before = server.rss()
        good = _GoodClient(server.rest)
        outcome = attack(server)
        figures = good.stop()
        time.sleep(1)
        print(f"{name:<22}{figures}{before:>8.0f}{server.rss():>8.0f}  {outcome}", flush=True)
    print(f"{'SIGTERM under load':<22}{'':>21}{server.rss():>8.0f}{'':>8}  ", end="")
    print(sigterm_in_flight(server), flush=True)
    log = Path(tempfile.mkdtemp()) / "serve.log"
    log.write_text("".join(server.log_lines))
    tracebacks = sum("Traceback" in line for line in server.log_lines)
    print(f"server log: {len(server.log_lines)} lines, {tracebacks} tracebacks ({log})")


if __name__ == "__main__":
    app.run(main)
