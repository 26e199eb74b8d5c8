"""In-graph WordPiece tokenization (parity with the HF tokenizer) and the tf.data pipeline."""

import tfhf  # noqa: F401, I001  (selects the legacy Keras before TensorFlow loads)

from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
from transformers import BertTokenizerFast

from tfhf.tokenizers.bert_preprocessor import BertPreprocessor
from tfhf.data.pipeline import classification_dataset, padding_fraction
from tfhf.errors import TfhfError

_VOCAB = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] "
    "the a film movie was is not good bad great fun cafe naive plot act play fine "
    ". , ! ? ' - ##s ##ing ##ed ##ly stra ##ss ##e"
).split()
_WORDS = _VOCAB[5:22]
_MAX_SEQ_LENGTH = 16


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(_VOCAB) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def preprocessor(vocab_file):
    return BertPreprocessor(vocab_file, lower_case=True, max_seq_length=_MAX_SEQ_LENGTH)


def _ids(*tokens):
    return [_VOCAB.index(t) for t in tokens]


def _tokenize(preprocessor, texts):
    return preprocessor.tokenize(tf.constant(texts)).to_list()


def _texts(n, *, min_words, max_words, seed=0):
    """`n` distinct texts of in-vocabulary words, so that distinct texts have distinct ids."""
    rng = np.random.default_rng(seed)
    texts = []
    while len(texts) < n:
        text = " ".join(rng.choice(_WORDS, size=rng.integers(min_words, max_words + 1)))
        if text not in texts:
            texts.append(text)
    return texts


# --- tokenization ------------------------------------------------------------------------------


def test_tokenize_wraps_in_cls_sep_and_lower_cases(preprocessor):
    ids = _tokenize(preprocessor, ["The FILM was Good!", "Playing acted"])

    assert ids == [
        _ids("[CLS]", "the", "film", "was", "good", "!", "[SEP]"),
        _ids("[CLS]", "play", "##ing", "act", "##ed", "[SEP]"),
    ]


def test_without_lower_case_capitals_are_unknown(vocab_file):
    cased = BertPreprocessor(vocab_file, lower_case=False, max_seq_length=_MAX_SEQ_LENGTH)

    assert _tokenize(cased, ["The film"]) == [_ids("[CLS]", "[UNK]", "film", "[SEP]")]


@pytest.mark.parametrize("max_seq_length", [3, 5, 8])
def test_tokenize_truncates_to_max_seq_length(vocab_file, max_seq_length):
    pre = BertPreprocessor(vocab_file, lower_case=True, max_seq_length=max_seq_length)
    # 7 words, 9 wordpieces: truncation counts wordpieces.
    text = "playing acted the film was not fun"

    (ids,) = _tokenize(pre, [text])

    wordpieces = _ids("play", "##ing", "act", "##ed", "the", "film", "was", "not", "fun")
    assert len(ids) == max_seq_length
    assert ids == _ids("[CLS]") + wordpieces[: max_seq_length - 2] + _ids("[SEP]")


def test_call_packs_padded_inputs(preprocessor):
    features = preprocessor(tf.constant(["a film", "the plot was not fun"]))

    ids = features["input_ids"].numpy()
    assert ids.shape == (2, 7)
    np.testing.assert_array_equal(
        features["attention_mask"].numpy(), (ids != preprocessor.pad_id).astype(np.int32)
    )
    np.testing.assert_array_equal(features["token_type_ids"].numpy(), np.zeros_like(ids))


@pytest.mark.parametrize(
    "vocab, max_seq_length, expected",
    [(["[CLS]", "[SEP]", "[UNK]", "a"], 8, "[PAD]"), (_VOCAB, 2, "at least 3")],
)
def test_bad_vocabulary_or_length_is_a_clear_error(tmp_path, vocab, max_seq_length, expected):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")

    with pytest.raises(TfhfError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        BertPreprocessor(path, lower_case=True, max_seq_length=max_seq_length)


_PARITY_TEXTS = [
    "The film was GOOD!",
    "a naïve café, not bad.",
    "Playing  acted plots?",
    "it's a fine-ish movie...",
    "Él NO es Fún",
    "the\tfilm\nwas   great",
    "unknown words zzz qq",
    "",
    "the film was good the film was bad the plot is not fun the movie",
]


@pytest.mark.parametrize("max_seq_length", [8, 64])
def test_ids_match_the_huggingface_tokenizer(vocab_file, max_seq_length):
    pre = BertPreprocessor(vocab_file, lower_case=True, max_seq_length=max_seq_length)
    hf = BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True)

    expected = hf(_PARITY_TEXTS, truncation=True, max_length=max_seq_length)["input_ids"]

    assert _tokenize(pre, _PARITY_TEXTS) == expected


