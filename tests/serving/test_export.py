"""The SavedModel as TF Serving sees it: layout, signatures, Python-free loading, parity."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_bare_python

from tfhf.models.loading import load_sequence_classifier
from tfhf.serving.export import export_classifier, next_version
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor

TEXTS = [
    "the film was great fun !",
    "a dull , boring plot",
    "very good acting and story",
    "awful",
    "an unknown word zzz",
    "",
]
LABELS = ["negative", "positive", "neutral"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = load_sequence_classifier(tiny_model_dir, LABELS)
    preprocessor = BertPreprocessor(
        tiny_model_dir / "vocab.txt", lower_case=True, max_seq_length=16
    )
    first = export_classifier(model, preprocessor, LABELS, root)
    probabilities = tf.nn.softmax(
        model(preprocessor(tf.constant(TEXTS)), training=False).logits, -1
    ).numpy()
    return root, first, model, preprocessor, probabilities


# Runs in a fresh interpreter that imports only tensorflow and tensorflow_text.
_CLIENT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    loaded = tf.saved_model.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    encoded = loaded.signatures["encoded"]
    ids = tf.constant([[2, 8, 9, 3, 0]], tf.int32)
    logits = encoded(input_ids=ids, attention_mask=tf.cast(ids != 0, tf.int32),
                     token_type_ids=tf.zeros_like(ids))["logits"]
    print(json.dumps({
        "probabilities": out["probabilities"].numpy().tolist(),
        "label": [v.decode() for v in out["label"].numpy()],
        "label_id": out["label_id"].numpy().tolist(),
        "dtypes": {k: v.dtype.name for k, v in out.items()},
        "logits_shape": logits.shape.as_list(),
        "foreign": sorted(m for m in sys.modules
                          if m.split(".")[0] in ("tfhf", "transformers", "tf_keras")),
    }))
""")


def test_savedmodel_answers_raw_text_without_tfhf_and_matches_python(exported):
    root, version_dir, _, _, expected = exported
    assert version_dir == root / "1"
    got = run_bare_python(_CLIENT, str(version_dir), json.dumps(TEXTS), timeout=300)
    assert got["foreign"] == []
    probabilities = np.array(got["probabilities"])
    assert probabilities.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    assert got["label_id"] == expected.argmax(-1).tolist()
    assert got["label"] == [LABELS[i] for i in got["label_id"]]
    assert got["dtypes"] == {"label": "string", "label_id": "int32", "probabilities": "float32"}
    assert got["logits_shape"] == [1, len(LABELS)]


def test_signatures_as_saved_model_cli_lists_them(exported):
    _, version_dir, *_ = exported
    cli = Path(sys.executable).with_name("saved_model_cli")
    proc = subprocess.run(
        [str(cli), "show", "--all", "--dir", str(version_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['encoded']" in out
    serving = out.split("signature_def['serving_default']")[1]
    assert "inputs['text'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)" in serving
    for name, dtype, shape in [
        ("label", "DT_STRING", "(-1)"),
        ("label_id", "DT_INT32", "(-1)"),
        ("probabilities", "DT_FLOAT", "(-1, 3)"),
    ]:
        assert (
            f"outputs['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}"
            in serving
        ), name


def test_vocabulary_is_an_asset_and_versions_count_up(exported, tiny_model_dir):
    root, version_dir, model, preprocessor, _ = exported
    assets = list((version_dir / "assets").iterdir())
    assert [a.read_text() for a in assets] == [(tiny_model_dir / "vocab.txt").read_text()]
    assert next_version(root) == 2
    second = export_classifier(model, preprocessor, LABELS, root)
    assert second == root / "2"
    assert sorted(p.name for p in root.iterdir()) == ["1", "2"]  # no staging folder left behind


def test_export_root_that_cannot_be_created_is_refused(exported, tmp_path):
    from tfhf.errors import TfhfError

    _, _, model, preprocessor, _ = exported
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TfhfError, match="cannot create export folder"):
        export_classifier(model, preprocessor, LABELS, blocker / "export")


# TF Serving's model server links in TF Text 2.12: newer TF Text ops would not load there.
SERVING_TEXT_OPS = {"NormalizeUTF8", "RegexSplitWithOffsets", "WordpieceTokenizeWithOffsets"}


def test_graph_needs_no_tf_text_op_newer_than_tf_serving_links(exported, non_core_ops):
    _, version_dir, *_ = exported
    assert non_core_ops(version_dir) == SERVING_TEXT_OPS
