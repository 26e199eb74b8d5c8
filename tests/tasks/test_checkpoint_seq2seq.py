"""A sequence-to-sequence checkpoint through `--task=summarize`: a tiny random-init T5 with
its own SentencePiece tokenizer learns, saves, reloads, and exports a SavedModel that writes
in a Python-free process what tfhf writes. (BART's and Marian's tokenizers and decoding are
compared with transformers' in tests/tokenizers and tests/generation.)"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import make_texts, run_bare_python
from seq2seq_checkpoints import tiny_checkpoint
from test_summarize import tiny_config

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import DecodingSettings, TextToText
from tfhf.models.model_folder import load_text_to_text_folder
from tfhf.tasks.summarize import EXAMPLES_FILE
from tfhf.train import run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    corpus = [text for text, _ in make_texts(200, seed=5)]
    return tiny_checkpoint("t5", corpus, tmp_path_factory.mktemp("t5"))


@pytest.fixture(scope="module")
def trained(checkpoint, tmp_path_factory):
    config = tiny_config(
        checkpoint,
        tmp_path_factory.mktemp("run"),
        max_target_length=8,
        epochs=8,
        freeze_encoder=False,  # a random encoder must learn to read too
    )
    return config, run(config)


def test_a_checkpoint_learns_to_pick_the_words_that_matter(trained):
    _, metrics = trained
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < 0.6 * losses[0]
    assert metrics["test"]["rougeL"] > metrics["lead_baseline"]["rougeL"] + 0.15


def test_the_saved_checkpoint_writes_the_summaries_the_run_reported(trained):
    config, _ = trained
    model, source, target, _ = load_text_to_text_folder(Path(config.workdir) / "model")
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    sources = [b.splitlines()[0].split(None, 1)[1] for b in blocks]
    reported = [(b.splitlines()[2].split(None, 1) + [""])[1] for b in blocks]
    assert TextToText(model, source, target, jit_compile=False)(sources, config.decoding()) == (
        reported
    )


# Runs in a fresh interpreter that imports only tensorflow and tensorflow_text.
_CLIENT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    signatures = tf.saved_model.load(sys.argv[1]).signatures
    texts = json.loads(sys.argv[2])

    def run(texts=texts, signature="serving_default", **controls):
        serve = signatures[signature]
        inputs = dict(max_new_tokens=[8], num_beams=[4], length_penalty=[1.0],
                      temperature=[0.0], top_k=[0], top_p=[1.0], seed=[0])
        inputs.update(controls)
        floats = ("length_penalty", "temperature", "top_p")
        inputs = {k: tf.constant(v, tf.float32 if k in floats else tf.int32)
                  for k, v in inputs.items()}
        try:
            return [t.decode() for t in serve(text=tf.constant(texts), **inputs)["summary"].numpy()]
        except tf.errors.InvalidArgumentError as e:
            return "error: " + next(l for l in e.message.splitlines() if "assertion" in l)

    print(json.dumps({"beams": run(), "greedy": run(num_beams=[1]), "empty": run(texts=[""]),
                      "xla_beams": run(signature="serving_default_xla"),
                      "xla_greedy": run(signature="serving_default_xla", num_beams=[1]),
                      "foreign": sorted(m for m in sys.modules
                                        if m.split(".")[0] in ("tfhf", "transformers"))}))
""")


def test_the_export_writes_what_tfhf_writes_in_a_python_free_process(trained, non_core_ops):
    config, metrics = trained
    texts = [text for text, _ in make_texts(10, seed=9)]
    out = run_bare_python(_CLIENT, metrics["export"], json.dumps(texts))
    assert out["foreign"] == []
    model, source, target, _ = load_text_to_text_folder(Path(config.workdir) / "model")
    ours = TextToText(model, source, target, jit_compile=False)
    assert out["beams"] == ours(texts, config.decoding())
    assert out["greedy"] == ours(texts, DecodingSettings(8, no_repeat_ngram_size=3))
    assert out["empty"].startswith("error: ") and "empty text" in out["empty"]
    # T5's relative positions read from a cache sized for a bucket: the same summaries.
    assert (out["xla_beams"], out["xla_greedy"]) == (out["beams"], out["greedy"])
    # SentencePiece's ops, which TF Serving's TF Text has.
    assert non_core_ops(Path(metrics["export"])) == {"SentencepieceOp", "SentencepieceTokenizeOp"}


def test_a_bert_encoder_decoder_setting_is_refused_for_a_checkpoint(checkpoint, tmp_path):
    config = tiny_config(checkpoint, tmp_path, decoder="gpt2")
    with pytest.raises(TfhfError, match="--decoder: settings of a BERT encoder-decoder") as info:
        run(config)
    assert "\n" not in str(info.value)
    assert not Path(config.workdir).exists()


def test_a_frozen_checkpoint_encoder_trains_its_layers_not_but_the_shared_embeddings():
    import numpy as np
    import tensorflow as tf
    import transformers

    from tfhf.models.seq2seq import freeze_encoder

    config = transformers.T5Config(
        vocab_size=40, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
        dropout_rate=0.5, decoder_start_token_id=0,
    )  # fmt: skip
    model = transformers.TFT5ForConditionalGeneration(config)
    ids = tf.constant([[5, 7, 9, 11, 1]])
    model(input_ids=ids, decoder_input_ids=ids)
    freeze_encoder(model)
    trainable = {id(v) for v in model.trainable_variables}
    shared = model.get_input_embeddings().weights
    assert shared and all(id(v) in trainable for v in shared)
    encoder_own = [v for v in model.get_encoder().weights if id(v) not in {id(s) for s in shared}]
    assert encoder_own and not any(id(v) in trainable for v in encoder_own)
    states = [
        model.get_encoder()(input_ids=ids, training=training).last_hidden_state
        for training in (True, False)
    ]
    np.testing.assert_array_equal(*states)
