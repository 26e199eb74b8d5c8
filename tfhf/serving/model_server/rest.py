"""TF Serving's REST API: /v1/models/NAME[/versions/V][/metadata|:predict], on aiohttp.

aiohttp parses HTTP (it refuses `Transfer-Encoding` beside `Content-Length`, duplicate
lengths and over-long header lines, percent-decodes paths, keeps connections alive and
closes idle ones, drains an unread body before answering); the event loop only moves
bytes. Parsing JSON and running the model happen in a bounded thread pool, so a slow
request never stalls the others' I/O and the work in flight is capped; the pool's threads
are shared fairly between the models (`FairShare`), so a flood of requests to one model
cannot keep another's waiting behind it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import threading
from concurrent import futures
from http import HTTPStatus

import prometheus_client
from aiohttp import http_exceptions, web
from google.protobuf import json_format

from tfhf.serving.model_server.config import is_decimal
from tfhf.serving.model_server.errors import Cancelled, NotFound, Overloaded, RequestError
from tfhf.serving.model_server.manager import ModelManager
from tfhf.serving.model_server.metrics import UNKNOWN
from tfhf.serving.model_server.sharing import FairShare
from tfhf.serving.model_server.tensors import check_depth, parse_predict_body, predict_response

log = logging.getLogger("tfhf.serve")


class _QuietProtocolErrors(logging.Filter):
    """Drops aiohttp's traceback for a malformed request or a client that left: the
    client got its 400 (or nothing to get), and hostile traffic must not flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, (http_exceptions.HttpProcessingError, ConnectionError))


_http_log = logging.getLogger("tfhf.serve.http")
_http_log.addFilter(_QuietProtocolErrors())


