"""TF Serving's gRPC API: `PredictionService` (Predict, GetModelMetadata) and
`ModelService` (GetModelStatus), on tensorflow-serving-api's generated stubs."""

from __future__ import annotations

import dataclasses
import threading
from concurrent import futures
from typing import NoReturn

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2, message_factory
from google.protobuf.message import DecodeError
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
    status_pb2,
)

from tfhf.serving.model_server.config import specs_from_config
from tfhf.serving.model_server.errors import Cancelled, NotFound, Overloaded, RequestError
from tfhf.serving.model_server.manager import ModelManager
from tfhf.serving.model_server.streams import StreamLimits
from tfhf.serving.model_server.tensors import check_rows


def grpc_server(
    manager: ModelManager,
    *,
    host: str = "127.0.0.1",
    port: int = 8500,
    max_message_bytes: int = 4 << 20,
    max_instances: int = 1024,
    workers: int = 16,
    max_concurrent_rpcs: int = 256,
    allow_reload_config: bool = False,
) -> tuple[grpc.Server, int]:
    """TF Serving's `PredictionService` and `ModelService` over `manager`, started.

    Args:
      manager: The models to answer for.
      host: Address to bind.
      port: Port to bind; 0 picks a free one.
      max_message_bytes: Largest message received or sent; also caps the element count
        an input tensor may declare.
      max_instances: Most rows in one predict request.
      workers: Threads answering requests.
      max_concurrent_rpcs: Calls running or waiting for a thread; one more is refused at
        once with RESOURCE_EXHAUSTED instead of queueing without bound. 0: no cap.
      allow_reload_config: Answer `ModelService.HandleReloadConfigRequest`, with which any
        client that reaches the port replaces the served models; off, it is refused with
        PERMISSION_DENIED.

    Returns:
      (server, bound port).
    """
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs or None,
    )
    predictions = PredictionServicer(
        manager,
        max_message_bytes=max_message_bytes,
        max_instances=max_instances,
        # A stream holds its thread until it ends: half of them at most, so that unary calls
        # always find one while streams run (or wait on clients that stopped reading).
        max_live_streams=max(1, workers // 2),
    )
    _add_service(server, prediction_service_pb2.DESCRIPTOR, predictions)
    model_service = ModelServicer(manager, allow_reload_config=allow_reload_config)
    _add_service(server, model_service_pb2.DESCRIPTOR, model_service)
    # tfhf's own service (prediction_stream.proto): TF Serving's messages, streamed.
    streaming = grpc.unary_stream_rpc_method_handler(
        _refusing_malformed(predictions.PredictStream, streams=True),
        request_deserializer=_tolerant(predict_pb2.PredictRequest),
        response_serializer=predict_pb2.PredictResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(STREAM_SERVICE, {"PredictStream": streaming}),)
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC to {host}:{port}")
    server.start()
    return server, bound


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over `manager`'s served versions."""

    def __init__(
        self,
        manager: ModelManager,
        *,
        max_message_bytes: int,
        max_instances: int,
        max_live_streams: int = 0,
    ):
        self.manager = manager
        self.max_message_bytes = max_message_bytes
        self.max_instances = max_instances
        self._threads_for_streams = StreamLimits(max_live=max_live_streams)

    def Predict(self, request, context):  # noqa: N802
        if not context.is_active():
            # Cancelled before it reached a thread (a client resetting its calls as soon as
            # they are sent): nothing decoded, nothing run, nobody to answer.
            return predict_pb2.PredictResponse()
        try:
            with self.manager.metrics.track("grpc", request.model_spec.name) as record:
                return self._predict(request, context, record)
        except (RequestError, NotFound, Cancelled) as e:
            _abort(context, e)

    def PredictStream(self, request, context):  # noqa: N802
        """A generation export's text as it is decoded: one PredictResponse per chunk, its
        text output (`text`, `summary`, `translation`) holding each row's new text."""
        limits = self.manager.streams
        try:
            with (
                self._threads_for_streams.slot("half of --grpc_max_threads"),
                limits.slot(),
                self.manager.metrics.track("grpc", request.model_spec.name) as record,
            ):
                servable = self.manager.servable(*_model_of(request.model_spec))
                record.update(version=servable.version, signature="stream")
                if request.model_spec.signature_name not in ("", "serving_default"):
                    raise RequestError(
                        "a stream decodes the default signature: leave signature_name out"
                    )
                inputs = {n: self._decoded(n, proto) for n, proto in request.inputs.items()}
                check_rows(inputs, max_instances=self.max_instances)
                limits.check_rows(inputs)
                chunks = servable.stream(inputs, cancelled=lambda: not context.is_active())
                for pieces in chunks:
                    response = predict_pb2.PredictResponse()
                    response.model_spec.name = request.model_spec.name
                    response.model_spec.version.value = servable.version
                    response.model_spec.signature_name = "serving_default"
                    response.outputs[servable.stream_output].CopyFrom(
                        tf.make_tensor_proto(np.array(pieces, dtype=object))
                    )
                    # gRPC sends while this generator waits at `yield`: a client that stopped
                    # reading keeps it there, holding a thread, until the timer cancels the
                    # call (which ends the send, and this generator at the `yield`).
                    timer = threading.Timer(limits.write_timeout, context.cancel)
                    timer.daemon = True
                    timer.start()
                    try:
                        yield response
                    finally:
                        timer.cancel()
        except (RequestError, NotFound, Cancelled, Overloaded) as e:
            _abort(context, e)

    def _predict(self, request, context, record: dict) -> predict_pb2.PredictResponse:
        servable = self.manager.servable(*_model_of(request.model_spec))
        signature = request.model_spec.signature_name or "serving_default"
        known = signature if signature in servable.signature_defs else ""
        record.update(version=servable.version, signature=known)
        inputs = {name: self._decoded(name, proto) for name, proto in request.inputs.items()}
        check_rows(inputs, max_instances=self.max_instances)
        outputs = servable.predict(signature, inputs, cancelled=lambda: not context.is_active())
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

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if list(request.metadata_field) not in ([], ["signature_def"]):
                raise RequestError("only metadata_field 'signature_def' is supported")
            servable = self.manager.servable(*_model_of(request.model_spec))
            packed = any_pb2.Any()
            packed.Pack(servable.signature_def_map())
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            response.metadata["signature_def"].CopyFrom(packed)
            return response
        except (RequestError, NotFound) as e:
            _abort(context, e)

    def _decoded(self, name: str, proto) -> np.ndarray:
        # A tensor declares its shape apart from its values: a few bytes on the wire may
        # declare terabytes, so the shape is checked before anything is allocated.
        dims = [d.size for d in proto.tensor_shape.dim]
        count = int(np.prod(dims, dtype=object))
        if any(d < 0 for d in dims) or count > self.max_message_bytes:
            raise RequestError(f"input '{name}' declares an invalid shape {dims}")
        if proto.dtype not in _REQUEST_DTYPES:
            kind = types_pb2.DataType.Name(proto.dtype) if proto.dtype in _DTYPE_NAMES else "?"
            raise RequestError(
                f"input '{name}' has dtype {kind}; requests carry numbers, booleans or strings"
            )
        # Fewer values than the shape holds are padded with the last one when decoded
        # (`make_ndarray`): a 3.5 MB string declared [1000] would become 3.5 GB, and so would
        # ["a", <3.5 MB>]. The decoded size, as the model would see it, is bounded like the
        # message.
        if proto.dtype == types_pb2.DT_STRING:
            values = proto.string_val
            padding = max(0, count - len(values)) * (len(values[-1]) if values else 0)
            size = sum(map(len, values)) + padding
        else:
            size = count * tf.dtypes.as_dtype(proto.dtype).size
        if size > self.max_message_bytes:
            raise RequestError(
                f"input '{name}' decodes to {size} bytes, over this server's limit of "
                f"{self.max_message_bytes}"
            )
        try:
            return tf.make_ndarray(proto)
        except (TypeError, ValueError, KeyError) as e:
            raise RequestError(f"input '{name}' is not a valid tensor: {e}") from None


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest over `manager`'s models."""

    def HandleReloadConfigRequest(self, request, context):  # noqa: N802
        if not self.allow_reload_config:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "reloading the model config over gRPC is off (tfhf.serve "
                "--allow_reload_config_rpc turns it on)",
            )
        # As TF Serving answers it: the call succeeds and its status says how the reload went.
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.manager.reload(specs_from_config(request.config))
        except ValueError as e:
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = str(e)
        return response

    def __init__(self, manager: ModelManager, *, allow_reload_config: bool = False):
        self.manager = manager
        self.allow_reload_config = allow_reload_config

    def GetModelStatus(self, request, context):  # noqa: N802
        try:
            statuses = self.manager.status(*_model_of(request.model_spec))
        except (RequestError, NotFound) as e:
            _abort(context, e)
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


