"""TF Serving's REST API: /v1/models/NAME[/versions/V][/metadata|:predict]."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format

from tfhf.serving.model_server.config import is_decimal
from tfhf.serving.model_server.errors import NotFound, RequestError
from tfhf.serving.model_server.manager import ModelManager
from tfhf.serving.model_server.tensors import parse_predict_body, predict_response

log = logging.getLogger("tfhf.serve")


class RestServer(ThreadingHTTPServer):
    """An HTTP server holding what its `RestHandler`s answer from."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        manager: ModelManager,
        *,
        max_body_bytes: int,
        max_instances: int,
    ):
        self.manager = manager
        self.max_body_bytes = max_body_bytes
        self.max_instances = max_instances
        super().__init__(address, RestHandler)


def rest_server(
    manager: ModelManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    max_body_bytes: int = 4 << 20,
    max_instances: int = 1024,
) -> RestServer:
    """TF Serving's REST API over `manager`, not yet serving (call `serve_forever`).

    Args:
      manager: The models to answer for.
      host: Address to bind.
      port: Port to bind; 0 picks a free one (see `server_address`).
      max_body_bytes: Larger request bodies are refused with 413.
      max_instances: Most rows in one predict request.
    """
    return RestServer(
        (host, port), manager, max_body_bytes=max_body_bytes, max_instances=max_instances
    )


class RestHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests from its `RestServer`'s manager."""

    server: RestServer
    protocol_version = "HTTP/1.1"
    server_version = "tfhf.serve"
    timeout = 30  # a client that stops sending must not hold a thread forever
    _body_read = True

    def log_message(self, format, *args):  # noqa: A002  (access logs would flood)
        pass

    def do_GET(self):  # noqa: N802
        self._guarded(self._get)

    def do_POST(self):  # noqa: N802
        self._body_read = False
        self._guarded(self._post)

    def _get(self) -> dict:
        manager = self.server.manager
        name, version, action = _route(self.path)
        if action == "status":
            return {"model_version_status": manager.status(name, version)}
        if action == "metadata":
            servable = manager.model(name).servable(version)
            signatures = json_format.MessageToDict(
                servable.signature_def_map(),
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,  # as TF Serving prints it
            )
            return {
                "model_spec": {
                    "name": name,
                    "signature_name": "",
                    "version": str(servable.version),
                },
                "metadata": {"signature_def": signatures},
            }
        raise RequestError(f"'{action}' needs POST")

    def _post(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None or not is_decimal(length):
            raise RequestError("a POST needs a Content-Length")
        if int(length) > self.server.max_body_bytes:
            raise _TooLarge(
                f"request body of {length} bytes exceeds the limit of {self.server.max_body_bytes}"
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
        servable = self.server.manager.model(name).servable(version)
        signature, inputs, rows = parse_predict_body(
            body, servable, max_instances=self.server.max_instances
        )
        return predict_response(servable.predict(signature, inputs), rows)

    def _guarded(self, handle: Callable[[], dict]) -> None:
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

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _TooLarge(Exception):
    """A request body over the limit: HTTP 413."""


def _route(path: str) -> tuple[str, int | None, str]:
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
        if not is_decimal(rest[2]):
            raise RequestError(f"version '{rest[2]}' is not an integer")
        version = int(rest[2])
    elif len(rest) == 3 and rest[1] == "labels":
        raise NotFound("version labels are not supported by this server; use /versions/V")
    elif len(rest) != 1:
        raise NotFound(f"unknown path {path}")
    return name, version, action
