"""TF Serving's version policies and labels, and config reloads without a restart (gRPC
`HandleReloadConfigRequest` and a polled config file), on tiny `Sleeper` exports."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from google.protobuf import text_format
from sleeper_model import export_sleeper
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfhf.serving import model_server as ms


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """A base path holding versions 1, 2 and 3, copied per test from one export."""
    root = tmp_path_factory.mktemp("versions")
    export_sleeper(root / "m", 1)
    for v in (2, 3):
        shutil.copytree(root / "m" / "1", root / "m" / str(v))
    return root / "m"


def config_text(*models: tuple[str, object, str]) -> str:
    entries = "".join(
        f'config {{ name: "{name}" base_path: "{path}" {extra} }} ' for name, path, extra in models
    )
    return f"model_config_list {{ {entries}}}"


class Front:
    """REST and gRPC over a started manager."""

    def __init__(self, manager, *, allow_reload_config=True):
        self.manager = manager
        self.rest = ms.rest_server(manager, port=0)
        threading.Thread(target=self.rest.serve_forever, daemon=True).start()
        self.grpc, port = ms.grpc_server(manager, port=0, allow_reload_config=allow_reload_config)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def http(self, method: str, path: str, body=None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.rest.server_address[1])
        connection.request(method, path, None if body is None else json.dumps(body))
        response = connection.getresponse()
        status, payload = response.status, json.loads(response.read())
        connection.close()
        return status, payload

    def stop(self):
        self.channel.close()
        self.grpc.stop(grace=None)
        self.rest.shutdown()
        self.manager.stop()


def started(text: str) -> ms.ModelManager:
    manager = ms.ModelManager(ms.parse_model_config(text), poll_seconds=0)
    manager.start()
    return manager


@pytest.mark.parametrize(
    "policy, served",
    [
        ("", [3]),
        ("model_version_policy { latest { num_versions: 2 } }", [2, 3]),
        ("model_version_policy { all {} }", [1, 2, 3]),
        ("model_version_policy { specific { versions: 1 versions: 3 } }", [1, 3]),
    ],
)
def test_version_policies_serve_the_versions_tf_serving_would(versions, policy, served):
    manager = started(config_text(("m", versions, policy)))
    model = manager.model("m")
    assert model.versions == served
    assert [int(s["version"]) for s in manager.status("m")] == served[::-1]
    assert all(s["state"] == "AVAILABLE" for s in manager.status("m"))
    assert model.servable().version == served[-1]
    for v in (1, 2, 3):
        if v in served:
            assert model.servable(v).version == v
        else:
            with pytest.raises(ms.NotFound, match=rf"Specific\(m, {v}\)"):
                model.servable(v)


def test_a_version_removed_from_disk_is_unloaded(versions, tmp_path):
    shutil.copytree(versions, tmp_path / "m")
    manager = started(config_text(("m", tmp_path / "m", "model_version_policy { all {} }")))
    shutil.rmtree(tmp_path / "m" / "3")
    manager.model("m").poll()
    assert manager.model("m").versions == [1, 2]
    assert [s["state"] for s in manager.status("m")] == ["END", "AVAILABLE", "AVAILABLE"]
    with pytest.raises(ms.NotFound):
        manager.servable("m", 3)
    # The last ones too: nothing is served rather than a folder that is gone.
    for v in (1, 2):
        shutil.rmtree(tmp_path / "m" / str(v))
    manager.model("m").poll()
    assert manager.model("m").versions == []


def test_a_base_path_gone_for_a_while_keeps_its_versions_and_says_so_once(
    versions, tmp_path, caplog
):
    shutil.copytree(versions, tmp_path / "m")
    front = Front(started(config_text(("m", tmp_path / "m", ""))))
    try:
        caplog.clear()
        (tmp_path / "m").rename(tmp_path / "m.away")  # `mv m m.away`, as a deploy script might
        with caplog.at_level("WARNING", logger="tfhf.serve"):
            for _ in range(3):
                front.manager.model("m").poll()
            status, _ = front.http("POST", "/v1/models/m:predict", {"instances": [1.0]})
            assert status == 200  # version 3 still answers
            assert front.manager.model("m").versions == [3]
            (tmp_path / "m.away").rename(tmp_path / "m")
            front.manager.model("m").poll()
        said = [r.getMessage() for r in caplog.records if r.name == "tfhf.serve"]
        assert said == [
            f"model m: base path {tmp_path / 'm'} is missing; still serving version 3 until "
            "it returns",
            f"model m: base path {tmp_path / 'm'} is back",
        ]
        assert front.manager.model("m").versions == [3]
    finally:
        front.stop()


def test_a_version_folder_beyond_int64_is_ignored_with_one_warning(versions, tmp_path, caplog):
    shutil.copytree(versions, tmp_path / "m")
    shutil.copytree(versions / "1", tmp_path / "m" / "99999999999999999999")
    with caplog.at_level("WARNING", logger="tfhf.serve"):
        front = Front(started(config_text(("m", tmp_path / "m", ""))))
        front.manager.model("m").poll()
    try:
        assert front.manager.model("m").versions == [3]
        ignored = [r.getMessage() for r in caplog.records if "int64" in r.getMessage()]
        assert ignored == [
            "model m: version folder 99999999999999999999 ignored: versions must fit in int64"
        ]
        status = model_service_pb2_grpc.ModelServiceStub(front.channel).GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "m"}), 30.0
        )
        assert [v.version for v in status.model_version_status] == [3]
    finally:
        front.stop()


def _batcher_threads() -> int:
    return sum(t.name.startswith("tfhf-batch") for t in threading.enumerate())


def test_unloaded_versions_and_dropped_models_leave_no_batcher_threads(versions, tmp_path):
    shutil.copytree(versions, tmp_path / "m")
    before = _batcher_threads()
    text = config_text(("m", tmp_path / "m", "model_version_policy { all {} }"))
    manager = ms.ModelManager(
        ms.parse_model_config(text),
        poll_seconds=0,
        batching={"max_batch_size": 4, "timeout": 0.01, "threads": 2},
    )
    manager.start()
    per_version = (_batcher_threads() - before) // 3
    assert per_version > 0
    shutil.rmtree(tmp_path / "m" / "3")
    manager.model("m").poll()

    def settled(count: int) -> bool:
        deadline = time.monotonic() + 10
        while _batcher_threads() != count and time.monotonic() < deadline:
            time.sleep(0.01)
        return _batcher_threads() == count

    assert settled(before + 2 * per_version)
    manager.reload(ms.parse_model_config(config_text(("k", versions, ""))))
    assert settled(before + per_version)  # only k's one version is left
    manager.stop()


def test_labels_name_versions_over_rest_and_grpc(versions):
    labels = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 3 }'
    text = config_text(("m", versions, "model_version_policy { all {} } " + labels))
    front = Front(started(text))
    try:
        status, payload = front.http("GET", "/v1/models/m/labels/stable/metadata")
        assert status == 200 and payload["model_spec"]["version"] == "1"
        status, payload = front.http(
            "POST", "/v1/models/m/labels/canary:predict", {"instances": [0.5]}
        )
        assert status == 200 and payload == {"predictions": [1.0]}
        status, payload = front.http("GET", "/v1/models/m/labels/stable")
        assert [s["version"] for s in payload["model_version_status"]] == ["1"]
        status, payload = front.http("POST", "/v1/models/m/labels/beta:predict", {"instances": [0]})
        assert status == 404 and "Unrecognized servable version label: beta" in payload["error"]

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "m"
        request.model_spec.version_label = "canary"
        request.inputs["seconds"].CopyFrom(tf.make_tensor_proto([0.25]))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(front.channel)
        assert stub.Predict(request, 30.0).model_spec.version.value == 3
        request.model_spec.version_label = "beta"
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, 30.0)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        front.stop()


def test_reload_adds_drops_and_repoints_models_while_the_others_keep_answering(versions, tmp_path):
    other = tmp_path / "other"
    export_sleeper(other, 7)
    front = Front(started(config_text(("a", versions, ""), ("b", versions, ""))))
    failures, answered, stop = [], [], threading.Event()

    def traffic():
        while not stop.is_set():
            status, payload = front.http("POST", "/v1/models/a:predict", {"instances": [0.0]})
            (answered if status == 200 else failures).append(payload)

    def answers(at_least: int) -> None:
        """Waits until the client has been answered `at_least` times (or one failed)."""
        deadline = time.monotonic() + 30
        while len(answered) < at_least and not failures and time.monotonic() < deadline:
            time.sleep(0.01)

    client = threading.Thread(target=traffic)
    client.start()
    stub = model_service_pb2_grpc.ModelServiceStub(front.channel)
    answers(1)  # the traffic runs before, between and after the reloads

    def reload(text: str) -> model_management_pb2.ReloadConfigResponse:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(text, request.config)
        return stub.HandleReloadConfigRequest(request, 60.0)

    try:
        # b dropped, c added.
        assert reload(config_text(("a", versions, ""), ("c", versions, ""))).status.error_code == 0
        assert sorted(front.manager.models) == ["a", "c"]
        assert front.http("GET", "/v1/models/b")[0] == 404
        assert front.http("POST", "/v1/models/c:predict", {"instances": [0.0]})[0] == 200
        # a re-pointed to another base path: served from there once loaded.
        assert reload(config_text(("a", other, ""), ("c", versions, ""))).status.error_code == 0
        assert front.manager.servable("a").version == 7
        # A config that does not hold is refused, and the running one kept.
        response = reload(config_text(("a", versions, ""), ("a", other, "")))
        assert response.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "unique" in response.status.error_message
        assert sorted(front.manager.models) == ["a", "c"]
        answers(len(answered) + 3)
    finally:
        stop.set()
        client.join()
        front.stop()
    assert not failures and len(answered) > 3


def test_a_polled_config_file_is_applied_when_it_changes(versions, tmp_path):
    path = tmp_path / "models.config"
    path.write_text(config_text(("a", versions, "")))
    manager = started(path.read_text())
    manager.watch_config(path, 0.1)
    try:
        path.write_text("not a config")  # logged; the running config stays
        time.sleep(0.5)
        assert sorted(manager.models) == ["a"]
        path.write_text(config_text(("a", versions, ""), ("z", versions, "")))
        deadline = time.monotonic() + 30
        while "z" not in manager.models and time.monotonic() < deadline:
            time.sleep(0.1)
        assert manager.servable("z").version == 3
    finally:
        manager.stop()


def test_the_reload_config_rpc_is_refused_unless_turned_on(versions):
    front = Front(started(config_text(("m", versions, ""))), allow_reload_config=False)
    try:
        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(config_text(("k", versions, "")), request.config)
        stub = model_service_pb2_grpc.ModelServiceStub(front.channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.HandleReloadConfigRequest(request, 30.0)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "--allow_reload_config_rpc" in refused.value.details()
        assert list(front.manager.models) == ["m"]  # nothing unloaded
        assert front.http("POST", "/v1/models/m:predict", {"instances": [1.0]})[0] == 200
    finally:
        front.stop()
