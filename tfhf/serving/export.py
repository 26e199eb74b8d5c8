"""SavedModel export in the layout TF Serving loads: `<export_dir>/<integer version>/`.

The serving graph needs no Python: tokenization runs in TensorFlow Text ops with
the vocabulary stored as a SavedModel asset, and the label names are constants
in the graph, so a client sends raw strings and reads labels back.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.serving.warmup import WarmupRequest, write_warmup_requests
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor
from tfhf.tracing import unconverted


@dataclasses.dataclass(frozen=True)
class TensorDoc:
    """One input or output of an exported signature, as the reference documents it.

    Attributes:
      dtype: string, int32, float32 or bool.
      shape: Its dimensions in words, e.g. `[batch]`, `[batch, labels]`, `[]` (a scalar).
      meaning: What it holds.
      default: For an optional input: its default (the SignatureDef's `defaults`), in words.
    """

    dtype: str
    shape: str
    meaning: str
    default: str = ""

    @property
    def rank(self) -> int:
        inner = self.shape.strip("[]").strip()
        return 0 if not inner else inner.count(",") + 1


@dataclasses.dataclass(frozen=True)
class SignatureDoc:
    """An exported signature: what it does, its inputs and its outputs. Tests compare these
    with the SignatureDefs of real exports, so the reference generated from them is true."""

    name: str
    summary: str
    inputs: Mapping[str, TensorDoc]
    outputs: Mapping[str, TensorDoc]


# What a version folder holds (tests compare it with real exports).
EXPORT_FILES = {
    "saved_model.pb": "The graphs and their signatures (below).",
    "variables/": "The weights, float32 whatever the training precision; no optimizer state.",
    "assets/": "The tokenizer's files (vocabulary, BPE merges), read by the graph.",
    "assets.extra/tf_serving_warmup_requests": "Warmup requests (a TFRecord of "
    "PredictionLog) that TF Serving and tfhf.serve replay before a version answers.",
    "fingerprint.pb": "TensorFlow's fingerprint of the SavedModel.",
}

_TEXT_IN = TensorDoc(
    "string", "[batch]", "Raw texts, tokenized in the graph as in training (WordPiece)."
)
CLASSIFIER_SIGNATURES = (
    SignatureDoc(
        "serving_default",
        "Raw text in, label out.",
        {"text": _TEXT_IN},
        {
            "label": TensorDoc("string", "[batch]", "The likeliest label's name."),
            "label_id": TensorDoc(
                "int32", "[batch]", "Its index in the run's labels (metrics.json `labels`)."
            ),
            "probabilities": TensorDoc(
                "float32", "[batch, labels]", "Softmax over the labels, in that order."
            ),
        },
    ),
    SignatureDoc(
        "encoded",
        "Token ids in, logits out: for clients that tokenize themselves.",
        {
            name: TensorDoc("int32", "[batch, length]", meaning)
            for name, meaning in (
                ("input_ids", "WordPiece ids, [CLS] ... [SEP], padded."),
                ("attention_mask", "1 for tokens, 0 for padding."),
                ("token_type_ids", "0s for a single text."),
            )
        },
        {"logits": TensorDoc("float32", "[batch, labels]", "The classifier's logits.")},
    ),
)


class ClassifierServingModule(tf.Module):
    """Raw text in, label out: the exported form of a sequence classifier.

    Only the model's variables are tracked (not the Keras object), which keeps
    the SavedModel to the two signatures below and out of Keras' own
    serialization of every layer.
    """

    def __init__(self, model, preprocessor: BertPreprocessor, label_names: list[str]):
        super().__init__(name="classifier")
        # A closure, not an attribute: tracking the Keras model would also save its optimizer's
        # slot variables, tripling the export's size.
        self._forward = unconverted(lambda features: model(features, training=False))
        self.weights = list(model.weights)
        self.preprocessor = preprocessor
        self.label_names = tf.constant(label_names, dtype=tf.string)
        self._takes_token_type_ids = "token_type_ids" in model.input_signature

    def _logits(self, input_ids, attention_mask, token_type_ids):
        features = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._takes_token_type_ids:
            features["token_type_ids"] = token_type_ids
        return self._forward(features).logits

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def classify_text(self, text):
        features = self.preprocessor(text)
        logits = self._logits(**features)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(self.label_names, label_id),
            "label_id": label_id,
            "probabilities": probabilities,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
            tf.TensorSpec([None, None], tf.int32, name="token_type_ids"),
        ]
    )
    def classify_encoded(self, input_ids, attention_mask, token_type_ids):
        return {
            "logits": tf.cast(self._logits(input_ids, attention_mask, token_type_ids), tf.float32)
        }


# The suffix of a signature that is another's XLA-compiled twin: the same inputs, outputs and
# results, compiled where the server compiles XLA (TF Serving: --xla_cpu_compilation_enabled).
XLA_TWIN = "_xla"
# Batch sizes an XLA twin compiles for (`filled_to_row_bucket`: with server-side batching
# every batch size would otherwise compile a program of its own); a larger batch compiles
# for its own size.
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def bucket(n, buckets, most):
    """The smallest of `buckets` holding `n`, `most` at most (a scalar tensor)."""
    buckets = tf.constant(buckets, tf.int32)
    return tf.minimum(tf.reduce_min(tf.where(buckets >= n, buckets, most)), most)


def filled_to_row_bucket(tensors):
    """`tensors` (the same rows each) with rows appended, copies of the first, up to the
    row bucket of their row count (none for no rows)."""
    batch = tf.shape(tensors[0])[0]
    rows = bucket(batch, ROW_BUCKETS, tf.maximum(batch, ROW_BUCKETS[-1]))
    return [tf.concat([t, tf.repeat(t[:1], rows - batch, axis=0)], axis=0) for t in tensors]


def read_signature_defs(version_dir: Path) -> dict:
    """The SignatureDefs of the SavedModel in `version_dir` (of its "serve" graph), by name,
    read from saved_model.pb without loading the model; internal ones ("__...") left out."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    graph = next(
        (m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0]
    )
    return {k: v for k, v in graph.signature_def.items() if not k.startswith("__")}