def default_max_connections() -> int:
    """Open connections the process can hold: its descriptor limit less a reserve for
    model files, gRPC and logs, at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(4096, soft - 256))


class RestServer:
    """TF Serving's REST API over a `ModelManager`, on aiohttp in its own event loop.

    The socket is bound on construction (so `server_address` is known at once);
    `serve_forever` runs the loop in the calling thread until `shutdown`.
    """

    def __init__(
        self,
        manager: ModelManager,
        *,
        host: str,
        port: int,
        max_body_bytes: int,
        max_instances: int,
        threads: int,
        timeout_seconds: float,
        max_connections: int,
        backlog: int,
        grace_seconds: float,
    ):
        self.manager = manager
        self.max_body_bytes = max_body_bytes
        self.max_instances = max_instances
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self.backlog = backlog
        self.grace_seconds = grace_seconds
        self._socket = socket.create_server((host, port), backlog=backlog)
        self.server_address = self._socket.getsockname()[:2]
        # Predict requests take turns for `threads` threads, shared between the models; one
        # more thread answers status, metadata and metrics.
        self._share = FairShare(threads, models=lambda: len(manager.models))
        self._pool = futures.ThreadPoolExecutor(threads + 1, thread_name_prefix="tfhf-rest")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running = threading.Event()
        self._finished = threading.Event()

    def serve_forever(self) -> None:
        """Answers requests until `shutdown` is called (from another thread)."""
        try:
            asyncio.run(self._serve())
        finally:
            self._finished.set()

    def shutdown(self) -> None:
        """Stops accepting connections, lets the requests in flight finish (for at most
        `grace_seconds`), then returns."""
        if self._running.wait(timeout=30) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._finished.wait()
        else:
            self._socket.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = _CappedServer(
            self._handle,
            max_connections=self.max_connections,
            handler_cancellation=True,  # a client that leaves cancels its request's wait
            keepalive_timeout=self.timeout_seconds,
            logger=_http_log,
            access_log=None,
            max_line_size=8190,
            max_field_size=8190,
            max_headers=100,
            # After an early answer (413, 408) the unread rest of a body is drained for
            # this long before closing: the client reads its answer rather than a reset.
            lingering_time=2.0,
        )
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=self.grace_seconds)
        await runner.setup()
        await web.SockSite(runner, self._socket, backlog=self.backlog).start()
        self._running.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        cancelled = threading.Event()
        try:
            metrics = self.manager.metrics
            if request.method == "GET" and metrics.config.enabled:
                if request.path == metrics.config.path:
                    return web.Response(
                        body=await self._in_pool(metrics.exposition),
                        headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
                    )
            if request.method == "GET":
                payload = await self._in_pool(self._get, request.path)
            elif request.method == "POST":
                raw = await self._body(request)
                if request.path.endswith(":predict_stream"):
                    return await self._stream(request, raw, cancelled)
                payload = await self._in_turn(
                    request.path, self._post, request.path, raw, cancelled
                )
            else:
                raise _NotAllowed(f"method {request.method} is not supported; use GET or POST")
            return _json(HTTPStatus.OK, payload)
        except asyncio.CancelledError:
            cancelled.set()  # the client has gone: the model call stops at its next chunk
            raise
        except ConnectionError:
            # The client left mid-request (its body cut short, say): nobody reads an answer,
            # and hostile clients must not flood the log with tracebacks.
            cancelled.set()
            log.info("client left during %s %s", request.method, request.path[:200])
            return web.Response(status=HTTPStatus.BAD_REQUEST)
        except RequestError as e:
            return _json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except NotFound as e:
            return _json(HTTPStatus.NOT_FOUND, {"error": str(e)})
        except Overloaded as e:
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
        except _HttpError as e:
            response = _json(e.status, {"error": str(e)})
            response.force_close()  # the rest of the body is not worth waiting for
            return response
        except Exception as e:  # noqa: BLE001  (the server keeps answering)
            log.exception("internal error")
            return _json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {e}"})

    async def _in_pool(self, function, *args):
        return await self._loop.run_in_executor(self._pool, function, *args)

    async def _in_turn(self, path: str, function, *args):
        """`function(*args)` in the pool, once the path's model has its turn."""
        async with self._share.turn_async(self._model_key(path)):
            return await self._in_pool(function, *args)

    def _model_key(self, path: str) -> str:
        """The served model a path names, or "unknown": what a request takes turns as."""
        try:
            name = _route(path.removesuffix("_stream"))[0]
        except (NotFound, RequestError):
            return UNKNOWN
        return name if name in self.manager.models else UNKNOWN

    async def _body(self, request: web.BaseRequest) -> bytes:
        if request.content_length is None and "Transfer-Encoding" not in request.headers:
            raise RequestError("a POST needs a Content-Length")
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise _TooLarge(
                f"request body of {request.content_length} bytes exceeds the limit of "
                f"{self.max_body_bytes}"
            )
        data = bytearray()

        async def read() -> None:
            while chunk := await request.content.readany():
                data.extend(chunk)
                if len(data) > self.max_body_bytes:
                    raise _TooLarge(
                        f"request body exceeds the limit of {self.max_body_bytes} bytes"
                    )

        try:
            await asyncio.wait_for(read(), self.timeout_seconds)
        except asyncio.TimeoutError:
            raise _TimedOut(
                f"the request body did not arrive within {self.timeout_seconds:g} s "
                f"({len(data)} of {request.content_length or 'chunked'} bytes read)"
            ) from None
        return bytes(data)

    async def _stream(
        self, request: web.BaseRequest, raw: bytes, cancelled: threading.Event
    ) -> web.StreamResponse:
        """Server-Sent Events: `data: {"text": [new text per row]}` per decoded chunk (the
        output `:predict` names: `text`, `summary`, `translation`), then `event: end`. A
        refusal before the first chunk is an ordinary JSON error."""
        with self.manager.streams.slot():
            return await self._stream_in_slot(request, raw, cancelled)

    async def _stream_in_slot(
        self, request: web.BaseRequest, raw: bytes, cancelled: threading.Event
    ) -> web.StreamResponse:
        chunks, first, key = await self._in_turn(
            request.path, self._open_stream, request.path, raw, cancelled
        )
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Server": "tfhf.serve",
            }
        )
        timeout = self.manager.streams.write_timeout

        async def send(data: bytes) -> None:
            # A client that stops reading fills the socket's buffers and the write waits:
            # not longer than the write timeout, then the stream ends and frees its state.
            await asyncio.wait_for(response.write(data), timeout)

        await response.prepare(request)
        try:
            await send(_event({key: first}))
            while (pieces := await self._in_turn(request.path, next, chunks, None)) is not None:
                await send(_event({key: pieces}))
            await send(_event({}, "end"))
        except (RequestError, NotFound) as e:
            await send(_event({"error": str(e)}, "error"))
        except (ConnectionError, Cancelled):
            cancelled.set()  # the client has gone: decoding stops at its next chunk
            return response
        except asyncio.TimeoutError:
            cancelled.set()
            chunks.close()
            log.info("stream to a client that stopped reading ended after %g s", timeout)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    def _open_stream(self, path: str, raw: bytes, cancelled: threading.Event):
        """(the chunk iterator, its first chunk, the output's name) for a `:predict_stream`
        request."""
        name, version, label, _ = _route(path.removesuffix("_stream"))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:
            raise RequestError(f"malformed JSON: {str(e)[:200]}") from None
        check_depth(body)
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if body.get("signature_name", "serving_default") != "serving_default":
            raise RequestError("a stream decodes the default signature: leave signature_name out")
        with self.manager.metrics.track("rest", name) as record:
            servable = self.manager.servable(name, version, label)
            record.update(version=servable.version, signature="stream")
            if not servable.streams:
                servable.stream({})  # refuses, saying why
            _, inputs, _ = parse_predict_body(
                {**body, "signature_name": "stream_start"},
                servable,
                max_instances=self.max_instances,
            )
            self.manager.streams.check_rows(inputs)
            chunks = servable.stream(inputs, cancelled=cancelled.is_set)
            return chunks, next(chunks), servable.stream_output

    def _get(self, path: str) -> dict:
        name, version, label, action = _route(path)
        if action == "status":
            return {"model_version_status": self.manager.status(name, version, label)}
        if action == "metadata":
            servable = self.manager.servable(name, version, label)
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

    def _post(self, path: str, raw: bytes, cancelled: threading.Event) -> dict:
        name, version, label, action = _route(path)
        if action != "predict":
            if action in ("classify", "regress"):
                raise RequestError(f"'{action}' is not supported; use ':predict'")
            raise NotFound(f"unknown path {path}")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise RequestError(f"malformed JSON: {str(e)[:200]}") from None
        check_depth(body)
        with self.manager.metrics.track("rest", name) as record:
            servable = self.manager.servable(name, version, label)
            record["version"] = servable.version
            named = body.get("signature_name", "serving_default") if isinstance(body, dict) else ""
            if isinstance(named, str) and named in servable.signature_defs:  # export's names only
                record["signature"] = named
            signature, inputs, rows = parse_predict_body(
                body, servable, max_instances=self.max_instances
            )
            outputs = servable.predict(signature, inputs, cancelled=cancelled.is_set)
            return predict_response(outputs, rows)