@pytest.mark.parametrize("text", ["Straße", "ﬁne film", "fun…", "Ｆilm"])
def test_compatibility_characters_match_the_huggingface_tokenizer(vocab_file, text):
    pre = BertPreprocessor(vocab_file, lower_case=True, max_seq_length=_MAX_SEQ_LENGTH)
    hf = BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True)

    assert _tokenize(pre, [text]) == hf([text])["input_ids"]


# --- classification_dataset ---------------------------------------------------------------------


def _decode(preprocessor, texts, dataset):
    """(text index, label) per example of `dataset`, plus the batches' features."""
    by_ids = {tuple(ids): i for i, ids in enumerate(_tokenize(preprocessor, texts))}
    assert len(by_ids) == len(texts)
    seen, batches = [], []
    for features, labels in dataset:
        features = {k: v.numpy() for k, v in features.items()}
        batches.append(features)
        for row, mask, label in zip(
            features["input_ids"], features["attention_mask"], labels.numpy(), strict=True
        ):
            seen.append((by_ids[tuple(row[mask == 1].tolist())], int(label)))
    return seen, batches


def test_evaluation_yields_every_example_once_with_its_label(preprocessor):
    texts = _texts(37, min_words=1, max_words=20)
    labels = np.arange(len(texts)) % 3
    batch_size = 4

    dataset = classification_dataset(
        texts, labels, preprocessor=preprocessor, batch_size=batch_size, training=False
    )
    seen, batches = _decode(preprocessor, texts, dataset)

    assert sorted(seen) == [(i, int(labels[i])) for i in range(len(texts))]
    for features in batches:
        ids, mask = features["input_ids"], features["attention_mask"]
        assert 1 <= ids.shape[0] <= batch_size
        assert ids.shape[1] <= _MAX_SEQ_LENGTH
        np.testing.assert_array_equal(mask, (ids != preprocessor.pad_id).astype(mask.dtype))
        # Padded only to the batch's longest row: the last column is not all padding.
        assert mask[:, -1].any()
        np.testing.assert_array_equal(features["token_type_ids"], 0)


def test_bucketing_pads_less_than_fixed_or_plain_dynamic_padding(preprocessor):
    # Short and long texts alternate, so batching them in order pads nearly every batch to its
    # long member; bucketing by length should group like with like.
    short = _texts(24, min_words=1, max_words=3, seed=1)
    long = _texts(24, min_words=11, max_words=14, seed=2)
    texts = [t for pair in zip(short, long, strict=True) for t in pair]
    batch_size = 4
    lengths = np.array([len(ids) for ids in _tokenize(preprocessor, texts)])

    dataset = classification_dataset(
        texts,
        np.zeros(len(texts)),
        preprocessor=preprocessor,
        batch_size=batch_size,
        training=False,
    )
    bucketed = padding_fraction(dataset)

    pad_to_max = 1 - lengths.sum() / (len(texts) * _MAX_SEQ_LENGTH)
    in_order = [lengths[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    plain_dynamic = 1 - lengths.sum() / sum(len(b) * b.max() for b in in_order)
    assert bucketed < plain_dynamic < pad_to_max


def _training_order(preprocessor, texts, *, seed, epochs, batch_size):
    dataset = classification_dataset(
        texts,
        np.zeros(len(texts)),
        preprocessor=preprocessor,
        batch_size=batch_size,
        training=True,
        seed=seed,
    )
    seen, _ = _decode(preprocessor, texts, dataset.take(epochs * len(texts) // batch_size))
    return [i for i, _ in seen]


def test_training_repeats_and_reshuffles(preprocessor):
    # All texts fall in one length bucket, so batches follow the shuffled stream exactly.
    texts = _texts(16, min_words=1, max_words=4)
    n = len(texts)

    order = _training_order(preprocessor, texts, seed=0, epochs=2, batch_size=4)

    assert len(order) == 2 * n
    assert Counter(order) == Counter({i: 2 for i in range(n)})
    first, second = order[:n], order[n:]
    assert sorted(first) == list(range(n))
    assert first != list(range(n))
    assert first != second


def test_training_order_depends_on_seed(preprocessor):
    texts = _texts(16, min_words=1, max_words=4)

    def order(seed):
        return _training_order(preprocessor, texts, seed=seed, epochs=1, batch_size=4)

    assert order(0) != order(1)