def refuse_unless(condition: tf.Tensor, reason: str) -> tf.Operation:
    """An in-graph check of a request: fails with `reason` (TF Serving returns it to the
    client as `assertion failed: [reason]`) unless `condition` holds everywhere."""
    # No apostrophes in `reason`: the error message would show them escaped.
    return tf.debugging.Assert(tf.reduce_all(condition), [reason])


def next_version(export_dir: Path) -> int:
    """One more than the highest integer version folder under `export_dir` (1 if none)."""
    versions = (
        [int(p.name) for p in export_dir.iterdir() if p.is_dir() and p.name.isdigit()]
        if export_dir.is_dir()
        else []
    )
    return max(versions, default=0) + 1


def export_classifier(
    model, preprocessor: BertPreprocessor, label_names: list[str], export_dir: str | Path
) -> Path:
    """Writes a new version of the classifier under `export_dir` and returns its folder.

    Signatures:
      serving_default: `text` (string [batch]) -> `label` (string), `label_id`
        (int32) and `probabilities` (float32 [batch, num_labels]).
      encoded: `input_ids`, `attention_mask`, `token_type_ids` (int32 [batch, length])
        -> `logits` (float32 [batch, num_labels]).

    The version carries warmup requests for both signatures, which TF Serving runs
    before it answers any client.
    """
    module = ClassifierServingModule(model, preprocessor, label_names)
    return save_version(
        module,
        {
            "serving_default": module.classify_text.get_concrete_function(),
            "encoded": module.classify_encoded.get_concrete_function(),
        },
        export_dir,
        warmup=_classifier_warmup(preprocessor),
    )


def _classifier_warmup(preprocessor: BertPreprocessor) -> list[WarmupRequest]:
    """Requests for both signatures: one text, then four from a word up to `max_seq_length`
    tokens, raw and as token ids."""
    # A single text and a padded full-length batch are the shapes served most, and the ones
    # a GPU should have picked its kernels for before the first client arrives.
    # Any word is at least one token, so this text reaches the length limit in any vocabulary.
    longest = " ".join(["film"] * preprocessor.max_seq_length)
    batch = ["no", "a fine film", "an old story , told well and at an easy pace", longest]
    encoded = {name: ids.numpy() for name, ids in preprocessor(tf.constant(batch)).items()}
    return [
        ("serving_default", {"text": ["the film was great fun !"]}),
        ("serving_default", {"text": batch}),
        ("encoded", encoded),
    ]


def save_version(
    module: tf.Module,
    signatures: dict,
    export_dir: str | Path,
    *,
    warmup: Sequence[WarmupRequest] = (),
) -> Path:
    """Saves `module` as the next integer version under `export_dir`; returns its folder.

    The SavedModel is written into a hidden temporary folder beside the versions
    and renamed into place at the end, so TF Serving (which ignores non-integer
    names) never sees a half-written version, nor one without its warmup file.

    Args:
      module: What to save; its variables and the functions in `signatures`.
      signatures: Signature name -> `tf.function` with an input signature, or a
        concrete function.
      export_dir: The model's folder; versions are its integer-named subfolders.
      warmup: `(signature_name, {input_name: values})` requests written to
        `assets.extra/tf_serving_warmup_requests`, which TF Serving runs at load.
        With none, no file is written.
    """
    export_dir = Path(export_dir)
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TfhfError(f"cannot create export folder {export_dir}: {e.strerror}") from None
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=export_dir))
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        if warmup:
            write_warmup_requests(staging, warmup)
        os.chmod(
            staging, 0o755
        )  # mkdtemp's 0700 would hide it from a server running as another user
        # Rename only to a version no one has taken meanwhile.
        while True:
            target = export_dir / str(next_version(export_dir))
            try:
                os.rename(staging, target)
                break
            except OSError:
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
