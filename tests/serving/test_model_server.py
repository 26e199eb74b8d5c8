"""tfhf.serve against tfhf exports, as TF Serving clients see it: REST and gRPC (with TF
Serving's own generated client stubs), bad input, batching, and version switching under
traffic."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import free_ports, run_module
from sleeper_model import export_sleeper
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfhf.models.loading import load_sequence_classifier
from tfhf.serving import model_server as ms
from tfhf.serving.export import export_classifier
from tfhf.serving.model_server import served_model
from tfhf.serving.warmup import read_warmup_requests, write_warmup_requests
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor

LABELS = ["negative", "positive"]
TEXTS = ["the film was great fun !", "a dull , boring plot", "very good acting"]


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    model = load_sequence_classifier(tiny_model_dir, LABELS)
    preprocessor = BertPreprocessor(
        tiny_model_dir / "vocab.txt", lower_case=True, max_seq_length=16
    )
    return model, preprocessor


class Running:
    """A manager with both front ends on free loopback ports; `stop()` shuts all down."""

    def __init__(self, specs, **manager_args):
        self.manager = ms.ModelManager(specs, **manager_args)
        self.manager.start()
        self.rest = ms.rest_server(self.manager, port=0, max_body_bytes=200_000, max_instances=8)
        threading.Thread(target=self.rest.serve_forever, daemon=True).start()
        self.rest_port = self.rest.server_address[1]
        self.grpc, self.grpc_port = ms.grpc_server(self.manager, port=0, max_instances=8)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def http(self, method: str, path: str, body=None, raw: bytes | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=60)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        connection.request(method, path, body=data)
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        return response.status, payload

    def stop(self):
        self.channel.close()
        self.grpc.stop(grace=None)
        self.rest.shutdown()
        self.manager.stop()


@pytest.fixture(scope="module")
def served(classifier, tmp_path_factory):
    model, preprocessor = classifier
    root = tmp_path_factory.mktemp("served") / "classify"
    export_classifier(model, preprocessor, LABELS, root)
    running = Running([ms.ModelSpec("classify", root)], poll_seconds=0)
    yield running, root, model, preprocessor
    running.stop()


def expected_probabilities(model, preprocessor, texts):
    logits = model(preprocessor(tf.constant(texts)), training=False).logits
    return tf.nn.softmax(logits, -1).numpy()


def test_rest_status_and_metadata_look_like_tf_serving(served):
    running, *_ = served
    status, payload = running.http("GET", "/v1/models/classify")
    assert status == 200
    assert payload == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    status, payload = running.http("GET", "/v1/models/classify/versions/1/metadata")
    assert status == 200
    assert payload["model_spec"]["version"] == "1"
    signatures = payload["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "encoded"} <= set(signatures)
    text = signatures["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING"
    assert set(signatures["serving_default"]["outputs"]) == {"label", "label_id", "probabilities"}


def test_rest_predict_rows_and_columns_match_the_model(served):
    running, _, model, preprocessor = served
    want = expected_probabilities(model, preprocessor, TEXTS)
    status, payload = running.http("POST", "/v1/models/classify:predict", {"instances": TEXTS})
    assert status == 200, payload
    rows = payload["predictions"]
    assert [r["label"] for r in rows] == [LABELS[i] for i in want.argmax(-1)]
    np.testing.assert_allclose([r["probabilities"] for r in rows], want, atol=1e-5)

    body = {"signature_name": "serving_default", "inputs": {"text": TEXTS}}
    status, payload = running.http("POST", "/v1/models/classify/versions/1:predict", body)
    assert status == 200, payload
    np.testing.assert_allclose(payload["outputs"]["probabilities"], want, atol=1e-5)
    assert payload["outputs"]["label_id"] == want.argmax(-1).tolist()

    # Row objects naming the input, and base64 strings, are TF Serving's other spellings.
    import base64

    instance = {"text": {"b64": base64.b64encode(TEXTS[0].encode()).decode()}}
    status, payload = running.http("POST", "/v1/models/classify:predict", {"instances": [instance]})
    assert status == 200, payload
    np.testing.assert_allclose(payload["predictions"][0]["probabilities"], want[0], atol=1e-5)


@pytest.mark.parametrize(
    "method, path, body, status, message",
    [
        ("POST", "/v1/models/classify:predict", b"{not json", 400, "malformed JSON"),
        ("POST", "/v1/models/nope:predict", {"instances": ["a"]}, 404, "Latest(nope)"),
        (
            "POST",
            "/v1/models/classify/versions/7:predict",
            {"instances": ["a"]},
            404,
            "Specific(classify, 7)",
        ),
        ("GET", "/v1/models/classify/versions/x", None, 400, "not an integer"),
        (
            "POST",
            "/v1/models/classify:predict",
            {"signature_name": "nope", "instances": ["a"]},
            400,
            "nope",
        ),
        ("POST", "/v1/models/classify:predict", {"instances": [1, 2]}, 400, "must be string"),
        ("POST", "/v1/models/classify:predict", {"instances": [["a", "b"]]}, 400, "rank 1"),
        (
            "POST",
            "/v1/models/classify:predict",
            {"instances": [{"txt": "a"}]},
            400,
            "'txt' is not in",
        ),
        ("POST", "/v1/models/classify:predict", {"instances": ["a"] * 9}, 400, "limit of 8"),
        (
            "POST",
            "/v1/models/classify:predict",
            {"instances": ["a"], "inputs": ["a"]},
            400,
            "exactly one",
        ),
        ("POST", "/v1/models/classify:predict", {"instances": []}, 400, "non-empty"),
        ("POST", "/v1/models/classify:predict", {"inputs": {"text": [["a"], "b"]}}, 400, "ragged"),
        (
            "POST",
            "/v1/models/classify:predict",
            {"instances": ["x" * 300_000]},
            413,
            "exceeds the limit",
        ),
        ("POST", "/v1/models/classify:classify", {"examples": []}, 400, "not supported"),
    ],
)
def test_bad_rest_requests_get_a_clear_4xx_and_the_server_keeps_answering(
    served, method, path, body, status, message
):
    running, *_ = served
    raw = body if isinstance(body, bytes) else None
    got, payload = running.http(method, path, None if raw else body, raw=raw)
    assert got == status
    assert set(payload) == {"error"} and message in payload["error"]
    ok, _ = running.http("POST", "/v1/models/classify:predict", {"instances": TEXTS[:1]})
    assert ok == 200


def test_tf_serving_grpc_client_code_works_unchanged(served):
    running, _, model, preprocessor = served
    # What a TF Serving user writes, word for word.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classify"
    request.model_spec.signature_name = "serving_default"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
    response = stub.Predict(request, 30.0)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    np.testing.assert_allclose(
        probabilities, expected_probabilities(model, preprocessor, TEXTS), atol=1e-5
    )
    assert response.model_spec.version.value == 1
    assert [v.decode() for v in tf.make_ndarray(response.outputs["label"])] == [
        LABELS[i] for i in probabilities.argmax(-1)
    ]

    metadata = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "classify"}, metadata_field=["signature_def"]
        )
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert "serving_default" in signatures.signature_def

    status = model_service_pb2_grpc.ModelServiceStub(running.channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "classify"})
    )
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]

    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, 30.0)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = "classify"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto([[1.0]]))
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, 30.0)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be string" in e.value.details()


def test_concurrent_single_text_requests_run_as_batches(classifier, tmp_path):
    model, preprocessor = classifier
    export_classifier(model, preprocessor, LABELS, tmp_path / "m")
    manager = ms.ModelManager(
        [ms.ModelSpec("m", tmp_path / "m")],
        poll_seconds=0,
        batching={"max_batch_size": 8, "timeout": 0.2},
    )
    manager.start()
    servable = manager.model("m").servable(None)
    calls = []
    function = servable._functions["serving_default"]

    def counting(**inputs):
        calls.append(int(inputs["text"].shape[0]))
        return function(**inputs)

    servable._functions["serving_default"] = counting
    texts = [f"{w} film" for w in ("good", "bad", "dull", "fun", "great", "awful", "poor", "a")]
    results = [None] * len(texts)

    def ask(i):
        results[i] = servable.predict("serving_default", {"text": np.array([texts[i]], object)})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    manager.stop()
    assert sum(calls) == len(texts) and len(calls) < len(texts)  # fewer, larger runs
    want = expected_probabilities(model, preprocessor, texts)
    got = np.concatenate([r["probabilities"] for r in results])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_new_versions_switch_in_under_traffic_and_a_broken_one_is_skipped(classifier, tmp_path):
    model, preprocessor = classifier
    root = tmp_path / "classify"
    export_classifier(model, preprocessor, LABELS, root)
    running = Running([ms.ModelSpec("classify", root)], poll_seconds=0.2)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
    failures, versions, stop = [], set(), threading.Event()

    def traffic():
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "classify"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(TEXTS))
        while not stop.is_set():
            try:
                versions.add(stub.Predict(request, 30.0).model_spec.version.value)
                status, _ = running.http(
                    "POST", "/v1/models/classify:predict", {"instances": TEXTS}
                )
                if status != 200:
                    failures.append(status)
            except grpc.RpcError as e:
                failures.append(e.code())

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    try:
        for w in workers:
            w.start()
        time.sleep(0.5)
        export_classifier(model, preprocessor, LABELS, root)  # version 2 appears
        deadline = time.monotonic() + 60
        while 2 not in versions and time.monotonic() < deadline:
            time.sleep(0.1)
        broken = root / "3"
        shutil.copytree(root / "2", broken)
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        deadline = time.monotonic() + 30
        while 3 not in running.manager.model("classify").status and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for w in workers:
            w.join()
    status, payload = running.http("GET", "/v1/models/classify")
    running.stop()
    assert failures == []
    assert versions == {1, 2}
    states = {
        s["version"]: (s["state"], s["status"]["error_message"])
        for s in payload["model_version_status"]
    }
    assert states["2"] == ("AVAILABLE", "")
    assert states["1"][0] == "END"
    assert states["3"][0] == "END" and states["3"][1]  # failed, with the reason


def test_loading_a_version_replays_its_warmup_records_before_serving_it(
    served, tmp_path, monkeypatch
):
    _, root, *_ = served
    shutil.copytree(root / "1", tmp_path / "m" / "1")
    manager = ms.ModelManager([ms.ModelSpec("m", tmp_path / "m")], poll_seconds=0)
    model = manager.model("m")
    runs, call = [], ms.Servable._call

    def recording(servable, signature, inputs, cancelled=None):
        inputs_as_lists = {k: v.tolist() for k, v in inputs.items()}
        runs.append((signature, inputs_as_lists, model.current, model.status))
        return call(servable, signature, inputs, cancelled)

    monkeypatch.setattr(ms.Servable, "_call", recording)
    manager.start()
    records = read_warmup_requests(tmp_path / "m" / "1")
    assert records and [(s, i) for s, i, *_ in runs] == [
        (s, {k: v.tolist() for k, v in i.items()}) for s, i in records
    ]
    # Each ran while the version was loading, before any request could reach it.
    assert all(current is None for *_, current, _ in runs)
    assert all(status == {1: ("LOADING", "")} for *_, status in runs)
    assert model.current.version == 1 and model.status == {1: ("AVAILABLE", "")}


def test_a_version_whose_warmup_fails_is_not_served(served, tmp_path):
    _, root, *_ = served
    shutil.copytree(root / "1", tmp_path / "m" / "1")
    write_warmup_requests(tmp_path / "m" / "1", [("serving_default", {"txt": ["a"]})])
    manager = ms.ModelManager([ms.ModelSpec("m", tmp_path / "m")], poll_seconds=0)
    manager.start()
    [status] = manager.status("m")
    assert status["state"] == "END"
    assert "input 'txt' is not in signature" in status["status"]["error_message"]
    with pytest.raises(ms.NotFound):
        manager.model("m").servable(None)


def test_status_requests_never_see_a_version_switch_half_done(tmp_path, monkeypatch):
    class Instant:
        """Loads in no time, so versions switch as fast as `poll` runs."""

        def __init__(self, name, version, path, **_):
            self.version = version

        def warm_up(self):
            return 0

        def close(self):
            pass

    class SlowWrites(dict):
        """A status map whose every write lets other threads run, so that a reader not
        kept out by the lock lands between a switch's writes every time, not by chance."""

        def __setitem__(self, key, value):
            super().__setitem__(key, value)
            time.sleep(0.001)

    monkeypatch.setattr(served_model, "Servable", Instant)
    manager = ms.ModelManager([ms.ModelSpec("m", tmp_path)], poll_seconds=0)
    model = manager.model("m")
    model._status = SlowWrites()
    (tmp_path / "1").mkdir()
    model.poll()
    torn, errors, stop = [], [], threading.Event()

    def ask():
        while not stop.is_set():
            try:
                states = [s["state"] for s in manager.status("m")]
            except Exception as e:  # noqa: BLE001  (reported below)
                errors.append(e)
                return
            if states.count("AVAILABLE") != 1:
                torn.append(states)

    readers = [threading.Thread(target=ask) for _ in range(2)]
    try:
        for r in readers:
            r.start()
        for version in range(2, 21):
            (tmp_path / str(version)).mkdir()
            model.poll()
    finally:
        stop.set()
        for r in readers:
            r.join()
    assert errors == [] and torn == []
    assert model.current.version == 20
    assert [s["state"] for s in manager.status("m")] == ["AVAILABLE"] + ["END"] * 19


