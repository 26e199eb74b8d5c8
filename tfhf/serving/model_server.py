"""A local server that behaves like TensorFlow Serving for tfhf exports: version folders
watched and switched without dropping requests, TF Serving's REST and gRPC APIs, and
optional server-side batching.

The servable logic (`ModelManager`, `Servable`) knows nothing of HTTP or gRPC; the two
front ends (`rest_server`, `grpc_server`) translate requests into `predict` calls.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from concurrent import futures
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf

log = logging.getLogger("tfhf.serve")


class RequestError(Exception):
    """The client's mistake: answered with HTTP 400 / gRPC INVALID_ARGUMENT."""


class NotFound(Exception):
    """Unknown model, version or signature: HTTP 404 / gRPC NOT_FOUND."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One served model: its name and the folder holding its integer version folders."""

    name: str
    base_path: Path


def parse_model_config(text: str) -> list[ModelSpec]:
    """Models from TF Serving's text-format `ModelServerConfig` (`--model_config_file`).

    Example:
      >>> parse_model_config('model_config_list { config { name: "c" base_path: "/m/c" '
      ...                    'model_platform: "tensorflow" } }')[0].name
      'c'
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"model config: {e}") from None
    specs = []
    for entry in config.model_config_list.config:
        if not entry.name or not entry.base_path:
            raise ValueError("model config: every config needs a name and a base_path")
        if entry.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model config: platform '{entry.model_platform}' is not supported")
        specs.append(ModelSpec(entry.name, Path(entry.base_path)))
    if not specs:
        raise ValueError("model config: model_config_list names no model")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("model config: model names must be unique")
    return specs


def _versions_on_disk(base_path: Path) -> list[int]:
    if not base_path.is_dir():
        return []
    return sorted(int(p.name) for p in base_path.iterdir() if _is_number(p.name) and p.is_dir())


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdecimal()


class Batcher:
    """Runs concurrent requests to one signature as one batch.

    A request joins a batch when each of its inputs has the request's row count as its
    first dimension (so rows can be stacked and split again); others run alone. A batch
    runs when it holds `max_batch_size` rows or `timeout` seconds after its first request.
    """

    def __init__(self, run: Callable, *, max_batch_size: int, timeout: float):
        self._run = run
        self.max_batch_size = max_batch_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pending: list[tuple[dict, int, futures.Future]] = []
        self._timer: threading.Timer | None = None

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _rows_of(inputs)
        if rows is None or rows > self.max_batch_size:
            return self._run(inputs)
        future: futures.Future = futures.Future()
        with self._lock:
            pending_rows = sum(r for _, r, _ in self._pending)
            if self._pending and (
                not _stackable(self._pending[0][0], inputs)
                or pending_rows + rows > self.max_batch_size
            ):
                self._flush_locked()
            self._pending.append((inputs, rows, future))
            if sum(r for _, r, _ in self._pending) >= self.max_batch_size:
                self._flush_locked()
            elif self._timer is None:
                self._timer = threading.Timer(self.timeout, self._flush)
                self._timer.daemon = True
                self._timer.start()
        return future.result()

    def _flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        batch, self._pending = self._pending, []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if batch:
            threading.Thread(target=self._run_batch, args=(batch,), daemon=True).start()

    def _run_batch(self, batch) -> None:
        try:
            if len(batch) == 1:
                batch[0][2].set_result(self._run(batch[0][0]))
                return
            names = batch[0][0].keys()
            stacked = {n: np.concatenate([inputs[n] for inputs, _, _ in batch]) for n in names}
            try:
                outputs = self._run(stacked)
            except RequestError:
                self._run_each(batch)  # one refused request must not fail the others
                return
            total = sum(rows for _, rows, _ in batch)
            if any(np.ndim(v) == 0 or len(v) != total for v in outputs.values()):
                self._run_each(batch)  # outputs not per row: run each alone
                return
            start = 0
            for _, rows, future in batch:
                future.set_result({k: v[start : start + rows] for k, v in outputs.items()})
                start += rows
        except Exception as e:  # each waiting request gets the batch's error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e)

    def _run_each(self, batch) -> None:
        for inputs, _, future in batch:
            try:
                future.set_result(self._run(inputs))
            except Exception as e:  # noqa: BLE001  (handed to that request's caller)
                future.set_exception(e)


def _rows_of(inputs: dict[str, np.ndarray]) -> int | None:
    firsts = {np.shape(v)[0] if np.ndim(v) else None for v in inputs.values()}
    if len(firsts) != 1 or None in firsts:
        return None
    return firsts.pop()


def _stackable(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        np.shape(a[k])[1:] == np.shape(b[k])[1:] and a[k].dtype.kind == b[k].dtype.kind for k in a
    )


class Servable:
    """One loaded version of a model: its signatures, their SignatureDefs and defaults."""

    def __init__(self, name: str, version: int, path: Path, *, batching: dict | None = None):
        import tensorflow_text  # noqa: F401  (registers the ops tfhf exports use)
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, path
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        graph = next(
            (m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags),
            proto.meta_graphs[0],
        )
        self.signature_defs = {
            k: v for k, v in graph.signature_def.items() if not k.startswith("__")
        }
        self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        self._functions = {k: self._loaded.signatures[k] for k in self.signature_defs}
        self._batchers = {}
        if batching:
            self._batchers = {
                k: Batcher(lambda inputs, k=k: self._call(k, inputs), **batching)
                for k in self._functions
            }

    def predict(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs `signature` on `inputs` (numpy arrays by input name)."""
        if signature not in self._functions:
            raise RequestError(
                f'serving signature name: "{signature}" not found in signature def '
                f"(model {self.name} version {self.version} has: "
                f"{', '.join(sorted(self._functions))})"
            )
        inputs = self._checked(signature, inputs)
        batcher = self._batchers.get(signature)
        return batcher(inputs) if batcher else self._call(signature, inputs)

    def _checked(self, signature: str, inputs: dict) -> dict[str, np.ndarray]:
        definition = self.signature_defs[signature]
        unknown = sorted(set(inputs) - set(definition.inputs))
        if unknown:
            raise RequestError(
                f"input '{unknown[0]}' is not in signature '{signature}' (inputs: "
                f"{', '.join(sorted(definition.inputs))})"
            )
        checked = {}
        for name, info in definition.inputs.items():
            if name in inputs:
                value = inputs[name]
            elif name in definition.defaults:
                value = tf.make_ndarray(definition.defaults[name])
            else:
                raise RequestError(f"missing input '{name}' for signature '{signature}'")
            dtype = tf.dtypes.as_dtype(info.dtype)
            checked[name] = _as_dtype(value, dtype, name)
            shape = info.tensor_shape
            if not shape.unknown_rank and checked[name].ndim != len(shape.dim):
                raise RequestError(
                    f"input '{name}' must have rank {len(shape.dim)}, got shape "
                    f"{list(checked[name].shape)}"
                )
            for axis, dim in enumerate(shape.dim):
                if dim.size >= 0 and checked[name].shape[axis] != dim.size:
                    raise RequestError(
                        f"input '{name}' dimension {axis} must be {dim.size}, got shape "
                        f"{list(checked[name].shape)}"
                    )
        return checked

    def _call(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._functions[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise RequestError(_reason(getattr(e, "message", str(e)))) from None
        return {k: v.numpy() for k, v in outputs.items()}

    def warm_up(self) -> int:
        """Replays the export's `assets.extra/tf_serving_warmup_requests`; returns how many."""
        from tfhf.serving.warmup import read_warmup_requests

        requests = read_warmup_requests(self.path)
        for signature, inputs in requests:
            self.predict(signature, inputs)
        return len(requests)


def _reason(message: str) -> str:
    """The line of a TensorFlow error that says what was wrong with the request."""
    if "assertion failed:" in message:
        said = message.split("assertion failed:", 1)[1].strip().splitlines()[0]
        return said.strip("[] ").split("] [")[0]
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip() and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    return lines[0] if lines else "the model refused the request"


def _as_dtype(value, dtype: tf.DType, name: str) -> np.ndarray:
    try:
        if dtype == tf.string:
            array = np.asarray(value, dtype=object)
            flat = [v.encode() if isinstance(v, str) else v for v in array.reshape(-1)]
            if not all(isinstance(v, bytes) for v in flat):
                raise TypeError
            return np.array(flat, dtype=object).reshape(array.shape)
        array = np.asarray(value)
        if dtype == tf.bool:
            if array.dtype.kind != "b":
                raise TypeError
            return array
        if array.dtype.kind not in "iuf" or (dtype.is_integer and array.dtype.kind == "f"):
            raise TypeError  # booleans, strings and objects are not numbers
        cast = array.astype(dtype.as_numpy_dtype)
        if dtype.is_integer and not np.array_equal(cast, array):
            raise RequestError(f"input '{name}' has values outside the range of {dtype.name}")
        return cast
    except (TypeError, ValueError):
        raise RequestError(f"input '{name}' must be {dtype.name} values of one shape") from None


class ServedModel:
    """A model name and its versions: the highest integer version is served; a new one
    replaces it only once it has loaded and warmed up."""

    def __init__(self, spec: ModelSpec, *, batching: dict | None = None):
        self.spec = spec
        self.batching = batching
        self._lock = threading.Lock()
        self._current: Servable | None = None
        # version -> (state, error message), as TF Serving reports them.
        self.status: dict[int, tuple[str, str]] = {}
        self._failed: dict[int, float] = {}  # version -> folder mtime when it failed

    @property
    def current(self) -> Servable | None:
        with self._lock:
            return self._current

    def servable(self, version: int | None) -> Servable:
        current = self.current
        if current is None or (version is not None and version != current.version):
            wanted = (
                f"Specific({self.spec.name}, {version})"
                if version is not None
                else (f"Latest({self.spec.name})")
            )
            raise NotFound(f"Servable not found for request: {wanted}")
        return current

    def _mtime(self, version: int) -> float:
        # A version that failed is tried again once its folder changes (a copy completing).
        folder = self.spec.base_path / str(version)
        try:
            return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
        except OSError:
            return -1.0

    def poll(self) -> None:
        """Loads the highest version on disk if it is new; keeps the old one on failure."""
        versions = _versions_on_disk(self.spec.base_path)
        current = self.current
        candidates = [
            v
            for v in versions
            if self._failed.get(v) != self._mtime(v) and (current is None or v > current.version)
        ]
        if not candidates:
            return
        version = candidates[-1]
        self.status[version] = ("LOADING", "")
        try:
            servable = Servable(
                self.spec.name,
                version,
                self.spec.base_path / str(version),
                batching=self.batching,
            )
            warmed = servable.warm_up()
        except Exception as e:  # noqa: BLE001  (any failure keeps the old version serving)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._failed[version] = self._mtime(version)
            self.status[version] = ("END", reason)
            log.error(
                "model %s version %d failed to load, still serving %s: %s",
                self.spec.name,
                version,
                f"version {current.version}" if current else "nothing",
                reason,
            )
            return
        with self._lock:
            self._current = servable
        self.status[version] = ("AVAILABLE", "")
        if current is not None:
            self.status[current.version] = ("END", "")
        log.warning(
            "model %s: serving version %d (%d warmup requests replayed)",
            self.spec.name,
            version,
            warmed,
        )


class ModelManager:
    """The served models, and a thread that polls their folders for new versions."""

    def __init__(
        self,
        specs: list[ModelSpec],
        *,
        poll_seconds: float = 1.0,
        batching: dict | None = None,
    ):
        self.models = {s.name: ServedModel(s, batching=batching) for s in specs}
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Loads every model's newest version, then polls in the background."""
        for model in self.models.values():
            model.poll()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll_forever(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for model in self.models.values():
                try:
                    model.poll()
                except Exception:  # noqa: BLE001  (a bad folder must not end the polling)
                    log.exception("model %s: polling failed", model.spec.name)

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def status(self, name: str, version: int | None = None) -> list[dict]:
        """TF Serving's `model_version_status` list for a model (or one version)."""
        model = self.model(name)
        items = sorted(model.status.items(), reverse=True)
        if not items:
            raise NotFound(f"Could not find any versions of model {name}")
        if version is not None:
            items = [(v, s) for v, s in items if v == version]
            if not items:
                raise NotFound(f"Could not find any versions of model {name} (version {version})")
        return [
            {
                "version": str(v),
                "state": state,
                "status": {
                    "error_code": "OK" if not message else "UNKNOWN",
                    "error_message": message,
                },
            }
            for v, (state, message) in items
        ]

    def metadata(self, name: str, version: int | None = None) -> tuple[Servable, dict]:
        """(servable, SignatureDefMap as TF Serving's REST API shows it)."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.model(name).servable(version)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(definition)
        return servable, json_format.MessageToDict(
            signatures,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,  # as TF Serving prints it
        )


# ---- REST ------------------------------------------------------------------------------


def _decode_json_value(value):
    """JSON request values to plain Python: {"b64": ...} becomes bytes, lists recurse."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (ValueError, TypeError):
                raise RequestError("a 'b64' value is not valid base64") from None
        raise RequestError('an input value is an object; only {"b64": ...} objects are allowed')
    if isinstance(value, list):
        return [_decode_json_value(v) for v in value]
    return value


def _json_value(array: np.ndarray, name: str):
    if array.dtype == object:

        def text(v: bytes):
            if name.endswith("_bytes"):
                return {"b64": base64.b64encode(v).decode()}
            try:
                return v.decode()
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(v).decode()}

        return np.vectorize(text, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def _to_array(value, name: str) -> np.ndarray:
    decoded = _decode_json_value(value)
    try:
        array = np.array(decoded, dtype=object)
    except ValueError:
        raise RequestError(f"input '{name}' is ragged: all rows must have one shape") from None
    if (
        array.dtype == object
        and array.size
        and not any(isinstance(v, (bytes, str)) for v in array.reshape(-1))
    ):
        try:
            array = np.array(decoded)
        except ValueError:
            raise RequestError(f"input '{name}' is ragged") from None
    flat = array.reshape(-1)
    if array.dtype == object and any(isinstance(v, list) for v in flat):
        raise RequestError(f"input '{name}' is ragged: all rows must have one shape")
    if array.dtype.kind in "iuf" and array.size:
        # numpy turns [true, 2] into [1, 2]; TF Serving refuses booleans among numbers.
        kinds = {type(v) is bool for v in np.array(decoded, dtype=object).reshape(-1)}
        if True in kinds:
            raise RequestError(f"input '{name}' mixes booleans and numbers")
    return array


def parse_predict_body(
    body: dict, servable: Servable, *, max_instances: int
) -> tuple[str, dict[str, np.ndarray], bool]:
    """(signature name, inputs, row format?) from a REST predict request body."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    signature = body.get("signature_name", "serving_default")
    if not isinstance(signature, str):
        raise RequestError("'signature_name' must be a string")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("the request must have exactly one of 'instances' or 'inputs'")
    definition = servable.signature_defs.get(signature)
    if definition is None:
        servable.predict(signature, {})  # raises NotFound with the signature names
    names = list(definition.inputs)
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list")
        if len(instances) > max_instances:
            raise RequestError(
                f"{len(instances)} instances exceed this server's limit of {max_instances}"
            )
        if all(isinstance(i, dict) and set(i) != {"b64"} for i in instances):
            keys = set(instances[0])
            if any(set(i) != keys for i in instances):
                raise RequestError("every instance must name the same inputs")
            columns = {k: [i[k] for i in instances] for k in keys}
        elif len(names) == 1 or len([n for n in names if n not in definition.defaults]) == 1:
            required = [n for n in names if n not in definition.defaults] or names
            columns = {required[0]: instances}
        else:
            raise RequestError(
                f"signature '{signature}' has several inputs ({', '.join(names)}): each "
                "instance must be an object naming them"
            )
        return signature, {k: _to_array(v, k) for k, v in columns.items()}, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) != {"b64"}:
        columns = inputs
    else:
        required = [n for n in names if n not in definition.defaults] or names
        if len(required) != 1:
            raise RequestError(
                f"signature '{signature}' has several inputs: 'inputs' must be an object"
            )
        columns = {required[0]: inputs}
    arrays = {k: _to_array(v, k) for k, v in columns.items()}
    rows = max((a.shape[0] for a in arrays.values() if a.ndim), default=1)
    if rows > max_instances:
        raise RequestError(f"{rows} rows exceed this server's limit of {max_instances}")
    return signature, arrays, False


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's REST response: `predictions` (rows) or `outputs` (columns)."""
    if not row_format:
        if len(outputs) == 1:
            ((name, value),) = outputs.items()
            return {"outputs": _json_value(value, name)}
        return {"outputs": {k: _json_value(v, k) for k, v in outputs.items()}}
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"predictions": _json_value(value, name)}
    lengths = {np.shape(v)[0] if np.ndim(v) else None for v in outputs.values()}
    if len(lengths) != 1 or None in lengths:
        raise RequestError(
            "the outputs have no common batch size: use the columnar format ('inputs')"
        )
    columns = {k: _json_value(v, k) for k, v in outputs.items()}
    rows = lengths.pop()
    return {"predictions": [{k: c[i] for k, c in columns.items()} for i in range(rows)]}


def _route(path: str):
    """(model, version or None, action) for /v1/models/NAME[/versions/V][/metadata|:predict]."""
    parts = path.split("?")[0].rstrip("/").split("/")
    if len(parts) < 4 or parts[:3] != ["", "v1", "models"]:
        raise NotFound(f"unknown path {path}")
    rest = parts[3:]
    action = "status"
    last = rest[-1]
    if ":" in last:
        last, action = last.split(":", 1)
        rest[-1] = last
    elif last == "metadata":
        action = "metadata"
        rest = rest[:-1]
    if not rest or not rest[0]:
        raise NotFound(f"unknown path {path}")
    name, version = rest[0], None
    if len(rest) == 3 and rest[1] == "versions":
        if not _is_number(rest[2]):
            raise RequestError(f"version '{rest[2]}' is not an integer")
        version = int(rest[2])
    elif len(rest) == 3 and rest[1] == "labels":
        raise NotFound("version labels are not supported by this server; use /versions/V")
    elif len(rest) != 1:
        raise NotFound(f"unknown path {path}")
    return name, version, action


def rest_server(
    manager: ModelManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    max_body_bytes: int = 4 << 20,
    max_instances: int = 1024,
) -> ThreadingHTTPServer:
    """TF Serving's REST API over `manager`, not yet serving (call `serve_forever`)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tfhf.serve"
        timeout = 30  # a client that stops sending must not hold a thread forever
        _body_read = True

        def log_message(self, format, *args):  # noqa: A002  (access logs would flood)
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _guarded(self, handle) -> None:
            try:
                self._send(HTTPStatus.OK, handle())
            except RequestError as e:
                self.close_connection = not self._body_read  # unread bytes would be misread
                self._send(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except NotFound as e:
                self._send(HTTPStatus.NOT_FOUND, {"error": str(e)})
            except _TooLarge as e:
                self.close_connection = True
                self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": str(e)})
            except Exception as e:  # noqa: BLE001  (the server keeps answering)
                log.exception("internal error")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {e}"})

        def do_GET(self):  # noqa: N802
            def handle():
                name, version, action = _route(self.path)
                if action == "status":
                    return {"model_version_status": manager.status(name, version)}
                if action == "metadata":
                    servable, signatures = manager.metadata(name, version)
                    return {
                        "model_spec": {
                            "name": name,
                            "signature_name": "",
                            "version": str(servable.version),
                        },
                        "metadata": {"signature_def": signatures},
                    }
                raise RequestError(f"'{action}' needs POST")

            self._guarded(handle)

        def do_POST(self):  # noqa: N802
            self._body_read = False

            def handle():
                length = self.headers.get("Content-Length")
                if length is None or not _is_number(length):
                    raise RequestError("a POST needs a Content-Length")
                if int(length) > max_body_bytes:
                    raise _TooLarge(
                        f"request body of {length} bytes exceeds the limit of {max_body_bytes}"
                    )
                raw = self.rfile.read(int(length))
                self._body_read = True
                name, version, action = _route(self.path)
                if action != "predict":
                    if action in ("classify", "regress"):
                        raise RequestError(f"'{action}' is not supported; use ':predict'")
                    raise NotFound(f"unknown path {self.path}")
                try:
                    body = json.loads(raw)
                except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
                    raise RequestError(f"malformed JSON: {str(e)[:200]}") from None
                servable = manager.model(name).servable(version)
                signature, inputs, rows = parse_predict_body(
                    body, servable, max_instances=max_instances
                )
                return predict_response(servable.predict(signature, inputs), rows)

            self._guarded(handle)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _TooLarge(Exception):
    pass


# ---- gRPC ------------------------------------------------------------------------------


def grpc_server(
    manager: ModelManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8500,
    max_message_bytes: int = 4 << 20,
    max_instances: int = 1024,
    workers: int = 16,
):
    """TF Serving's `PredictionService` (Predict, GetModelMetadata) and `ModelService`
    (GetModelStatus) over `manager`, built on tensorflow-serving-api's generated stubs;
    started. Returns (server, bound port)."""
    import grpc
    from google.protobuf import any_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
        status_pb2,
    )

    def abort(context, e: Exception):
        code = (
            grpc.StatusCode.NOT_FOUND
            if isinstance(e, NotFound)
            else (grpc.StatusCode.INVALID_ARGUMENT)
        )
        context.abort(code, str(e))

    def version_of(spec) -> int | None:
        if spec.HasField("version"):
            return spec.version.value
        if spec.version_label:
            raise NotFound("version labels are not supported by this server")
        return None

    class Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802
            try:
                servable = manager.model(request.model_spec.name).servable(
                    version_of(request.model_spec)
                )
                signature = request.model_spec.signature_name or "serving_default"
                inputs = {}
                for name, proto in request.inputs.items():
                    dims = [d.size for d in proto.tensor_shape.dim]
                    if any(d < 0 for d in dims) or int(np.prod(dims)) > max_message_bytes:
                        raise RequestError(f"input '{name}' declares an invalid shape {dims}")
                    try:
                        inputs[name] = tf.make_ndarray(proto)
                    except (TypeError, ValueError, KeyError) as e:
                        raise RequestError(f"input '{name}' is not a valid tensor: {e}") from None
                rows = max((a.shape[0] for a in inputs.values() if a.ndim), default=1)
                if rows > max_instances:
                    raise RequestError(f"{rows} rows exceed this server's limit of {max_instances}")
                outputs = servable.predict(signature, inputs)
                wanted = list(request.output_filter) or list(outputs)
                missing = [k for k in wanted if k not in outputs]
                if missing:
                    raise RequestError(f"output_filter names unknown output '{missing[0]}'")
                response = predict_pb2.PredictResponse()
                response.model_spec.name = request.model_spec.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature
                for k in wanted:
                    response.outputs[k].CopyFrom(tf.make_tensor_proto(outputs[k]))
                return response
            except (RequestError, NotFound) as e:
                abort(context, e)

        def GetModelMetadata(self, request, context):  # noqa: N802
            try:
                if list(request.metadata_field) not in ([], ["signature_def"]):
                    raise RequestError("only metadata_field 'signature_def' is supported")
                servable = manager.model(request.model_spec.name).servable(
                    version_of(request.model_spec)
                )
                signatures = get_model_metadata_pb2.SignatureDefMap()
                for key, definition in servable.signature_defs.items():
                    signatures.signature_def[key].CopyFrom(definition)
                packed = any_pb2.Any()
                packed.Pack(signatures)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = request.model_spec.name
                response.model_spec.version.value = servable.version
                response.metadata["signature_def"].CopyFrom(packed)
                return response
            except (RequestError, NotFound) as e:
                abort(context, e)

    class Models(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):  # noqa: N802
            try:
                statuses = manager.status(request.model_spec.name, version_of(request.model_spec))
            except (RequestError, NotFound) as e:
                abort(context, e)
            response = get_model_status_pb2.GetModelStatusResponse()
            for s in statuses:
                item = response.model_version_status.add()
                item.version = int(s["version"])
                item.state = get_model_status_pb2.ModelVersionStatus.State.Value(s["state"])
                item.status.CopyFrom(
                    status_pb2.StatusProto(
                        error_code=0 if s["status"]["error_code"] == "OK" else 2,
                        error_message=s["status"]["error_message"],
                    )
                )
            return response

    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Prediction(), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(Models(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound
