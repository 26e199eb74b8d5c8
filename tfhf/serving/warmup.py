"""Warmup requests stored with a SavedModel, in the file TF Serving replays at model load.

TF Serving initialises much of a model lazily (lookup tables, memory pools, kernels
chosen per shape), so the first requests to a fresh version can be far slower than the
rest. A version folder that holds `assets.extra/tf_serving_warmup_requests`, a TFRecord
file of `PredictionLog` protos, has those requests run before the version is marked
available, so no client pays that cost. TF Serving refuses to load a version whose
warmup request fails, and reads at most 1000 of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from numpy.typing import ArrayLike
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from tfhf.errors import TfhfError

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_REQUESTS = 1000

# (signature name, {input name: values}): one Predict request.
WarmupRequest = tuple[str, Mapping[str, ArrayLike]]


def write_warmup_requests(version_dir: str | Path, requests: Sequence[WarmupRequest]) -> Path:
    """Writes `requests` as the warmup file of the SavedModel in `version_dir`.

    Each request becomes a `PredictionLog` holding a `PredictRequest` for its
    signature. Values keep their NumPy dtype; Python lists take TensorFlow's
    (int32, float32, string), the dtypes signatures usually declare. Give every
    input of the signature: a TF Serving that predates SignatureDef defaults fails
    a request that leaves one out, and with it the model's load.

    Args:
      version_dir: A SavedModel folder (usually the staging folder of an export).
      requests: `(signature_name, {input_name: values})` pairs, at most 1000.

    Returns:
      The path of the file written.

    Example:
      >>> import tempfile
      >>> folder = tempfile.mkdtemp()
      >>> write_warmup_requests(folder, [("serving_default", {"text": ["hi"]})]).name
      'tf_serving_warmup_requests'
      >>> read_warmup_requests(folder)
      [('serving_default', {'text': array([b'hi'], dtype=object)})]
    """
    if len(requests) > MAX_WARMUP_REQUESTS:
        raise TfhfError(
            f"{len(requests)} warmup requests: TF Serving reads at most {MAX_WARMUP_REQUESTS}"
        )
    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature_name, inputs in requests:
            request = predict_pb2.PredictRequest()
            # No model name or version: TF Serving runs warmup against the version being
            # loaded, and a name here would go stale when the folder is served under another.
            request.model_spec.signature_name = signature_name
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: str | Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The warmup requests of the SavedModel in `version_dir`, in file order.

    A request without a signature name is for `serving_default`, as TF Serving
    reads it. String inputs come back as object arrays of bytes.

    Args:
      version_dir: A SavedModel folder.

    Returns:
      `(signature_name, {input_name: array})` pairs; `[]` when the folder has no
      warmup file.

    Example:
      >>> import tempfile
      >>> read_warmup_requests(tempfile.mkdtemp())
      []
    """
    path = Path(version_dir) / WARMUP_FILE
    if not path.is_file():
        return []
    requests = []
    try:
        records = tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_REQUESTS)  # as TF Serving
        for record in records.as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise TfhfError(f"{path}: a {kind or 'empty'} record; only predict_log is replayed")
            request = log.predict_log.request
            requests.append(
                (
                    request.model_spec.signature_name or "serving_default",
                    {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()},
                )
            )
    except (tf.errors.DataLossError, DecodeError) as e:
        raise TfhfError(f"{path} is not a TFRecord file of PredictionLog protos: {e}") from None
    return requests