def test_model_config_file_is_tf_servings_text_format(tmp_path):
    text = """
    model_config_list {
      config { name: "a" base_path: "/models/a" model_platform: "tensorflow" }
      config { name: "b" base_path: "/models/b" }
    }
    """
    assert ms.parse_model_config(text) == [
        ms.ModelSpec("a", Path("/models/a")),
        ms.ModelSpec("b", Path("/models/b")),
    ]
    with pytest.raises(ValueError, match="model config"):
        ms.parse_model_config("model_config_list { config { name: 3 } ")
    with pytest.raises(ValueError, match="unique"):
        ms.parse_model_config(text.replace('"b"', '"a"'))


def test_cli_serves_a_model_config_and_stops_on_sigterm(classifier, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    model, preprocessor = classifier
    export_classifier(model, preprocessor, LABELS, tmp_path / "c")
    export_sleeper(tmp_path / "s")
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "c" base_path: "{tmp_path / "c"}" }} '
        f'config {{ name: "s" base_path: "{tmp_path / "s"}" }} }}'
    )
    rest_port, grpc_port = free_ports(2)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfhf.serve",
            f"--model_config_file={config}",
            f"--rest_api_port={rest_port}",
            f"--port={grpc_port}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "REST on" in line or not line:
                break
        assert f"REST on http://127.0.0.1:{rest_port}" in "".join(lines), "".join(lines)
        connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
        connection.request("POST", "/v1/models/c:predict", json.dumps({"instances": TEXTS}))
        response = connection.getresponse()
        assert response.status == 200
        assert len(json.loads(response.read())["predictions"]) == len(TEXTS)

        # SIGTERM with 8 requests in flight: each still gets its answer, then exit 0.
        answers = []

        def slow_request():
            client = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
            client.request("POST", "/v1/models/s:predict", json.dumps({"instances": [1.5]}))
            reply = client.getresponse()
            answers.append((reply.status, json.loads(reply.read())))

        in_flight = [threading.Thread(target=slow_request) for _ in range(8)]
        for thread in in_flight:
            thread.start()
        time.sleep(0.7)
        proc.terminate()
        for thread in in_flight:
            thread.join()
        assert answers == [(200, {"predictions": [3.0]})] * 8
        assert proc.wait(timeout=30) == 0
        assert "tfhf.serve: stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    bad = run_module("tfhf.serve", f"--model_base_path={tmp_path / 'missing'}", "--model_name=x")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: --model_base_path {tmp_path / 'missing'}: no such folder"
    )


