"""Warmup requests: the file TF Serving replays at load, written into every exported version."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the exported graphs use)
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from tfhf.errors import TfhfError
from tfhf.models.loading import load_sequence_classifier
from tfhf.serving.export import export_classifier
from tfhf.serving.lm_export import export_language_model
from tfhf.serving.warmup import WARMUP_FILE, read_warmup_requests, write_warmup_requests
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor

MAX_SEQ_LENGTH = 16


@pytest.fixture(scope="module", params=["classify", "lm"])
def exported(request, tmp_path_factory):
    """(task, version folder) of a fresh tiny export."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "classify":
        folder = request.getfixturevalue("tiny_model_dir")
        model = load_sequence_classifier(folder, ["negative", "positive"])
        preprocessor = BertPreprocessor(
            folder / "vocab.txt", lower_case=True, max_seq_length=MAX_SEQ_LENGTH
        )
        return "classify", export_classifier(model, preprocessor, ["negative", "positive"], root)
    model, tokenizer = request.getfixturevalue("tiny_lm")
    return "lm", export_language_model(model, tokenizer, root)


def _records(version_dir) -> list[prediction_log_pb2.PredictionLog]:
    dataset = tf.data.TFRecordDataset(str(version_dir / WARMUP_FILE))
    return [prediction_log_pb2.PredictionLog.FromString(r) for r in dataset.as_numpy_iterator()]


def _batch(inputs: dict[str, np.ndarray]) -> int:
    # The signatures' batched inputs; the LM's controls are [1] whatever the batch.
    for name in ("text", "prompt", "input_ids"):
        if name in inputs:
            return len(inputs[name])
    raise AssertionError(f"no batched input among {sorted(inputs)}")


def test_export_writes_warmup_requests_that_match_its_signatures(exported):
    _, version_dir = exported
    assert (version_dir / WARMUP_FILE).is_file()
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    signature_defs = saved.meta_graphs[0].signature_def
    records = _records(version_dir)
    assert 2 <= len(records) <= 1000
    for log in records:
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.signature_name in signature_defs
        expected = signature_defs[request.model_spec.signature_name].inputs
        # Every input given, defaults included, each in the dtype the signature declares.
        assert {k: v.dtype for k, v in request.inputs.items()} == {
            k: v.dtype for k, v in expected.items()
        }


def test_warmup_requests_replay_through_the_loaded_savedmodel(exported):
    task, version_dir = exported
    loaded = tf.saved_model.load(str(version_dir))
    requests = read_warmup_requests(version_dir)
    batches = []
    for name, inputs in requests:
        outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
        batch = _batch(inputs)
        assert {k: v.shape[0] for k, v in outputs.items()} == dict.fromkeys(outputs, batch)
        batches.append((name, batch))
    if task == "classify":
        assert batches == [("serving_default", 1), ("serving_default", 4), ("encoded", 4)]
        # The batch reaches the length limit, so the longest shape is warmed too.
        assert requests[2][1]["input_ids"].shape == (4, MAX_SEQ_LENGTH)
    else:
        assert batches == [("serving_default", 1), ("serving_default", 2)]
        assert [r[1]["max_new_tokens"].tolist() for r in requests] == [[4], [4]]
        # One greedy request and one sampled, so both decoding branches are warmed.
        assert sorted(r[1]["temperature"][0] > 0 for r in requests) == [False, True]


def test_warmup_requests_round_trip(tmp_path):
    requests = [
        ("serving_default", {"text": ["a", "héllo wörld"]}),
        (
            "encoded",
            {
                "input_ids": np.array([[2, 8, 3], [2, 3, 0]], np.int32),
                "scale": np.array([0.5], np.float32),
                "count": [4],
            },
        ),
    ]
    path = write_warmup_requests(tmp_path, requests)
    assert path == tmp_path / "assets.extra" / "tf_serving_warmup_requests"
    assert [log.predict_log.request.model_spec.name for log in _records(tmp_path)] == ["", ""]
    (text_name, text), (encoded_name, encoded) = read_warmup_requests(tmp_path)
    assert (text_name, encoded_name) == ("serving_default", "encoded")
    assert text["text"].tolist() == [b"a", "héllo wörld".encode()]
    np.testing.assert_array_equal(encoded["input_ids"], requests[1][1]["input_ids"])
    assert {k: v.dtype for k, v in encoded.items()} == {
        "input_ids": np.int32,
        "scale": np.float32,
        "count": np.int32,  # TensorFlow's default for Python ints, not NumPy's int64
    }
    assert encoded["scale"].tolist() == [0.5] and encoded["count"].tolist() == [4]


def test_reader_without_a_file_finds_nothing_and_refuses_a_broken_one(tmp_path):
    assert read_warmup_requests(tmp_path) == []
    (tmp_path / WARMUP_FILE).parent.mkdir()
    (tmp_path / WARMUP_FILE).write_bytes(b"not a tfrecord file at all")
    with pytest.raises(TfhfError, match="is not a TFRecord file of PredictionLog"):
        read_warmup_requests(tmp_path)


def test_writer_refuses_more_requests_than_tf_serving_reads(tmp_path):
    with pytest.raises(TfhfError, match="at most 1000"):
        write_warmup_requests(tmp_path, [("serving_default", {"text": ["x"]})] * 1001)
    assert not (tmp_path / WARMUP_FILE).exists()
