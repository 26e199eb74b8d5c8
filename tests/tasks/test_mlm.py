"""Masked-LM pretraining: WordPiece training, a short run that learns, the handoff to
classify, and refusals."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tfhf.errors import TfhfError
from tfhf.tasks.mlm import MlmConfig, new_masked_lm
from tfhf.tokenizers import wordpiece
from tfhf.train import run
from tfhf.training.flops import transformer_training_flops

WORDS = "the film was great fun and the plot dull boring lovely acting story superb awful".split()


def corpus_file(tmp_path, lines=300, seed=0):
    rng = random.Random(seed)
    path = tmp_path / "reviews.txt"
    # Fixed phrases make masked words predictable from their neighbours.
    phrases = ["the film was great fun", "the plot was dull and boring", "lovely acting"]
    path.write_text(
        "\n".join(
            " ".join(
                rng.choice(phrases) if rng.random() < 0.7 else rng.choice(WORDS) for _ in range(4)
            )
            + " ."
            for _ in range(lines)
        )
    )
    return path


def mlm_config(tmp_path, train_file, **overrides):
    values = dict(
        train_file=str(train_file),
        vocab_size=120,
        max_seq_length=32,
        n_layer=1,
        n_head=2,
        n_embd=32,
        batch_size=8,
        epochs=3,
        learning_rate=3e-3,
        workdir=str(tmp_path / "run"),
        token_cache=str(tmp_path / "tokens"),
        seed=3,
    )
    values.update(overrides)
    return MlmConfig(**values)


def test_wordpiece_vocabulary_has_the_special_tokens_and_word_pieces(tmp_path):
    texts = ["unbelievably wonderful filmmaking, unbelievable films"] * 30
    tokenizer = wordpiece.train_wordpiece(texts, vocab_size=120, folder=tmp_path / "wp")
    vocab = (tmp_path / "wp" / "vocab.txt").read_text().splitlines()
    assert vocab[:5] == wordpiece.SPECIAL_TOKENS
    assert any(t.startswith("##") for t in vocab) and len(vocab) <= 120
    assert tokenizer.decode(tokenizer("Wonderful films")["input_ids"]) == (
        "[CLS] wonderful films [SEP]"
    )


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mlm")
    metrics = run(mlm_config(tmp_path, corpus_file(tmp_path), whole_word_masking=True))
    return tmp_path, metrics


def test_short_mlm_run_learns_and_saves_a_roformer(mlm_run):
    from transformers import AutoTokenizer, TFAutoModelForMaskedLM

    tmp_path, metrics = mlm_run
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < losses[0]
    validation = metrics["validation"]
    vocab = metrics["config"]["vocab_size"]
    # A few steps get the model to word frequencies at least: far better than guessing.
    assert validation["perplexity"] < vocab / 4
    assert validation["accuracy"] > 4 / vocab
    assert validation["perplexity"] == pytest.approx(np.exp(validation["loss"]), rel=1e-6)
    assert metrics["train_tokens_per_second"] > 0
    assert metrics["config"]["whole_word_masking"] is True
    model = TFAutoModelForMaskedLM.from_pretrained(tmp_path / "run" / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert type(model).__name__ == "TFRoFormerForMaskedLM"  # the default architecture
    assert model.config.max_position_embeddings == 32
    # The output layer is counted at the masked 15% only, as it runs.
    per_token = transformer_training_flops(model.config, context=32, predicted_share=0.15)
    assert metrics["train_model_flops_per_second"] == pytest.approx(
        metrics["train_tokens_per_second"] * per_token, rel=1e-3
    )
    assert len(tokenizer) == model.config.vocab_size <= 120


@pytest.mark.parametrize(
    "architecture, model_class",
    [("roformer", "TFRoFormerForMaskedLM"), ("bert", "TFBertForMaskedLM")],
)
def test_the_architecture_flag_picks_the_new_model(tmp_path, architecture, model_class):
    texts = ["unbelievably wonderful filmmaking, unbelievable films"] * 30
    tokenizer = wordpiece.train_wordpiece(texts, vocab_size=120, folder=tmp_path / "wp")
    config = mlm_config(tmp_path, tmp_path / "unused.txt", architecture=architecture)
    model = new_masked_lm(config, tokenizer)
    assert type(model).__name__ == model_class
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 1)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.max_position_embeddings == 32
    # RoFormer's token embeddings are as wide as its hidden states: no projection between.
    assert getattr(model.config, "embedding_size", 32) == 32


def test_classify_from_an_mlm_workdir_keeps_every_encoder_weight(mlm_run, capsys):
    from transformers import TFAutoModelForMaskedLM

    from tfhf.models.loading import load_sequence_classifier, resolve_model

    tmp_path, _ = mlm_run
    folder = resolve_model(str(tmp_path / "run"))
    classifier = load_sequence_classifier(folder, ["negative", "positive"])
    assert "encoder weights carried over" in capsys.readouterr().out
    pretrained = TFAutoModelForMaskedLM.from_pretrained(folder)

    def encoder(model):
        return {
            w.name.split("/", 1)[1]: w.numpy()
            for w in model.weights
            if "/embeddings/" in w.name or "/encoder/" in w.name
        }

    before, after = encoder(pretrained), encoder(classifier)
    assert len(before) > 10 and before.keys() == after.keys()
    for name, value in before.items():
        np.testing.assert_array_equal(value, after[name], err_msg=name)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(mlm_probability=0.0), r"--mlm_probability must be in \(0, 1\)"),
        (dict(mlm_probability=1.0), r"--mlm_probability must be in \(0, 1\)"),
        (dict(n_embd=30, n_head=4), r"--n_embd \(30\) must be a multiple of --n_head \(4\)"),
        (dict(max_seq_length=4), "--max_seq_length must be at least 8"),
        (dict(max_seq_length=4096), "shorter than one sequence of 4096"),
        (dict(architecture="gpt2"), "--architecture must be one of roformer, bert, got 'gpt2'"),
    ],
)
def test_bad_mlm_settings_are_refused_before_anything_is_written(tmp_path, overrides, message):
    with pytest.raises(TfhfError, match=message):
        run(mlm_config(tmp_path, corpus_file(tmp_path, lines=40), **overrides))
    assert not (tmp_path / "run").exists()


def test_unknown_mlm_corpus_is_refused(tmp_path):
    packaged = r"\(packaged: shakespeare, rotten_tomatoes"
    with pytest.raises(TfhfError, match=rf"unknown corpus 'wikipedia' {packaged}"):
        run(mlm_config(tmp_path, "", dataset="wikipedia"))
    assert not (tmp_path / "run").exists()


def test_the_run_holds_what_the_reference_documents(mlm_run):
    from conftest import assert_run_is_documented

    tmp_path, metrics = mlm_run
    assert_run_is_documented(tmp_path / "run", metrics)