@pytest.fixture(scope="module")
def lm_root(tiny_lm, tmp_path_factory) -> Path:
    from tfhf.serving.lm_export import export_language_model

    model, tokenizer = tiny_lm
    root = tmp_path_factory.mktemp("served_lm") / "lm"
    export_language_model(model, tokenizer, root)
    return root


def test_lm_export_answers_prompts_with_the_signature_defaults_filled_in(tiny_lm, lm_root):
    model, tokenizer = tiny_lm
    version = lm_root / "1"
    running = Running([ms.ModelSpec("lm", lm_root)], poll_seconds=0)
    try:
        prompts = ["To be", "Whether"]
        status, payload = running.http("POST", "/v1/models/lm:predict", {"instances": prompts})
        assert status == 200, payload
        # The export's own defaults, as its `generate` function applies them.
        loaded = tf.saved_model.load(str(version))
        own = loaded.generate(tf.constant(prompts))
        assert payload["predictions"] == [t.decode() for t in own["text"].numpy()]
        body = {"inputs": {"prompt": prompts[:1], "max_new_tokens": [3], "temperature": [0.0]}}
        status, payload = running.http("POST", "/v1/models/lm:predict", body)
        assert status == 200, payload
        assert len(tokenizer.encode(payload["outputs"][0])) <= 3
        for controls, message in (
            ({"top_p": [2.0]}, "top_p must be in (0, 1]"),
            ({"temperature": [float("inf")]}, "finite positive number"),
            # 2**31 - 1 plus the prompt's length wraps around in int32 arithmetic.
            ({"max_new_tokens": [2**31 - 1]}, f"context of {model.config.n_positions}"),
        ):
            body = {"inputs": {"prompt": ["To be"], **controls}}
            status, payload = running.http("POST", "/v1/models/lm:predict", body)
            assert status == 400 and payload["error"].endswith(message), payload
        # Refused on its byte count, before the tokenizer reads 100 KB.
        start = time.monotonic()
        body = {"instances": ["To be or not " * 8000]}
        status, payload = running.http("POST", "/v1/models/lm:predict", body)
        assert status == 400 and "cannot fit the model context" in payload["error"]
        assert time.monotonic() - start < 5
    finally:
        running.stop()