STREAM_SERVICE = "tfhf.serving.PredictionStreamService"


@dataclasses.dataclass(frozen=True)
class _Malformed:
    """A request whose bytes did not parse: handed to the method, which refuses it."""

    reason: str


def _tolerant(message_class):
    """A request deserializer that returns `_Malformed` instead of raising: grpcio answers a
    deserializer's exception with INTERNAL and logs a traceback per request."""

    def parse(raw: bytes):
        try:
            return message_class.FromString(raw)
        except DecodeError as e:
            return _Malformed(f"not a valid {message_class.DESCRIPTOR.full_name}: {e}")

    return parse


def _refusing_malformed(method, *, streams: bool = False):
    """`method`, refusing a `_Malformed` request with INVALID_ARGUMENT."""

    def refuse(request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is {request.reason}")

    if streams:

        def stream(request, context):
            if isinstance(request, _Malformed):
                refuse(request, context)
            yield from method(request, context)

        return stream

    def unary(request, context):
        if isinstance(request, _Malformed):
            refuse(request, context)
        return method(request, context)

    return unary


def _add_service(server: grpc.Server, file_descriptor, servicer) -> None:
    """Every method of the one service `file_descriptor` declares, answered by `servicer`'s
    method of that name (the base class answers UNIMPLEMENTED), with tolerant
    deserializers: what grpcio's generated `add_*_to_server` does, but a malformed message
    gets INVALID_ARGUMENT in one line rather than INTERNAL and a logged traceback."""
    (service,) = file_descriptor.services_by_name.values()
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            _refusing_malformed(getattr(servicer, method.name)),
            request_deserializer=_tolerant(message_factory.GetMessageClass(method.input_type)),
            response_serializer=message_factory.GetMessageClass(
                method.output_type
            ).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _model_of(spec: model_pb2.ModelSpec) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a request's `ModelSpec`; version and label may be None."""
    version = spec.version.value if spec.HasField("version") else None
    return spec.name, version, spec.version_label or None


def _abort(context: grpc.ServicerContext, e: Exception) -> NoReturn:
    if isinstance(e, NotFound):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(e, Overloaded):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
    elif isinstance(e, Cancelled):
        code = grpc.StatusCode.CANCELLED
    else:
        code = grpc.StatusCode.INVALID_ARGUMENT
    context.abort(code, str(e))


_REQUEST_DTYPES = {
    types_pb2.DT_FLOAT,
    types_pb2.DT_DOUBLE,
    types_pb2.DT_HALF,
    types_pb2.DT_BFLOAT16,
    types_pb2.DT_INT8,
    types_pb2.DT_INT16,
    types_pb2.DT_INT32,
    types_pb2.DT_INT64,
    types_pb2.DT_UINT8,
    types_pb2.DT_UINT16,
    types_pb2.DT_UINT32,
    types_pb2.DT_UINT64,
    types_pb2.DT_BOOL,
    types_pb2.DT_STRING,
}
_DTYPE_NAMES = set(types_pb2.DataType.values())