def rest_server(
    manager: ModelManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    max_body_bytes: int = 4 << 20,
    max_instances: int = 1024,
    threads: int = 8,
    timeout_seconds: float = 30.0,
    max_connections: int | None = None,
    backlog: int = 1024,
    grace_seconds: float = 30.0,
) -> RestServer:
    """TF Serving's REST API over `manager`, bound but not yet serving (call
    `serve_forever`).

    Args:
      manager: The models to answer for.
      host: Address to bind.
      port: Port to bind; 0 picks a free one (see `server_address`).
      max_body_bytes: Larger request bodies are refused with 413.
      max_instances: Most rows in one predict request.
      threads: Predict requests parsed and run at once, shared between the models
        (`FairShare`); more wait their turn.
      timeout_seconds: How long a body may take to arrive (408 after), and how long an
        idle keep-alive connection stays open.
      max_connections: Open connections; one more is answered 503 and closed. None:
        `default_max_connections()`.
      backlog: Connections the kernel queues before they are accepted.
      grace_seconds: On `shutdown`, how long the requests in flight may still run.
    """
    return RestServer(
        manager,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        max_instances=max_instances,
        threads=threads,
        timeout_seconds=timeout_seconds,
        max_connections=max_connections or default_max_connections(),
        backlog=backlog,
        grace_seconds=grace_seconds,
    )


class _CappedServer(web.Server):
    """aiohttp's low-level server, answering 503 to a connection beyond the cap."""

    _BUSY_BODY = json.dumps({"error": "too many open connections; retry later"}).encode()
    _BUSY = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
    )

    def __init__(self, *args, max_connections: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self._refused: set = set()  # answered 503, closing: they hold no slot

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        if len(self.connections) - len(self._refused) > self.max_connections:
            self._refused.add(handler)
            # Nothing of the request is read: the answer, end of sending, and the close a
            # moment later (closing with the request unread would reset the connection
            # before the client has read why).
            transport.pause_reading()
            transport.write(self._BUSY)
            transport.write_eof()
            asyncio.get_running_loop().call_later(1.0, transport.close)

    def connection_lost(self, handler, exc=None) -> None:
        self._refused.discard(handler)
        super().connection_lost(handler, exc)


class _HttpError(Exception):
    """A refusal with its own status that also closes the connection."""

    status = HTTPStatus.BAD_REQUEST


class _TooLarge(_HttpError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class _TimedOut(_HttpError):
    status = HTTPStatus.REQUEST_TIMEOUT


class _NotAllowed(_HttpError):
    status = HTTPStatus.METHOD_NOT_ALLOWED


def _event(payload: dict, kind: str | None = None) -> bytes:
    """One Server-Sent Event holding `payload` as JSON."""
    head = f"event: {kind}\n" if kind else ""
    return f"{head}data: {json.dumps(payload)}\n\n".encode()


def _json(status: int, payload: dict) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers={"Server": "tfhf.serve"},
    )


def _route(path: str) -> tuple[str, int | None, str | None, str]:
    """(model, version or None, label or None, action) for
    /v1/models/NAME[/versions/V | /labels/LABEL][/metadata | :predict]."""
    parts = path.rstrip("/").split("/")
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
    name, version, label = rest[0], None, None
    if len(rest) == 3 and rest[1] == "versions":
        if not is_decimal(rest[2]):
            raise RequestError(f"version '{rest[2]}' is not an integer")
        version = int(rest[2])
    elif len(rest) == 3 and rest[1] == "labels" and rest[2]:
        label = rest[2]
    elif len(rest) != 1:
        raise NotFound(f"unknown path {path}")
    return name, version, label, action
