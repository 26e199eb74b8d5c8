"""Load on `python -m tfhf.serve`: throughput, latency and errors for a classify export,
without and with server-side batching.

  python benchmarks/serve_load.py --model_base_path=savedmodels/classify
  python benchmarks/serve_load.py --model_base_path=savedmodels/classify --requests=4000 \\
      --concurrency=32
  git worktree add /tmp/tfhf-old <commit>
  python benchmarks/serve_load.py --model_base_path=savedmodels/classify \\
      --baseline_repo=/tmp/tfhf-old        # the same settings on an older server, same run

For each setting the script starts the server on free loopback ports, waits for the model
to be available, sends --requests single-text REST predict requests from --concurrency
threads (each with its own keep-alive connection, texts from the packaged Rotten Tomatoes
test split), stops the server, and prints requests/s, p50 and p99 latency and the number of
failed requests. Everything stays on 127.0.0.1, and --max_seconds bounds each run.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

_BASE = flags.DEFINE_string(
    "model_base_path", "savedmodels/classify", "A classify export root (make classify)."
)
_REQUESTS = flags.DEFINE_integer("requests", 2000, "Requests per run.")
_CONCURRENCY = flags.DEFINE_integer("concurrency", 16, "Client threads sending at once.")
_MAX_BATCH = flags.DEFINE_integer("max_batch_size", 16, "Batching run: largest batch.")
_TIMEOUT = flags.DEFINE_integer("batch_timeout_micros", 5000, "Batching run: batch wait.")
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 600, "Stop a run after this long.")
_BASELINE = flags.DEFINE_string(
    "baseline_repo",
    "",
    "Another tfhf checkout (e.g. a `git worktree` of an older commit): every setting runs "
    "on its server too, in the same run, for a side-by-side comparison.",
)

_REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _texts() -> list[str]:
    import tfhf  # noqa: F401
    from tfhf.data import sources

    data = sources.load_classification_data(
        dataset="rotten_tomatoes",
        train_file="",
        validation_file="",
        test_file="",
        text_column="text",
        label_column="label",
        seed=42,
    )
    return list(data.test.texts)


def _start_server(extra: list[str], repo: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfhf.serve",
            "--model_name=classify",
            f"--rest_api_port={port}",
            "--port=0",
            f"--model_base_path={Path(_BASE.value).resolve()}",
            *extra,
        ],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if "REST on" in line:
            break
        if time.monotonic() > deadline:
            break
    else:
        raise RuntimeError("tfhf.serve stopped before serving")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, port


def _load(port: int, texts: list[str]) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(_REQUESTS.value))
    deadline = time.monotonic() + _MAX_SECONDS.value

    def client():
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in counter:
            if time.monotonic() > deadline:
                break
            body = json.dumps({"instances": [texts[i % len(texts)]]})
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/models/classify:predict", body=body)
                response = connection.getresponse()
                ok = response.status == 200 and "predictions" in json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += not ok
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(_CONCURRENCY.value)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "requests_per_second": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens at INFO
    if not Path(_BASE.value).is_dir():
        sys.exit(f"error: {_BASE.value} is not an export root; run `make classify` first")
    texts = _texts()
    settings = {
        "no batching": [],
        f"batching (max {_MAX_BATCH.value}, {_TIMEOUT.value} us)": [
            "--enable_batching",
            f"--max_batch_size={_MAX_BATCH.value}",
            f"--batch_timeout_micros={_TIMEOUT.value}",
        ],
    }
    print(
        f"{_REQUESTS.value} single-text REST requests at concurrency {_CONCURRENCY.value}, "
        f"model {_BASE.value}",
        flush=True,
    )
    repos = {"": _REPO}
    if _BASELINE.value:
        repos = {"this checkout: ": _REPO, "baseline: ": Path(_BASELINE.value).resolve()}
    runs = [
        (label + name, extra, repo)
        for label, repo in repos.items()
        for name, extra in settings.items()
    ]
    width = max(len(name) for name, _, _ in runs) + 2
    print(f"{'setting':<{width}}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'sent':>7}")
    for name, extra, repo in runs:
        proc, port = _start_server(extra, repo)
        try:
            _load(port, texts[:64])  # warm the connection pool and every batch size
            result = _load(port, texts)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        print(
            f"{name:<{width}}{result['requests_per_second']:>8.1f}{result['p50_ms']:>9.1f}"
            f"{result['p99_ms']:>9.1f}{result['errors']:>8}{result['requests']:>7}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