@pytest.mark.parametrize("twins, expected", [(True, [20.0]), (False, [10.0])])
def test_a_signature_is_answered_by_its_xla_twin_unless_told_not_to(tmp_path, twins, expected):
    # A twin that answers differently, so that which one ran shows in the output.
    class Twins(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def plain(self, x):
            return {"y": x * 10.0}

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.float32, name="x")], jit_compile=True
        )
        def compiled(self, x):
            return {"y": x * 20.0}

    module = Twins()
    signatures = {"serving_default": module.plain, "serving_default_xla": module.compiled}
    tf.saved_model.save(module, str(tmp_path / "twins" / "1"), signatures=signatures)
    servable = ms.Servable("twins", 1, tmp_path / "twins" / "1", xla_twins=twins)
    assert (
        servable.predict("serving_default", {"x": np.array([1.0], np.float32)})["y"].tolist()
        == expected
    )
    # The twin itself stays callable by its own name.
    assert servable.predict("serving_default_xla", {"x": np.array([1.0], np.float32)})[
        "y"
    ].tolist() == [20.0]


def test_a_short_context_lm_export_still_loads_with_its_warmup(tiny_lm, tmp_path):
    from transformers import GPT2Config, TFGPT2LMHeadModel

    from tfhf.serving.lm_export import export_language_model

    _, tokenizer = tiny_lm
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=8,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)
    version = export_language_model(model, tokenizer, tmp_path / "lm")
    manager = ms.ModelManager([ms.ModelSpec("lm", tmp_path / "lm")], poll_seconds=0)
    manager.start()
    assert len(read_warmup_requests(version)) == 2
    assert manager.status("lm") == [
        {
            "version": version.name,
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]


def test_multi_input_rows_and_number_checks_on_the_encoded_signature(served):
    running, _, model, _ = served
    ids = [2, 8, 9, 3]
    instance = {"input_ids": ids, "attention_mask": [1] * 4, "token_type_ids": [0] * 4}
    body = {"signature_name": "encoded", "instances": [instance, instance]}
    status, payload = running.http("POST", "/v1/models/classify:predict", body)
    assert status == 200, payload
    features = {
        "input_ids": tf.constant([ids] * 2),
        "attention_mask": tf.ones([2, 4], tf.int32),
        "token_type_ids": tf.zeros([2, 4], tf.int32),
    }
    want = model(features, training=False).logits.numpy()
    np.testing.assert_allclose(payload["predictions"], want, atol=1e-5)
    for bad, message in (
        (2**31, "outside the range of int32"),
        (True, "mixes booleans and numbers"),
    ):
        wrong = {**instance, "input_ids": [bad, 8, 9, 3]}
        body = {"signature_name": "encoded", "instances": [wrong]}
        status, payload = running.http("POST", "/v1/models/classify:predict", body)
        assert status == 400 and message in payload["error"]


def test_grpc_refuses_a_tensor_that_declares_a_huge_shape(served):
    running, *_ = served
    stub = prediction_service_pb2_grpc.PredictionServiceStub(running.channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classify"
    proto = tf.make_tensor_proto(["a"])
    proto.tensor_shape.dim[0].size = 10**12  # a few bytes on the wire, a terabyte decoded
    request.inputs["text"].CopyFrom(proto)
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, 30.0)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid shape" in e.value.details()


def test_batches_never_exceed_max_batch_size():
    seen = []

    def run(inputs):
        seen.append(len(inputs["x"]))
        time.sleep(0.05)
        return {"y": inputs["x"] * 2}

    batcher = ms.Batcher(run, max_batch_size=8, timeout=0.2)
    results = {}

    def ask(i):
        results[i] = batcher({"x": np.full([5], i)})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen and max(seen) <= 8 and sum(seen) == 15
    for i in range(3):
        np.testing.assert_array_equal(results[i]["y"], np.full([5], 2 * i))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmRSS")
def test_released_memory_goes_back_to_the_system():
    import ctypes
    import ctypes.util

    from tfhf.serving.model_server.memory import _malloc_trim, release_memory

    if _malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim")

    def rss_mb() -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if "VmRSS" in x)
        return int(line.split()[1]) / 1024

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 << 10) for _ in range(2000)]  # 125 MiB in heap-sized pieces
    for block in blocks:
        ctypes.memset(block, 1, 64 << 10)
    pin = libc.malloc(64 << 10)  # above them: free() alone cannot shrink the heap
    for block in blocks:
        libc.free(block)
    freed = rss_mb()
    release_memory()
    assert rss_mb() < freed - 100
    libc.free(pin)


