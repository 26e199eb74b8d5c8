"""One loaded version of a model: its signatures, input checks, and warmup replay."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from tfhf.serving.export import ROW_BUCKETS, XLA_TWIN, read_signature_defs
from tfhf.serving.model_server.batching import Batcher, rows_of, split_rows
from tfhf.serving.model_server.errors import Cancelled, RequestError
from tfhf.serving.model_server.memory import release_memory
from tfhf.serving.model_server.metrics import Metrics
from tfhf.serving.model_server.sharing import FairShare
from tfhf.serving.warmup import read_warmup_requests


class Servable:
    """One loaded version of a model: its signatures, their SignatureDefs and defaults.

    Args:
      name: The model name requests use.
      version: The version number (its folder's name).
      path: The version's SavedModel folder.
      batching: `Batcher` arguments (`max_batch_size`, `timeout`, `threads`); None runs
        each request alone.
      max_rows_per_call: A request with more rows runs in calls of this many (the same
        outputs, memory bounded by the call rather than by the request); 0 never splits.
        A one-value control input (`temperature` [1]) goes whole into every call. An XLA
        signature's calls hold at most the export's largest row bucket (64), so that no
        row count compiles a program of its own.
      metrics: Where the batchers record batch sizes and each call its time, or None.
      xla_twins: Answer requests to a signature with its XLA-compiled twin, where the
        export has one (the `serving_default_xla` of lm, summarize and translate exports:
        the same inputs, outputs and text, one compiled program per shape, faster).
      share: Where each model call waits for its turn (`FairShare`); None runs it at once.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        *,
        batching: dict | None = None,
        max_rows_per_call: int = 64,
        metrics: Metrics | None = None,
        xla_twins: bool = True,
        share: FairShare | None = None,
    ):
        import tensorflow_text  # noqa: F401  (registers the ops tfhf exports use)

        self.name, self.version, self.path = name, version, path
        self.max_rows_per_call = max_rows_per_call
        self._share = share
        self._metrics = metrics
        self.signature_defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(str(path), tags=["serve"])
        self._functions = {k: self._loaded.signatures[k] for k in self.signature_defs}
        # Signatures answered by an XLA program, compiled once per row bucket: a call of more
        # rows than the largest bucket would compile a program of its own.
        self._compiled = {k for k in self._functions if k.endswith(XLA_TWIN)}
        if xla_twins:
            for key in list(self._functions):
                if key + XLA_TWIN in self._functions:
                    self._functions[key] = self._functions[key + XLA_TWIN]
                    self._compiled.add(key)
        self._batchers = {}
        if batching:
            self._batchers = {
                k: Batcher(
                    lambda inputs, k=k: self._call(k, inputs),
                    on_batch=metrics and (lambda rows, k=k: metrics.batch(name, k, rows)),
                    **batching,
                )
                for k in self._functions
            }

    def close(self) -> None:
        """Ends the batchers' threads (once their queued batches have run). The version
        still answers a request that holds it, unbatched."""
        for batcher in self._batchers.values():
            batcher.close()

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        """The signatures as TF Serving's model metadata reports them."""
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in self.signature_defs.items():
            signatures.signature_def[key].CopyFrom(definition)
        return signatures

    def predict(
        self,
        signature: str,
        inputs: dict[str, np.ndarray],
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs `signature` on `inputs` (numpy arrays by input name).

        Inputs the request leaves out take the SignatureDef's defaults. A request with
        more than `max_rows_per_call` rows runs in parts; `cancelled` is asked before each.

        Raises:
          RequestError: The signature is unknown, or the inputs do not fit it.
          Cancelled: `cancelled()` said the client has gone.
        """
        if signature not in self._functions:
            raise RequestError(
                f'serving signature name: "{signature}" not found in signature def '
                f"(model {self.name} version {self.version} has: "
                f"{', '.join(sorted(self._functions))})"
            )
        inputs = self._checked(signature, inputs)
        batcher = self._batchers.get(signature)
        rows = rows_of(inputs)
        if batcher and rows is not None and rows <= batcher.max_batch_size:
            if cancelled is not None and cancelled():
                raise Cancelled("client gone before its request ran")
            return batcher(inputs)
        # Larger than a batch (or not batched): alone, in parts of max_rows_per_call.
        return self._call_in_parts(signature, inputs, cancelled)

    @property
    def streams(self) -> bool:
        """Whether the export decodes in chunks (`stream_start`, `stream_continue`)."""
        return {"stream_start", "stream_continue"} <= set(self._functions)

    @property
    def stream_output(self) -> str:
        """The output that streams: `serving_default`'s text (`text`, `summary`, ...)."""
        default = self.signature_defs["serving_default"].outputs
        shared = [k for k in self.signature_defs["stream_start"].outputs if k in default]
        return shared[0] if shared else "text"

    def stream(
        self,
        inputs: dict[str, np.ndarray],
        *,
        cancelled: Callable[[], bool] | None = None,
    ) -> Iterator[list[str]]:
        """The export's text as it is decoded: one list (a string per row) of new text per
        chunk. Together the pieces spell the `serving_default` text for the same inputs.

        Raises:
          RequestError: The export cannot stream, or the inputs do not fit it.
          Cancelled: `cancelled()` said the client has gone.
        """
        if not self.streams:
            raise RequestError(
                f"model {self.name} version {self.version} cannot stream: it has no "
                "stream_start and stream_continue signatures (export it again with this tfhf)"
            )
        return self._chunks(self._checked("stream_start", inputs), cancelled)

    def _chunks(self, checked: dict, cancelled) -> Iterator[list[str]]:
        outputs = self._call("stream_start", checked, cancelled)
        sent = [""] * len(outputs["finished"])
        while True:
            finished = outputs["finished"]
            pieces = []
            for row, text in enumerate(outputs[self.stream_output]):
                text = text.decode("utf-8", errors="replace")
                # A character cut between chunks shows as U+FFFD until its bytes are all in.
                if not finished[row]:
                    text = text.rstrip("\ufffd")
                pieces.append(text[len(sent[row]) :] if text.startswith(sent[row]) else "")
                if text.startswith(sent[row]):
                    sent[row] = text
            yield pieces
            if finished.all():
                return
            if cancelled is not None and cancelled():
                raise Cancelled("client gone while streaming")
            wanted = self.signature_defs["stream_continue"].inputs
            outputs = self._call(
                "stream_continue",
                {k: outputs[k] if k in outputs else checked[k] for k in wanted if k != "prompt"},
                cancelled,
            )

    def warm_up(self) -> int:
        """Replays the export's `assets.extra/tf_serving_warmup_requests`; returns how many."""
        requests = read_warmup_requests(self.path)
        for signature, inputs in requests:
            self.predict(signature, inputs)
        return len(requests)

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

    def _call_in_parts(self, signature: str, inputs: dict, cancelled) -> dict[str, np.ndarray]:
        rows, step = split_rows(inputs), self.max_rows_per_call
        if signature in self._compiled:
            step = min(step or ROW_BUCKETS[-1], ROW_BUCKETS[-1])
        if not step or rows is None or rows <= step:
            return self._call(signature, inputs, cancelled)
        parts = []
        try:
            for start in range(0, rows, step):
                if cancelled is not None and cancelled():
                    raise Cancelled(f"client gone after {start} of {rows} rows")
                # Row inputs are cut; a one-value control goes whole into every part.
                part = self._call(
                    signature,
                    {
                        k: v[start : start + step] if len(v) == rows else v
                        for k, v in inputs.items()
                    },
                    cancelled,
                )
                wanted = min(step, rows - start)
                if any(np.ndim(v) == 0 or len(v) != wanted for v in part.values()):
                    return self._call(signature, inputs)  # outputs not one per row: one call
                parts.append(part)
            try:
                return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            except ValueError:  # rows padded to each part's own width
                return self._call(signature, inputs)
        finally:
            release_memory()  # a large request's tensors, back to the system

    def _call(
        self, signature: str, inputs: dict[str, np.ndarray], cancelled=None
    ) -> dict[str, np.ndarray]:
        """One run of a signature, once it is this model's turn; skipped when `cancelled()`
        says the client has gone by then (a call cancelled as soon as sent costs nothing)."""
        turn = self._share.turn(self.name) if self._share else contextlib.nullcontext()
        try:
            with turn:
                if cancelled is not None and cancelled():
                    raise Cancelled("client gone before its turn")
                start = time.perf_counter()
                outputs = self._functions[signature](
                    **{k: tf.constant(v) for k, v in inputs.items()}
                )
                if self._metrics is not None:
                    method = "PredictStream" if signature.startswith("stream_") else "Predict"
                    self._metrics.model_call(self.name, method, time.perf_counter() - start)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise RequestError(_reason(getattr(e, "message", str(e)))) from None
        return {k: v.numpy() for k, v in outputs.items()}


def _reason(message: str) -> str:
    """The line of a TensorFlow error that says what was wrong with the request."""
    if "assertion failed:" in message:
        said = message.split("assertion failed:", 1)[1].strip().splitlines()[0]
        # "[reason] [more]": one bracket off each end, so a reason's own brackets stay.
        if said.startswith("[") and said.endswith("]"):
            said = said[1:-1]
        return said.split("] [")[0].strip()
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
