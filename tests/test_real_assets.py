"""A few steps with the real packaged MiniLM and Rotten Tomatoes data (fetched on first use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfhf.data import sources
from tfhf.models.model_folder import load_classifier_folder
from tfhf.tasks.classify import ClassifyConfig, sample_split
from tfhf.train import run

pytestmark = pytest.mark.assets


@pytest.fixture(scope="module")
def packaged_data():
    return sources.load_classification_data(dataset="rotten_tomatoes")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    config = ClassifyConfig(
        max_steps_per_epoch=4,
        batch_size=8,
        max_eval_examples=300,
        workdir=str(tmp / "run"),
        export_dir=str(tmp / "export"),
    )
    return config, run(config)


def test_packaged_data_splits_are_disjoint_and_balanced_enough(packaged_data):
    data = packaged_data
    assert data.label_names == ["negative", "positive"]
    train, val, test = (set(s.texts) for s in (data.train, data.validation, data.test))
    assert not (train & val or train & test or val & test)
    assert len(train) > 10000 and len(val) > 1000 and len(test) > 1000
    for split in (data.train, data.validation, data.test):
        assert 0.35 < split.labels.mean() < 0.65


def test_the_reported_test_accuracy_is_what_the_export_scores(real_run, packaged_data):
    import tensorflow_text  # noqa: F401

    config, metrics = real_run
    assert metrics["config"]["model"] == "minilm-l6"
    # The run scored 300 test snippets drawn by its seed: the same 300 here.
    test = sample_split(packaged_data.test, 300, config.seed)
    assert metrics["test"]["examples"] == len(test) == 300
    serve = tf.saved_model.load(metrics["export"]).signatures["serving_default"]
    predicted = np.concatenate(
        [
            serve(text=tf.constant(test.texts[i : i + 128]))["label_id"].numpy()
            for i in range(0, len(test), 128)
        ]
    )
    assert np.mean(predicted == test.labels) == pytest.approx(metrics["test"]["accuracy"])


def test_real_export_matches_the_python_model(real_run, packaged_data):
    import tensorflow_text  # noqa: F401

    config, metrics = real_run
    model, preprocessor, names = load_classifier_folder(Path(config.workdir) / "model")
    data = packaged_data
    texts = data.test.texts[:32]
    expected = tf.nn.softmax(model(preprocessor(tf.constant(texts)), training=False).logits, -1)
    served = tf.saved_model.load(metrics["export"]).signatures["serving_default"](
        text=tf.constant(texts)
    )
    np.testing.assert_allclose(served["probabilities"].numpy(), expected.numpy(), atol=1e-4)


def test_saved_tokenizer_matches_the_in_graph_tokenizer_on_real_text(real_run, packaged_data):
    from transformers import AutoTokenizer

    config, _ = real_run
    folder = Path(config.workdir) / "model"
    _, preprocessor, _ = load_classifier_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    data = packaged_data
    texts = data.train.texts[:300]
    ours = preprocessor.tokenize(tf.constant(texts)).to_list()
    theirs = tokenizer(texts, truncation=True, max_length=config.max_seq_length)["input_ids"]
    mismatched = [t for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not mismatched, mismatched[:3]


def test_the_default_mlm_vocabulary_is_the_same_every_time(tmp_path):
    # The trainer lists the "##x" pieces in hash-table order, different in every training;
    # tfhf fixes the order, so that a seeded mlm run repeats itself.
    from tfhf.data import corpus
    from tfhf.tasks.mlm import MlmConfig
    from tfhf.tokenizers import wordpiece

    defaults = MlmConfig()
    train, _ = corpus.load_corpus(dataset=defaults.dataset).gathered()
    vocabularies = set()
    for i in range(3):
        wordpiece.train_wordpiece(train, vocab_size=defaults.vocab_size, folder=tmp_path / str(i))
        vocabularies.add((tmp_path / str(i) / "vocab.txt").read_text(encoding="utf-8"))
    assert len(vocabularies) == 1


def test_a_few_summarize_steps_on_the_debian_descriptions(tmp_path, capsys):
    from tfhf.data.pairs import load_pairs
    from tfhf.tasks.summarize import EXAMPLES_FILE, SummarizeConfig

    data = load_pairs(dataset="debian_descriptions")
    assert len(data.train) > 25000 and len(data.validation) > 1000 and len(data.test) > 1000
    assert not set(data.train.sources) & set(data.test.sources)
    config = SummarizeConfig(
        batch_size=8,
        max_steps_per_epoch=3,
        max_eval_examples=6,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
    )
    metrics = run(config)
    shown = capsys.readouterr().out
    # The default starts each cross-attention from the layer's self-attention.
    assert "cross-attention copied from self-attention; new LM-head transform initialised" in shown
    source = metrics["data_source"]
    assert len(source["sha256"]) == 64 and source["release"].startswith("Debian 12.")
    assert metrics["test"]["examples"] == 6
    blocks = (tmp_path / "run" / EXAMPLES_FILE).read_text().strip().split("\n\n")
    assert len(blocks) == 6
    assert 0.1 < metrics["lead_baseline"]["rougeL"] < 0.5  # synopses echo the text's start
    # The export of the real model writes the summaries the run reported (4 beams).
    import tensorflow as tf

    sources = data.test.sources[:6]
    lines = (tmp_path / "run" / EXAMPLES_FILE).read_text().splitlines()
    reported = [line[len("GENERATED  ") :] for line in lines if line.startswith("GENERATED")]
    loaded = tf.saved_model.load(metrics["export"])
    exported = loaded.generate(tf.constant(sources))["summary"].numpy()
    assert [t.decode() for t in exported] == reported
