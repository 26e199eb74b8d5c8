"""Request and response tensors: the row limit both front ends apply, and TF Serving's
JSON form of a Predict request and response, which the REST API speaks."""

from __future__ import annotations

import base64

import numpy as np

from tfhf.serving.model_server.errors import RequestError
from tfhf.serving.model_server.servable import Servable

# Deeper JSON is no tensor a model takes, and recursing into it would overflow the stack.
MAX_JSON_DEPTH = 32


def check_rows(inputs: dict[str, np.ndarray], *, max_instances: int) -> None:
    """Refuses a request whose batched inputs hold more than `max_instances` rows, or an
    input with no values at all (no export has anything to say about nothing).

    Raises:
      RequestError: The longest first dimension exceeds the limit, or an input is empty.
    """
    for name, array in inputs.items():
        if array.size == 0:
            raise RequestError(f"input '{name}' is empty: give at least one value")
    rows = max((a.shape[0] for a in inputs.values() if a.ndim), default=1)
    if rows > max_instances:
        raise RequestError(f"{rows} rows exceed this server's limit of {max_instances}")


def parse_predict_body(
    body: dict, servable: Servable, *, max_instances: int
) -> tuple[str, dict[str, np.ndarray], bool]:
    """(signature name, inputs, row format?) from a REST predict request body.

    Raises:
      RequestError: The body is not a predict request `servable` can run, or holds more
        than `max_instances` rows.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    signature = body.get("signature_name", "serving_default")
    if not isinstance(signature, str):
        raise RequestError("'signature_name' must be a string")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("the request must have exactly one of 'instances' or 'inputs'")
    definition = servable.signature_defs.get(signature)
    if definition is None:
        servable.predict(signature, {})  # refuses it, naming the signatures there are
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
    check_rows(arrays, max_instances=max_instances)
    return signature, arrays, False


def check_depth(body) -> None:
    """Refuses JSON nested deeper than `MAX_JSON_DEPTH`, without recursing.

    Raises:
      RequestError: The body nests lists or objects too deeply.

    Example:
      >>> check_depth({"instances": [[1, 2], [3, 4]]})
    """
    level = [body]
    for _ in range(MAX_JSON_DEPTH + 1):
        level = [
            child
            for value in level
            if isinstance(value, (list, dict))
            for child in (value.values() if isinstance(value, dict) else value)
        ]
        if not level:
            return
    raise RequestError(f"the request nests lists or objects deeper than {MAX_JSON_DEPTH} levels")


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """TF Serving's REST response: `predictions` (rows) or `outputs` (columns).

    Example:
      >>> predict_response({"label": np.array([b"positive"], object)}, True)
      {'predictions': ['positive']}
    """
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
