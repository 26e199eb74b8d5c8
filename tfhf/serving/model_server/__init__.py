"""A local server that behaves like TensorFlow Serving for tfhf exports: version folders
watched and switched without dropping requests, TF Serving's REST and gRPC APIs, version
policies and labels, config reloads, Prometheus metrics, optional server-side batching,
and (beyond TF Serving) streamed generation.

The servable side (`ModelManager`, `ServedModel`, `Servable`, `Batcher`) knows nothing of
HTTP or gRPC; the two front ends (`rest_server`, `grpc_server`) translate requests into
`predict` calls and share the checks in `tensors`.

Example:
  >>> import http.client, json, threading
  >>> from pathlib import Path
  >>> import tensorflow as tf
  >>> class Double(tf.Module):
  ...     @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  ...     def double(self, x):
  ...         return {"y": 2 * x}
  >>> module = Double()
  >>> tf.saved_model.save(module, "models/double/1", signatures=module.double)
  >>> manager = ModelManager([ModelSpec("double", Path("models/double"))], poll_seconds=0)
  >>> manager.start()
  >>> server = rest_server(manager, port=0)
  >>> threading.Thread(target=server.serve_forever, daemon=True).start()
  >>> client = http.client.HTTPConnection("127.0.0.1", server.server_address[1])
  >>> client.request("POST", "/v1/models/double:predict", json.dumps({"instances": [1, 2.5]}))
  >>> json.load(client.getresponse())
  {'predictions': [2.0, 5.0]}
  >>> client.close()
  >>> server.shutdown()
"""

from tfhf.serving.model_server.batching import Batcher
from tfhf.serving.model_server.config import ModelSpec, parse_model_config
from tfhf.serving.model_server.errors import NotFound, Overloaded, RequestError
from tfhf.serving.model_server.grpc_api import grpc_server
from tfhf.serving.model_server.manager import ModelManager, default_max_model_calls
from tfhf.serving.model_server.metrics import Metrics, MonitoringConfig, parse_monitoring_config
from tfhf.serving.model_server.rest import rest_server
from tfhf.serving.model_server.servable import Servable
from tfhf.serving.model_server.served_model import ServedModel
from tfhf.serving.model_server.streams import StreamLimits
from tfhf.serving.model_server.tensors import parse_predict_body, predict_response

__all__ = [
    "Batcher",
    "Metrics",
    "ModelManager",
    "ModelSpec",
    "MonitoringConfig",
    "NotFound",
    "Overloaded",
    "RequestError",
    "Servable",
    "ServedModel",
    "StreamLimits",
    "default_max_model_calls",
    "grpc_server",
    "parse_model_config",
    "parse_monitoring_config",
    "parse_predict_body",
    "predict_response",
    "rest_server",
]
