"""python -m tfhf.serve: serve tfhf exports over TensorFlow Serving's REST and gRPC APIs.

The flags are TF Serving's own wherever TF Serving has one, so the same command line and
the same client code work against TF Serving in production; the limits TF Serving lacks
(--max_rows_per_call, --rest_api_max_connections, --shutdown_grace_seconds, ...) are
tfhf's.

Examples:
  python -m tfhf.serve --model_name=classify --model_base_path=savedmodels/classify
  python -m tfhf.serve --model_config_file=models.config --rest_api_port=8501 --port=8500
  python -m tfhf.serve --model_name=classify --model_base_path=savedmodels/classify \\
      --enable_batching --max_batch_size=32 --batch_timeout_micros=5000
  python -m tfhf.serve --model_config_file=models.config \\
      --model_config_file_poll_wait_seconds=30 --monitoring_config_file=monitoring.config

An lm export also streams its text as it is decoded (POST .../lm:predict_stream, Server-
Sent Events; gRPC tfhf.serving.PredictionStreamService/PredictStream), which TF Serving
cannot.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from absl import flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.cli import EntryPoint, fail, renamed

_NAME = flags.DEFINE_string("model_name", "default", "Name the model is served under.")
_BASE = flags.DEFINE_string(
    "model_base_path", "", "Folder holding the model's integer version folders."
)
_CONFIG = flags.DEFINE_string(
    "model_config_file", "", "TF Serving's text-format ModelServerConfig, for several models."
)
_CONFIG_POLL = flags.DEFINE_integer(
    "model_config_file_poll_wait_seconds",
    0,
    "How often to re-read --model_config_file and apply changes without a restart; 0: never.",
)
_MONITORING = flags.DEFINE_string(
    "monitoring_config_file",
    "",
    "TF Serving's text-format MonitoringConfig: prometheus_config { enable: true } serves "
    "Prometheus metrics on the REST port (path /monitoring/prometheus/metrics unless set).",
)
_REST_PORT = flags.DEFINE_integer("rest_api_port", 8501, "REST port; 0 turns REST off.")
_GRPC_PORT = flags.DEFINE_integer("port", 8500, "gRPC port; 0 turns gRPC off.")
_HOST = flags.DEFINE_string(
    "host", "127.0.0.1", "Address to bind; 0.0.0.0 to accept other machines."
)
_POLL = flags.DEFINE_float(
    "file_system_poll_wait_seconds", 1.0, "How often to look for new versions; 0: never."
)
_BATCHING = flags.DEFINE_bool(
    "enable_batching", False, "Run concurrent requests to one signature as one batch."
)
_MAX_BATCH = flags.DEFINE_integer("max_batch_size", 32, "Batching: most rows in one batch.")
_TIMEOUT = flags.DEFINE_integer(
    "batch_timeout_micros", 2000, "Batching: longest wait for a batch to fill, in microseconds."
)
_MAX_BODY = flags.DEFINE_integer(
    "max_body_bytes", 4 << 20, "Largest REST request body (and gRPC message) accepted."
)
_MAX_INSTANCES = flags.DEFINE_integer(
    "max_instances", 1024, "Most instances (rows) in one request."
)
_ROWS_PER_CALL = flags.DEFINE_integer(
    "max_rows_per_call",
    64,
    "A request with more rows runs in model calls of this many (same outputs, bounded "
    "memory); 0 runs each request in one call.",
)
_XLA_TWINS = flags.DEFINE_boolean(
    "jit_compile",
    True,
    "Answer a signature with its XLA-compiled twin where an export has one (the "
    "serving_default_xla of lm, summarize and translate exports: the same text, faster); "
    "--nojit_compile runs the plain graph. (TF Serving answers only requests that name "
    "serving_default_xla with XLA, and only with --xla_cpu_compilation_enabled.)",
)
_BATCH_THREADS = flags.DEFINE_integer(
    "num_batch_threads", 4, "Batching: threads that run batches (TF Serving's name)."
)
_REST_THREADS = flags.DEFINE_integer(
    "rest_api_num_threads",
    8,
    "REST: requests parsed and run at once; more wait their turn (TF Serving's name).",
)
_REST_TIMEOUT = flags.DEFINE_integer(
    "rest_api_timeout_in_ms",
    30_000,
    "REST: how long a request body may take to arrive (408 after) and how long an idle "
    "connection stays open (TF Serving's name).",
)
_REST_CONNECTIONS = flags.DEFINE_integer(
    "rest_api_max_connections",
    0,
    "REST: open connections; one more is answered 503. 0: the descriptor limit less 256, "
    "at most 4096.",
)
_GRPC_THREADS = flags.DEFINE_integer(
    "grpc_max_threads", 16, "gRPC: threads answering requests (TF Serving's name)."
)
_GRPC_RPCS = flags.DEFINE_integer(
    "grpc_max_concurrent_rpcs",
    256,
    "gRPC: calls running or waiting for a thread; one more is refused at once with "
    "RESOURCE_EXHAUSTED. 0: no cap.",
)
_LIVE_STREAMS = flags.DEFINE_integer(
    "max_live_streams",
    32,
    "Streams (REST :predict_stream and gRPC PredictStream together) running at once; one "
    "more is answered 503 / RESOURCE_EXHAUSTED at once. Each holds its decoding state. "
    "gRPC streams also hold a thread each: at most half of --grpc_max_threads. 0: no cap.",
)
_STREAM_ROWS = flags.DEFINE_integer(
    "max_stream_rows",
    64,
    "Most rows (prompts or texts) in one stream: a stream is not split into calls as a "
    ":predict request is, so its state grows with its rows. 0: no cap.",
)
_STREAM_WRITE_TIMEOUT = flags.DEFINE_integer(
    "stream_write_timeout_in_ms",
    30_000,
    "How long a stream waits for a client that stopped reading before it ends and frees "
    "its state and thread.",
)
_MODEL_CALLS = flags.DEFINE_integer(
    "max_model_calls",
    0,
    "Model calls (a request, a part of a split request, a batch, a stream's chunk) running "
    "at once over REST and gRPC. Each model holds at most its share (this over the number "
    "of models, at least 1), kept free for it; a freed slot goes to the waiting model that "
    "has used the least time. 0: twice the cores the process may use.",
)
_INTRA_OP = flags.DEFINE_integer(
    "tensorflow_intra_op_parallelism",
    0,
    "Threads TensorFlow runs one op's parallel work on (TF Serving's name). 0: as many as "
    "--max_model_calls, so that each call running has threads of its own and the system "
    "shares the cores between them, rather than a small model's ops queueing behind a "
    "large one's (TF's own default is one thread per core).",
)
_INTER_OP = flags.DEFINE_integer(
    "tensorflow_inter_op_parallelism",
    0,
    "Threads TensorFlow runs independent ops on (TF Serving's name). 0: as many as "
    "--max_model_calls.",
)
_RELOAD_RPC = flags.DEFINE_bool(
    "allow_reload_config_rpc",
    False,
    "Answer gRPC ModelService.HandleReloadConfigRequest, with which any client that reaches "
    "--port replaces the served models (TF Serving answers it always). Off: refused with "
    "PERMISSION_DENIED; --model_config_file_poll_wait_seconds reloads from the file instead.",
)
_GRACE = flags.DEFINE_float(
    "shutdown_grace_seconds",
    30.0,
    "On SIGTERM or SIGINT: how long requests in flight may run before the process exits.",
)


ENTRY_POINT = EntryPoint(
    program="tfhf.serve",
    doc=__doc__,
    groups=(
        (
            "models",
            (
                "model_name",
                "model_base_path",
                "model_config_file",
                "model_config_file_poll_wait_seconds",
                "allow_reload_config_rpc",
                "file_system_poll_wait_seconds",
                "jit_compile",
            ),
        ),
        ("network", ("host", "rest_api_port", "port")),
        (
            "batching",
            ("enable_batching", "max_batch_size", "batch_timeout_micros", "num_batch_threads"),
        ),
        (
            "limits",
            (
                "max_body_bytes",
                "max_instances",
                "max_rows_per_call",
                "max_model_calls",
                "tensorflow_intra_op_parallelism",
                "tensorflow_inter_op_parallelism",
                "rest_api_num_threads",
                "rest_api_timeout_in_ms",
                "rest_api_max_connections",
                "grpc_max_threads",
                "grpc_max_concurrent_rpcs",
                "shutdown_grace_seconds",
                "max_live_streams",
                "max_stream_rows",
                "stream_write_timeout_in_ms",
            ),
        ),
        ("monitoring", ("monitoring_config_file",)),
    ),
    deprecated=(renamed("xla_signatures", "jit_compile", boolean=True),),
    # TF Serving's names, kept here, for what the other entry points call --model.
    hints={"model": "model_base_path", "model_dir": "model_base_path"},
)


def main(argv: list[str]) -> None:
    from tfhf.serving import model_server as ms

    logging.basicConfig(format="tfhf.serve: %(message)s", level=logging.WARNING)

    if bool(_CONFIG.value) == bool(_BASE.value):
        fail("give either --model_base_path (with --model_name) or --model_config_file")
    if _CONFIG.value:
        try:
            specs = ms.parse_model_config(Path(_CONFIG.value).read_text())
        except (OSError, ValueError) as e:
            fail(f"{_CONFIG.value}: {e}")
    else:
        specs = [ms.ModelSpec(_NAME.value, Path(_BASE.value))]
    for spec in specs:
        if not spec.base_path.is_dir():
            where = f"model {spec.name} of {_CONFIG.value}: " if _CONFIG.value else ""
            fail(f"{where}--model_base_path {spec.base_path}: no such folder")
    if _BATCHING.value and (_MAX_BATCH.value < 1 or _TIMEOUT.value < 0 or _BATCH_THREADS.value < 1):
        fail(
            "--max_batch_size and --num_batch_threads must be positive and "
            "--batch_timeout_micros not negative"
        )
    for flag in (_REST_THREADS, _REST_TIMEOUT, _GRPC_THREADS, _STREAM_WRITE_TIMEOUT):
        if flag.value < 1:
            fail(f"--{flag.name} must be positive")
    for flag in (
        _ROWS_PER_CALL,
        _MODEL_CALLS,
        _INTRA_OP,
        _INTER_OP,
        _REST_CONNECTIONS,
        _GRPC_RPCS,
        _GRACE,
        _LIVE_STREAMS,
        _STREAM_ROWS,
    ):
        if flag.value < 0:
            fail(f"--{flag.name} must not be negative")
    if not (_REST_PORT.value or _GRPC_PORT.value):
        fail("both --rest_api_port and --port are 0: nothing to serve on")

    import tensorflow as tf

    # Before any model loads: TensorFlow fixes its thread pools when it first runs an op.
    model_calls = _MODEL_CALLS.value or ms.default_max_model_calls()
    tf.config.threading.set_intra_op_parallelism_threads(_INTRA_OP.value or model_calls)
    tf.config.threading.set_inter_op_parallelism_threads(_INTER_OP.value or model_calls)

    metrics = ms.Metrics()
    if _MONITORING.value:
        try:
            metrics = ms.Metrics(ms.parse_monitoring_config(Path(_MONITORING.value).read_text()))
        except (OSError, ValueError) as e:
            fail(f"{_MONITORING.value}: {e}")
        if metrics.config.enabled and not _REST_PORT.value:
            fail("Prometheus metrics are served on the REST port: --rest_api_port must not be 0")

    batching = None
    if _BATCHING.value:
        batching = {
            "max_batch_size": _MAX_BATCH.value,
            "timeout": _TIMEOUT.value / 1e6,
            "threads": _BATCH_THREADS.value,
        }
    manager = ms.ModelManager(
        specs,
        poll_seconds=_POLL.value,
        batching=batching,
        max_rows_per_call=_ROWS_PER_CALL.value,
        metrics=metrics,
        xla_twins=_XLA_TWINS.value,
        streams=ms.StreamLimits(
            max_live=_LIVE_STREAMS.value,
            max_rows=_STREAM_ROWS.value,
            write_timeout=_STREAM_WRITE_TIMEOUT.value / 1000,
        ),
        max_model_calls=model_calls,
    )
    manager.start()
    if _CONFIG.value and _CONFIG_POLL.value > 0:
        manager.watch_config(Path(_CONFIG.value), _CONFIG_POLL.value)
    for model in manager.models.values():
        if model.current is None:
            print(
                f"tfhf.serve: model {model.spec.name}: no loadable version under "
                f"{model.spec.base_path} yet; waiting for one",
                flush=True,
            )
    stopped = threading.Event()
    servers = []
    if _GRPC_PORT.value:
        grpc_server, port = ms.grpc_server(
            manager,
            host=_HOST.value,
            port=_GRPC_PORT.value,
            max_message_bytes=_MAX_BODY.value,
            max_instances=_MAX_INSTANCES.value,
            workers=_GRPC_THREADS.value,
            max_concurrent_rpcs=_GRPC_RPCS.value,
            allow_reload_config=_RELOAD_RPC.value,
        )
        servers.append(lambda: grpc_server.stop(grace=_GRACE.value).wait())
        print(f"tfhf.serve: gRPC on {_HOST.value}:{port}", flush=True)
    if _REST_PORT.value:
        rest = ms.rest_server(
            manager,
            host=_HOST.value,
            port=_REST_PORT.value,
            max_body_bytes=_MAX_BODY.value,
            max_instances=_MAX_INSTANCES.value,
            threads=_REST_THREADS.value,
            timeout_seconds=_REST_TIMEOUT.value / 1000,
            max_connections=_REST_CONNECTIONS.value or None,
            grace_seconds=_GRACE.value,
        )
        threading.Thread(target=rest.serve_forever, daemon=True).start()
        servers.append(rest.shutdown)
        print(f"tfhf.serve: REST on http://{_HOST.value}:{rest.server_address[1]}", flush=True)
        if metrics.config.enabled:
            where = f"http://{_HOST.value}:{rest.server_address[1]}{metrics.config.path}"
            print(f"tfhf.serve: Prometheus metrics at {where}", flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    # Both front ends stop listening at once and finish what is in flight together; only
    # then does the process exit, so no thread is inside TensorFlow as Python shuts down.
    print("tfhf.serve: stopping; finishing the requests in flight", flush=True)
    stoppers = [threading.Thread(target=stop) for stop in servers]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    manager.stop()
    print("tfhf.serve: stopped", flush=True)


if __name__ == "__main__":
    ENTRY_POINT.run(main)
