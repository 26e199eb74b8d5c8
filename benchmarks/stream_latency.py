"""Streaming against one answer: time to the first chunk of `:predict_stream` beside the
time to the whole text, over `python -m tfhf.serve` on loopback, for an lm, summarize or
translate export.

  python benchmarks/stream_latency.py --model_base_path=savedmodels/lm
  python benchmarks/stream_latency.py --model_base_path=savedmodels/lm --max_new_tokens=128
  python benchmarks/stream_latency.py --model_base_path=savedmodels/translate \
      --text="Insert a page break before the selected paragraph." --num_beams=4

For each chunk size the script sends the same request (one text; greedy unless --num_beams
is above 1) --repeats times as `:predict` and as `:predict_stream`, checks that the streamed
pieces join into the `:predict` text, and prints medians: the time to the `:predict`
answer, to the first streamed event, and to the stream's end. The text input and output
names are read from the export's `serving_default` (`prompt`/`text` for an lm,
`text`/`summary` or `text`/`translation` for summarize and translate).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags

_BASE = flags.DEFINE_string("model_base_path", "savedmodels/lm", "An lm export root.")
_TEXT = flags.DEFINE_string("text", "ROMEO.\n", "The prompt (or source text).")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Tokens per answer.")
_CHUNKS = flags.DEFINE_list("chunk_tokens", ["1", "4", "16"], "Chunk sizes to measure.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Requests per figure (the median is shown).")
_BEAMS = flags.DEFINE_integer(
    "num_beams", 1, "Beams, for summarize and translate exports (an lm export decodes greedily)."
)

_REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: dict) -> tuple[float, float, bytes]:
    """(seconds to the first body bytes, seconds to the end, the body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.perf_counter()
    connection.request("POST", path, json.dumps(body))
    response = connection.getresponse()
    first = response.read1(65536)
    first_at = time.perf_counter() - start
    rest = response.read()
    connection.close()
    return first_at, time.perf_counter() - start, first + rest


def _joined(raw: bytes, output: str) -> str:
    text = ""
    for block in raw.decode().strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        if "event" not in fields:
            text += json.loads(fields["data"])[output][0]
    return text


def _text_names(root: Path) -> tuple[str, str]:
    """(text input, text output) of the newest version's serving_default."""
    from tensorflow.core.framework import types_pb2

    from tfhf.serving.export import read_signature_defs
    from tfhf.serving.predictor import saved_model_version

    version = saved_model_version(root)
    if version is None:
        sys.exit(f"error: {root} holds no SavedModel version")
    signature = read_signature_defs(version)["serving_default"]
    string = types_pb2.DT_STRING
    (source,) = (n for n, t in signature.inputs.items() if t.dtype == string)
    (output,) = (n for n, t in signature.outputs.items() if t.dtype == string)
    return source, output


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not Path(_BASE.value).is_dir():
        sys.exit(f"error: {_BASE.value} is not an export root; run `make lm` first")
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfhf.serve",
            "--model_name=lm",
            f"--model_base_path={Path(_BASE.value).resolve()}",
            f"--rest_api_port={port}",
            "--port=0",
        ],
        cwd=_REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        for line in proc.stdout:
            if "REST on" in line:
                break
        source, output = _text_names(Path(_BASE.value))
        inputs = {source: [_TEXT.value], "max_new_tokens": [_MAX_NEW.value]}
        if source != "prompt":  # a summarize or translate export
            inputs["num_beams"] = [_BEAMS.value]
        _post(port, "/v1/models/lm:predict", {"inputs": inputs})  # warm
        whole = [
            _post(port, "/v1/models/lm:predict", {"inputs": inputs}) for _ in range(_REPEATS.value)
        ]
        text = json.loads(whole[0][2])["outputs"][0]
        decoding = f"{_BEAMS.value} beams" if "num_beams" in inputs else "greedy"
        print(
            f"{source} {_TEXT.value!r}, at most {_MAX_NEW.value} new tokens, {decoding}, "
            f"median of {_REPEATS.value}; model {_BASE.value}",
            flush=True,
        )
        print(f"{'request':<28}{'first bytes ms':>15}{'whole ms':>10}{'same text':>11}")
        print(
            f"{':predict':<28}{np.median([w[1] for w in whole]) * 1000:>15.0f}"
            f"{np.median([w[1] for w in whole]) * 1000:>10.0f}{'':>11}"
        )
        for chunk in map(int, _CHUNKS.value):
            body = {"inputs": {**inputs, "chunk_tokens": [chunk]}}
            _post(port, "/v1/models/lm:predict_stream", body)  # warm
            runs = [
                _post(port, "/v1/models/lm:predict_stream", body) for _ in range(_REPEATS.value)
            ]
            same = all(_joined(r[2], output) == text for r in runs)
            print(
                f"{f':predict_stream, chunk {chunk}':<28}"
                f"{np.median([r[0] for r in runs]) * 1000:>15.0f}"
                f"{np.median([r[1] for r in runs]) * 1000:>10.0f}{str(same):>11}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    app.run(main)