def _batcher_threads() -> int:
    return sum(t.name.startswith("tfhf-batch") for t in threading.enumerate())


def test_a_closed_batcher_runs_what_waits_ends_its_threads_and_then_runs_requests_alone():
    seen = []

    def run(inputs):
        seen.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    before = _batcher_threads()
    batcher = ms.Batcher(run, max_batch_size=8, timeout=30.0, threads=2)
    waiting = {}
    asker = threading.Thread(target=lambda: waiting.update(batcher({"x": np.arange(3)})))
    asker.start()
    deadline = time.monotonic() + 10
    while not batcher._pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._pending  # held for 30 s unless closing runs it
    batcher.close()
    asker.join(10)
    np.testing.assert_array_equal(waiting["y"], np.arange(3) + 1)
    deadline = time.monotonic() + 10
    while _batcher_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _batcher_threads() == before
    np.testing.assert_array_equal(batcher({"x": np.arange(2)})["y"], [1, 2])
    assert seen == [3, 2]


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """(event kind, JSON payload) per Server-Sent Event."""
    events = []
    for block in raw.decode().strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


def test_streamed_text_over_rest_and_grpc_joins_into_the_predict_text(lm_root, served):
    running = Running([ms.ModelSpec("lm", lm_root)], poll_seconds=0)
    prompts = ["To be", "Whether 'tis"]
    try:
        for controls in ({}, {"temperature": [0.9], "top_k": [20], "seed": [5]}):
            inputs = {"prompt": prompts, "max_new_tokens": [10], **controls}
            _, whole = running.http("POST", "/v1/models/lm:predict", {"inputs": inputs})
            connection = http.client.HTTPConnection("127.0.0.1", running.rest_port, timeout=60)
            body = {"inputs": {**inputs, "chunk_tokens": [2]}}
            connection.request("POST", "/v1/models/lm/versions/1:predict_stream", json.dumps(body))
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Content-Type") == "text/event-stream"
            events = sse_events(response.read())
            connection.close()
            assert events[-1] == ("end", {})
            pieces = [payload["text"] for kind, payload in events[:-1]]
            assert len(pieces) > 2  # 10 tokens in chunks of 2
            joined = ["".join(row) for row in zip(*pieces, strict=True)]
            assert joined == whole["outputs"]

            request = predict_pb2.PredictRequest()
            request.model_spec.name = "lm"
            for name, values in body["inputs"].items():
                request.inputs[name].CopyFrom(
                    tf.make_tensor_proto(
                        values, dtype=tf.float32 if name in ("temperature",) else None
                    )
                )
            stream = running.channel.unary_stream(
                "/tfhf.serving.PredictionStreamService/PredictStream",
                request_serializer=predict_pb2.PredictRequest.SerializeToString,
                response_deserializer=predict_pb2.PredictResponse.FromString,
            )
            chunks = [
                [t.decode() for t in tf.make_ndarray(r.outputs["text"])]
                for r in stream(request, timeout=60)
            ]
            assert ["".join(row) for row in zip(*chunks, strict=True)] == whole["outputs"]
    finally:
        running.stop()
    # An export without the stream signatures says so, before any event.
    classify, *_ = served
    status, payload = classify.http(
        "POST", "/v1/models/classify:predict_stream", {"instances": ["a"]}
    )
    assert status == 400 and "cannot stream" in payload["error"]
