"""WordPiece tokenization in TensorFlow ops, one object for tf.data and the SavedModel."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_text as tf_text

from tfhf.errors import TfhfError


def read_vocab(vocab_file: str | Path) -> list[str]:
    """The tokens of a WordPiece `vocab.txt`, one per line, in id order."""
    with open(vocab_file, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def pack_ids(ids, pad_id: int) -> dict[str, tf.Tensor]:
    """Model inputs from token ids (ragged, or dense padded with `pad_id`), padded with
    `pad_id` to the longest row. A tokenizer never writes its padding id, so the padding id
    marks padding exactly."""
    if isinstance(ids, tf.RaggedTensor):
        ids = ids.to_tensor(default_value=pad_id)
    return {
        "input_ids": ids,
        "attention_mask": tf.cast(tf.not_equal(ids, pad_id), tf.int32),
        "token_type_ids": tf.zeros_like(ids),
    }


def before_first(ids: tf.Tensor, end_id: int) -> tf.Tensor:
    """True at the positions of `ids` [batch, length] before the first `end_id` of each row
    (all of a row that has none): the part of a generated sequence that is read."""
    return tf.cumsum(tf.cast(tf.equal(ids, end_id), tf.int32), axis=1) == 0


class BertPreprocessor(tf.Module):
    """Raw text -> BERT inputs, entirely in TensorFlow ops.

    Training maps it over a `tf.data` pipeline and the export calls it inside the
    serving signature, so a served model can never tokenize differently from the
    one that was trained. The vocabulary file becomes an asset of any SavedModel
    this module is part of.

    Args:
      vocab_file: WordPiece vocabulary, one token per line.
      lower_case: Lower-case and strip accents first (uncased models).
      max_seq_length: Longest sequence produced, `[CLS]` and `[SEP]` included.

    Example:
      >>> import tempfile
      >>> vocab = Path(tempfile.mkdtemp()) / "vocab.txt"
      >>> tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "fine", "film", "##s"]
      >>> _ = vocab.write_text("\\n".join(tokens))
      >>> pre = BertPreprocessor(vocab, lower_case=True, max_seq_length=64)
      >>> pre(tf.constant(["A fine film", "films"]))["input_ids"].numpy().tolist()
      [[2, 4, 5, 6, 3], [2, 6, 7, 3, 0]]
    """

    def __init__(self, vocab_file: str | Path, *, lower_case: bool, max_seq_length: int):
        super().__init__(name="bert_preprocessor")
        vocab = read_vocab(vocab_file)
        missing = [t for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]") if t not in vocab]
        if missing:
            raise TfhfError(f"vocabulary {vocab_file} lacks the special tokens {missing}")
        if max_seq_length < 3:
            raise TfhfError(f"max_seq_length must be at least 3, got {max_seq_length}")
        self.vocab_size = len(vocab)
        self.cls_id = vocab.index("[CLS]")
        self.sep_id = vocab.index("[SEP]")
        self.pad_id = vocab.index("[PAD]")
        self.unk_id = vocab.index("[UNK]")
        self.max_seq_length = max_seq_length
        self.lower_case = lower_case
        # Normalisation is done in `normalize`, not by tf-text's lower_case option: that one
        # applies NFKC case folding (ß -> ss, ﬁ -> fi), which HuggingFace's BERT tokenizer
        # does not, and the tokenizer saved beside the model must agree with this one.
        self.tokenizer = tf_text.BertTokenizer(
            str(vocab_file), lower_case=False, token_out_type=tf.int32
        )

    def normalize(self, texts: tf.Tensor) -> tf.Tensor:
        """BERT's text clean-up: drop control characters, unify spaces, and for uncased
        models lower-case and strip accents (NFD, then drop combining marks)."""
        texts = tf.strings.regex_replace(texts, r"[^\P{C}\t\n\r]|\x{FFFD}", "")
        texts = tf.strings.regex_replace(texts, r"\p{Zs}", " ")
        if self.lower_case:
            texts = tf.strings.lower(texts, encoding="utf-8")
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        return texts

    def _wordpieces(self, texts: tf.Tensor) -> tf.RaggedTensor:
        return self.tokenizer.tokenize(self.normalize(texts)).merge_dims(-2, -1)

    def token_counts(self, texts: tf.Tensor) -> tf.Tensor:
        """Word pieces per text before any truncation, `[CLS]` and `[SEP]` not counted."""
        return tf.cast(self._wordpieces(texts).row_lengths(), tf.int32)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Token ids per text, `[CLS] ... [SEP]`, truncated to `max_seq_length`.

        Args:
          texts: `tf.string` tensor of shape [batch].

        Returns:
          An int32 `RaggedTensor` of shape [batch, (tokens)].
        """
        wordpieces = self._wordpieces(texts)[:, : self.max_seq_length - 2]
        ids, _ = tf_text.combine_segments(
            [wordpieces], start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id
        )
        return ids

    def pack(self, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """Model inputs from token ids, padded with `[PAD]` to the longest row.

        Args:
          ids: int32 ids, either ragged [batch, (tokens)] or dense [batch, length]
            already padded with `pad_id`.
        """
        return pack_ids(ids, self.pad_id)

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        """`pack(tokenize(texts))`: a batch of raw strings to padded model inputs."""
        return self.pack(self.tokenize(texts))

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Text from token ids [batch, length]: the pieces up to the first `[SEP]`, joined into
        words, special tokens dropped, no space before punctuation that closes a phrase.

        The text is lower-cased for an uncased vocabulary: the model writes what it reads.
        """
        ids = tf.cast(ids, tf.int32)
        kept = before_first(ids, self.sep_id) & (ids != self.pad_id) & (ids != self.cls_id)
        pieces = tf.ragged.boolean_mask(ids, kept)
        words = self.tokenizer.detokenize(pieces)
        text = tf.strings.reduce_join(words, axis=-1, separator=" ")
        text = tf.strings.regex_replace(text, r" ([.,;:!?)\]}%])", r"\1")
        return tf.strings.regex_replace(text, r"([(\[{]) ", r"\1")
