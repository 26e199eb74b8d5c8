"""Language modelling: corpus handling, BPE, packing, loss masking, and a short training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfhf.data import corpus
from tfhf.data.pipeline import lm_dataset
from tfhf.errors import TfhfError
from tfhf.tasks.lm import LmConfig
from tfhf.tokenizers import bpe
from tfhf.train import run
from tfhf.training.evaluation import evaluate_tokens
from tfhf.training.flops import transformer_training_flops

VERSE = (
    "ROMEO.\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet "
    "is the sun.\n\nJULIET.\nO Romeo, Romeo, wherefore art thou Romeo?\nDeny thy father and "
    "refuse thy name.\n\n"
)


def test_packing_shifts_labels_by_one_and_pads_only_the_last_block():
    ids = np.arange(1, 24, dtype=np.int32)  # 23 tokens: blocks of 5 (4 inputs + 1)
    ds = lm_dataset(ids, block_size=4, batch_size=2, pad_id=0, training=False)
    inputs, labels, weights = (
        np.concatenate(parts) for parts in zip(*ds.as_numpy_iterator(), strict=True)
    )
    assert inputs.shape == labels.shape == weights.shape == (5, 4)
    np.testing.assert_array_equal(inputs[0], [1, 2, 3, 4])
    np.testing.assert_array_equal(labels[0], [2, 3, 4, 5])
    np.testing.assert_array_equal(inputs[1], [6, 7, 8, 9])  # consecutive, no overlap
    # The last block has 3 tokens: 2 predictions, then padding with weight 0.
    np.testing.assert_array_equal(inputs[4], [21, 22, 0, 0])
    np.testing.assert_array_equal(labels[4], [22, 23, 0, 0])
    np.testing.assert_array_equal(weights[4], [1, 1, 0, 0])
    assert weights[:4].min() == 1
    assert int(weights.sum()) == 23 - 5  # each block's first token is never a label


def test_training_packing_has_static_shapes_and_reshuffles():
    ids = np.arange(1, 200, dtype=np.int32)
    ds = lm_dataset(ids, block_size=8, batch_size=4, pad_id=0, training=True, seed=1)
    assert ds.element_spec[0].shape.as_list() == [4, 8]
    first = [b[0][:, 0].tolist() for b in ds.take(10).as_numpy_iterator()]
    starts = sorted(s for batch in first[:5] for s in batch)
    assert len(set(starts)) == len(starts)  # an epoch's blocks appear once each
    assert first[:5] != first[5:10]


def test_loss_masking_ignores_whatever_fills_the_padding():
    from transformers import GPT2Config, TFGPT2LMHeadModel

    model = TFGPT2LMHeadModel(
        GPT2Config(vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    )
    ids = np.random.default_rng(0).integers(1, 30, size=21).astype(np.int32)
    results = [
        evaluate_tokens(
            model, lm_dataset(ids, block_size=8, batch_size=2, pad_id=pad, training=False)
        )
        for pad in (0, 7, 29)
    ]
    assert results[0]["tokens"] == 21 - 3
    for other in results[1:]:
        assert other["tokens"] == results[0]["tokens"]
        assert abs(other["loss"] - results[0]["loss"]) < 1e-5
    assert abs(results[0]["perplexity"] - np.exp(results[0]["loss"])) < 1e-3


def test_bits_per_character_count_what_the_predicted_tokens_spell(tiny_lm, lm_text):
    from tfhf.tasks.lm import predicted_characters

    _, tokenizer = tiny_lm
    first, second = lm_text.splitlines()
    ids = np.array(
        tokenizer(first)["input_ids"] + [tokenizer.eos_token_id] + tokenizer(second)["input_ids"]
    )
    # One block: all but the first token are predicted; the separator spells nothing.
    leading = len(tokenizer.decode(ids[:1]))
    assert predicted_characters(tokenizer, ids, len(ids)) == len(first + second) - leading
    # Blocks of 4 + 1: each block's first token is not predicted.
    starts = sum(len(tokenizer.decode([i], skip_special_tokens=True)) for i in ids[::5])
    assert predicted_characters(tokenizer, ids, 4) == len(first + second) - starts


def test_gutenberg_header_and_footer_are_stripped():
    text = (
        "The Project Gutenberg EBook of Hamlet\nlicence words\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\nHAMLET\nTo be.\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nmore licence\n"
    )
    assert corpus.strip_gutenberg(text) == "HAMLET\nTo be.\n"
    assert corpus.strip_gutenberg("HAMLET\nTo be.\n") == "HAMLET\nTo be.\n"


def test_folio_duplicates_are_left_out(tmp_path):
    (tmp_path / "hamlet_gut.txt").write_text("Hamlet modern\n")
    (tmp_path / "hamlet_gut_f.txt").write_text("Hamlet folio\n")
    assert corpus.shakespeare_works(tmp_path) == {"hamlet": "Hamlet modern\n"}


def test_user_corpus_holds_out_validation_and_refuses_bad_files(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"document {i}\n"}) + "\n" for i in range(20)))
    train, validation = corpus.load_corpus(dataset="", train_file=str(docs), seed=3).gathered()
    assert len(train) == 18 and validation == ["document 3\n", "document 13\n"]
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(TfhfError, match="empty.txt: corpus is empty"):
        corpus.load_corpus(dataset="", train_file=str(empty))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(TfhfError, match="bad.jsonl:2: no column 'text'"):
        corpus.load_corpus(dataset="", train_file=str(bad)).gathered()
    with pytest.raises(TfhfError, match="unknown corpus 'wikipedia'"):
        corpus.load_corpus(dataset="wikipedia")


def test_txt_files_are_documents_lines_or_paragraphs_and_a_folder_is_its_files(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    for i in range(12):
        (books / f"book{i:02}.txt").write_text(f"Book {i}.\nIt begins.\n\nIt ends.\n")
    by_file = sum(corpus.load_corpus(dataset="", train_file=str(books), seed=0).gathered(), [])
    assert len(by_file) == 12
    assert "Book 3.\nIt begins.\n\nIt ends.\n" in by_file
    by_paragraph = corpus.load_corpus(
        dataset="", train_file=f"{books}/book0*.txt", text_format="paragraphs", seed=0
    )
    assert len(sum(by_paragraph.gathered(), [])) == 20  # 10 files, 2 each
    by_line = corpus.load_corpus(
        dataset="", train_file=f"{books}/book0[0-3].txt", text_format="lines", seed=0
    )
    assert len(sum(by_line.gathered(), [])) == 12  # 4 files, 3 lines each
    assert "It begins." in sum(by_line.gathered(), [])
    problems = LmConfig(task="lm", text_format="pages").problems()
    assert any("--text_format must be one of lines, paragraphs, document" in p for p in problems)


@pytest.fixture(scope="module")
def tiny_bpe(tmp_path_factory):
    return bpe.train_bpe([VERSE * 20], vocab_size=300, folder=tmp_path_factory.mktemp("bpe"))


@pytest.mark.parametrize(
    "text",
    [
        VERSE,
        "  leading spaces\tand tabs\r\n",
        "emoji 🎭🗡️ and CJK 莎士比亚",
        "ends with newline\n",
        "",
        "\n\n\n",
        "ﬁnal ß and ü",
        "<|endoftext|> literal",
    ],
)
def test_bpe_round_trips_any_text(tiny_bpe, text):
    ids = tiny_bpe(text, add_special_tokens=False)["input_ids"]
    assert tiny_bpe.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_bpe_round_trips_arbitrary_unicode(tiny_bpe, text):
    ids = tiny_bpe(text, add_special_tokens=False)["input_ids"]
    assert tiny_bpe.decode(ids) == text


def test_trained_tokenizer_reloads_with_transformers(tiny_bpe, tmp_path):
    from transformers import GPT2TokenizerFast

    tiny_bpe.save_pretrained(tmp_path)
    again = GPT2TokenizerFast.from_pretrained(tmp_path)
    assert again(VERSE)["input_ids"] == tiny_bpe(VERSE)["input_ids"]
    assert again.eos_token == bpe.END_OF_TEXT and len(again) <= 300


def lm_config(tmp_path, train_file, **overrides):
    values = dict(
        train_file=str(train_file),
        vocab_size=300,
        block_size=32,
        n_layer=1,
        n_head=2,
        n_embd=32,
        batch_size=8,
        epochs=3,
        learning_rate=3e-3,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
        token_cache=str(tmp_path / "tokens"),
        seed=5,
    )
    values.update(overrides)
    return LmConfig(**values)


def test_short_training_run_learns_and_saves_a_loadable_model(tmp_path):
    from transformers import AutoTokenizer, TFAutoModelForCausalLM

    text = tmp_path / "verse.txt"
    text.write_text(VERSE * 40)
    metrics = run(lm_config(tmp_path, text))
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < losses[0]
    validation = metrics["validation"]
    assert validation["perplexity"] < 300 / 4  # far better than uniform guessing
    # Characters per token near 1 would mean the count ignores what each token spells.
    tokens_per_character = validation["bits_per_character"] * np.log(2) / validation["loss"]
    assert 0.1 < tokens_per_character < 0.6
    assert metrics["train_tokens_per_second"] > 0
    assert set(metrics["samples"]) == {"KING.\n", "ROMEO.\n", "Enter"}
    model = TFAutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    # Model FLOP/s: the tokens trained per second at the estimate for this model's shape.
    per_token = transformer_training_flops(model.config, context=32)
    assert metrics["train_model_flops_per_second"] == pytest.approx(
        metrics["train_tokens_per_second"] * per_token, rel=1e-3
    )
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert model.config.n_positions == 32 and len(tokenizer) == model.config.vocab_size
    ids = tf.constant([tokenizer("It is the east")["input_ids"]])
    assert model(ids).logits.shape[-1] == model.config.vocab_size


def test_bad_records_are_skipped_and_a_second_run_starts_from_the_cache(tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    lines = [json.dumps({"text": line}) for line in VERSE.splitlines() * 8 if line]
    lines.insert(30, json.dumps({"body": "no text"}))
    docs.write_text("\n".join(lines) + "\n")
    quick = dict(epochs=1, max_steps_per_epoch=2, export=False)
    with pytest.raises(TfhfError, match="docs.jsonl:31: no column 'text'"):
        run(lm_config(tmp_path, docs, **quick))
    assert not (tmp_path / "run").exists()
    skipping = dict(skip_bad_records=True, **quick)
    run(lm_config(tmp_path, docs, **skipping))
    first = capsys.readouterr().out
    # Another run from scratch, and one that goes on training the first one's model: both
    # read the tokenized corpus (and the first its tokenizer) from the cache.
    run(lm_config(tmp_path, docs, workdir=str(tmp_path / "again"), **skipping))
    again = capsys.readouterr().out
    run(
        lm_config(
            tmp_path, docs, model=str(tmp_path / "run"), workdir=str(tmp_path / "on"), **skipping
        )
    )
    going_on = capsys.readouterr().out
    for out in (first, again, going_on):
        assert f"skipped 1 bad records (--skip_bad_records); the first: {docs}:31" in out
    assert "tfhf: kept in " in first and "from the cache" not in first
    assert "byte-level BPE tokenizer from the cache" in again
    assert (
        "tokenized corpus from the cache" in again and "tokenized corpus from the cache" in going_on
    )


def test_corpus_shorter_than_one_block_is_refused(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("To be.\n" * 3)
    with pytest.raises(TfhfError, match="shorter than one block of 33"):
        run(lm_config(tmp_path, text, vocab_size=260))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(block_size=1), "--block_size must be at least 2"),
        (dict(n_embd=30, n_head=4), r"--n_embd \(30\) must be a multiple of --n_head \(4\)"),
        (dict(learning_rate=0.0), "--learning_rate must be positive"),
        (dict(epochs=0, batch_size=0), "--batch_size must be positive.*--epochs must be positive"),
    ],
)
def test_bad_lm_settings_are_refused_before_anything_is_written(tmp_path, overrides, message):
    text = tmp_path / "verse.txt"
    text.write_text(VERSE * 10)
    with pytest.raises(TfhfError, match=message):
        run(lm_config(tmp_path, text, **overrides))
    assert not (tmp_path / "run").exists()
