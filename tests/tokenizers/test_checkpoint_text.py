"""The in-graph tokenizers of T5, BART and Marian checkpoints give the ids their transformers
tokenizers give, sources and targets alike, and turn generated ids back into the same text."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import transformers
from conftest import make_texts
from seq2seq_checkpoints import KINDS, tiny_checkpoint

from tfhf.errors import TfhfError
from tfhf.tokenizers.checkpoint_text import checkpoint_texts

TEXTS = [
    "a good film",
    "The plot, was DULL!",  # capitals and punctuation the corpus lacks
    "ünïcode 鑫 and   spaces ",  # characters no piece covers, runs of spaces
    "great acting and a lovely story and a superb plot and fun",
]


@pytest.fixture(scope="module", params=KINDS)
def checkpoint(request, tmp_path_factory):
    corpus = [text for text, _ in make_texts(200, seed=5)]
    folder = tiny_checkpoint(request.param, corpus, tmp_path_factory.mktemp(request.param))
    config = transformers.AutoConfig.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return folder, config, tokenizer


def test_sources_and_targets_get_the_ids_transformers_gives(checkpoint):
    folder, config, tokenizer = checkpoint
    source, target = checkpoint_texts(folder, config, source_length=64, target_length=64)
    assert source.tokenize(tf.constant(TEXTS)).to_list() == [
        tokenizer(t)["input_ids"] for t in TEXTS
    ]
    # A target is what the decoder reads, so it starts with decoder_start_token_id.
    start = [config.decoder_start_token_id]
    expected = [start + tokenizer(text_target=t)["input_ids"] for t in TEXTS]
    assert target.tokenize(tf.constant(TEXTS)).to_list() == expected


def test_long_texts_are_cut_and_keep_their_end_token(checkpoint):
    folder, config, tokenizer = checkpoint
    source, target = checkpoint_texts(folder, config, source_length=6, target_length=6)
    for side in (source, target):
        rows = side.tokenize(tf.constant(TEXTS)).to_list()
        assert max(len(r) for r in rows) == 6
        assert all(r[-1] == tokenizer.eos_token_id for r in rows)
    counts = target.token_counts(tf.constant(TEXTS)).numpy()
    full = [len(tokenizer(text_target=t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
    np.testing.assert_array_equal(counts, full)


def test_generated_ids_read_back_as_transformers_decodes_them(checkpoint):
    folder, config, tokenizer = checkpoint
    _, target = checkpoint_texts(folder, config, source_length=64, target_length=64)
    rows = [tokenizer(text_target=t)["input_ids"] for t in TEXTS]
    width = max(len(r) for r in rows) + 2
    # What decoding returns: the tokens after the start, padding after the end token.
    generated = np.full([len(rows), width], tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        generated[i, : len(row)] = row
    generated[0, len(rows[0]) + 1] = rows[3][0]  # a token after the end is not read
    texts = [t.decode() for t in target.detokenize(tf.constant(generated)).numpy()]
    assert texts == [tokenizer.decode(r, skip_special_tokens=True) for r in rows]
    assert texts[0] == "a good film"


def test_a_checkpoint_of_another_kind_is_refused(tmp_path):
    config = transformers.PegasusConfig()
    with pytest.raises(TfhfError, match="a pegasus checkpoint: .* t5, mt5, bart, marian"):
        checkpoint_texts(tmp_path, config, source_length=8, target_length=8)
