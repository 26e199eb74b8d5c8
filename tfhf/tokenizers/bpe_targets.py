"""GPT-2's byte-level BPE as the target side of an encoder-decoder, in TensorFlow ops."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.tokenizers.bert_preprocessor import before_first
from tfhf.tokenizers.bpe import END_OF_TEXT, load_bpe, train_bpe
from tfhf.tokenizers.byte_level_bpe import ByteLevelBPE

PAD = "<pad>"


def train_target_bpe(targets: list[str], *, vocab_size: int, folder: Path):
    """A byte-level BPE trained on `targets`, with `<|endoftext|>` (start and end of every
    target) and `<pad>`, saved in `folder` as a GPT-2 tokenizer; returns it."""
    return train_bpe(targets, vocab_size=vocab_size, folder=folder, pad_token=PAD)


class BpeTargets(tf.Module):
    """Target text -> decoder ids -> text, with the interface the sequence-to-sequence
    pipeline, decoding and export use (the one `BertPreprocessor` offers): a target is
    `<|endoftext|> tokens <|endoftext|>` cut to `max_seq_length`; `cls_id` and `sep_id`
    (start and end) are both `<|endoftext|>`, `pad_id` is `<pad>`.

    Args:
      folder: A tokenizer saved by `train_target_bpe`.
      max_seq_length: Longest target, the start and end tokens included.
      asset_dir: Where the in-graph tokenizer writes its tables (see `ByteLevelBPE`); a new
        temporary folder if None.

    Example:
      >>> folder = Path(tempfile.mkdtemp())
      >>> _ = train_target_bpe(["a small tool", "a small library"] * 20, vocab_size=270,
      ...                      folder=folder)
      >>> targets = BpeTargets(folder, max_seq_length=8)
      >>> ids = targets.tokenize(tf.constant(["a small tool"]))
      >>> targets.detokenize(ids.to_tensor()[:, 1:]).numpy()
      array([b'a small tool'], dtype=object)
    """

    def __init__(self, folder: Path, *, max_seq_length: int, asset_dir: Path | None = None):
        super().__init__(name="bpe_targets")
        tokenizer = load_bpe(folder)
        if tokenizer.pad_token != PAD or tokenizer.eos_token != END_OF_TEXT:
            raise TfhfError(f"{folder}: not a target tokenizer (no {PAD} and {END_OF_TEXT})")
        if max_seq_length < 3:
            raise TfhfError(f"max_seq_length must be at least 3, got {max_seq_length}")
        asset_dir = asset_dir or Path(tempfile.mkdtemp(prefix="tfhf-bpe-"))
        self.bpe = ByteLevelBPE.from_folder(folder, asset_dir=asset_dir)
        self.cls_id = self.sep_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)
        # Decoder-input dropout hides a token behind this id (BPE has no unknown token).
        self.unk_id = self.pad_id
        self.vocab_size = len(tokenizer)
        self.max_seq_length = max_seq_length

    def token_counts(self, texts: tf.Tensor) -> tf.Tensor:
        """Tokens per text before cutting, without the start and end tokens."""
        return self.bpe.tokenize(texts).row_lengths()

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids per text, `<|endoftext|> ... <|endoftext|>`, cut to `max_seq_length`."""
        ids = self.bpe.tokenize(texts)[:, : self.max_seq_length - 2]
        rows = ids.nrows()
        start = tf.fill([rows, 1], self.cls_id)
        end = tf.fill([rows, 1], self.sep_id)
        return tf.concat([start, ids, end], axis=1)

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Text from generated ids [batch, length]: the tokens before the first end token."""
        ids = tf.cast(ids, tf.int32)
        kept = before_first(ids, self.sep_id) & (ids != self.pad_id)
        return self.bpe.detokenize(tf.ragged.boolean_mask(ids, kept))
