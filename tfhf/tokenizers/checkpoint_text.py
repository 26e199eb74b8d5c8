"""The tokenizer of a sequence-to-sequence checkpoint (T5, BART, Marian) in TensorFlow ops,
with the interface the sequence-to-sequence pipeline, decoding and export use (the one
`BertPreprocessor` offers), so a SavedModel of such a model also takes and returns raw text.

T5 and Marian cut text with SentencePiece (TF Text's op, on the checkpoint's own model file)
and map the pieces to ids with the tokenizer's vocabulary; BART uses GPT-2's byte-level BPE
(`ByteLevelBPE`). The special tokens around a text are the ones the checkpoint's tokenizer
adds: T5 and Marian end a text with `</s>`, BART writes `<s> ... </s>`; a target starts with
the model's `decoder_start_token_id`, as transformers' `shift_tokens_right` makes it.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tensorflow_text as tf_text

from tfhf.errors import TfhfError
from tfhf.tokenizers.bert_preprocessor import before_first, pack_ids
from tfhf.tokenizers.byte_level_bpe import ByteLevelBPE

SENTENCEPIECE_SPACE = "\u2581"
# Where each kind's tokenizer keeps its SentencePiece models: (source, target).
_SENTENCEPIECE_FILES = {
    "t5": ("spiece.model", "spiece.model"),
    "marian": ("source.spm", "target.spm"),
}
SUPPORTED_TYPES = ("t5", "mt5", "bart", "marian")


class _SentencePieces(tf.Module):
    """Text -> pieces (SentencePiece) -> ids (the checkpoint's vocabulary), and back."""

    def __init__(self, model_file: Path, vocab: dict[str, int], unk_id: int):
        super().__init__(name="sentencepieces")
        self.pieces = tf_text.SentencepieceTokenizer(
            model=model_file.read_bytes(), out_type=tf.string
        )
        tokens = tf.constant(list(vocab))
        ids = tf.constant(list(vocab.values()), tf.int64)
        self.piece_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tokens, ids), default_value=unk_id
        )
        self.id_to_piece = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(ids, tokens), default_value=""
        )

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        pieces = self.pieces.tokenize(texts)
        return tf.cast(tf.ragged.map_flat_values(self.piece_to_id.lookup, pieces), tf.int32)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        # SentencePiece's own decoding of pieces: word boundaries are the U+2581 marks.
        pieces = tf.ragged.map_flat_values(self.id_to_piece.lookup, tf.cast(ids, tf.int64))
        text = tf.strings.reduce_join(pieces, axis=-1)
        text = tf.strings.regex_replace(text, SENTENCEPIECE_SPACE, " ")
        return tf.strings.regex_replace(text, "^ ", "")


class CheckpointText(tf.Module):
    """Raw text -> a checkpoint's ids (a source, or a target with its start token) -> text.

    Build it with `checkpoint_texts`, which reads the checkpoint's tokenizer.

    Args:
      pieces: Text -> ids without special tokens (`tokenize`) and back (`detokenize`).
      prefix: Ids written before a text's own (BART's `<s>`).
      end_id: The id after it (`</s>`); the end of generation for a target.
      start_id: For a target, the decoder's first input (`decoder_start_token_id`); None
        for a source.
      pad_id, unk_id, vocab_size: The checkpoint's.
      special_ids: Ids that generated text leaves out.
      max_seq_length: Longest sequence, special tokens included.

    Example:
      >>> import tempfile, sentencepiece, transformers
      >>> folder = Path(tempfile.mkdtemp())
      >>> sentencepiece.SentencePieceTrainer.train(
      ...     sentence_iterator=iter(["a small tool", "a small library"] * 50),
      ...     model_prefix=str(folder / "spiece"), vocab_size=20, pad_id=0, eos_id=1,
      ...     unk_id=2, bos_id=-1, hard_vocab_limit=False, minloglevel=2)
      >>> transformers.T5Tokenizer(str(folder / "spiece.model"), extra_ids=0,
      ...                          legacy=True).save_pretrained(folder)
      ('...
      >>> config = transformers.T5Config(vocab_size=20, decoder_start_token_id=0)
      >>> source, target = checkpoint_texts(folder, config, source_length=32, target_length=32)
      >>> ids = target.tokenize(tf.constant(["a small tool"])).to_tensor()
      >>> int(ids[0, 0]), int(ids[0, -1])  # the decoder's start, then </s>
      (0, 1)
      >>> target.detokenize(ids[:, 1:]).numpy()
      array([b'a small tool'], dtype=object)
    """

    def __init__(
        self,
        pieces: tf.Module,
        *,
        prefix: list[int],
        end_id: int,
        start_id: int | None,
        pad_id: int,
        unk_id: int,
        vocab_size: int,
        special_ids: list[int],
        max_seq_length: int,
    ):
        super().__init__(name="checkpoint_text")
        fixed = len(prefix) + 1 + (start_id is not None)
        if max_seq_length <= fixed:
            raise TfhfError(
                f"max_seq_length must exceed the {fixed} special tokens, got {max_seq_length}"
            )
        self.pieces = pieces
        self.prefix = [start_id, *prefix] if start_id is not None else list(prefix)
        # The first token of a sequence: a target's start (what decoding begins with).
        self.cls_id = self.prefix[0] if self.prefix else end_id
        self.sep_id, self.pad_id, self.unk_id = end_id, pad_id, unk_id
        self.vocab_size = vocab_size
        self.special_ids = sorted(set(special_ids) | {pad_id, end_id, *self.prefix})
        self.max_seq_length = max_seq_length

    def token_counts(self, texts: tf.Tensor) -> tf.Tensor:
        """Tokens per text before any truncation, special tokens not counted."""
        return tf.cast(self.pieces.tokenize(texts).row_lengths(), tf.int32)

    def tokenize(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Ids per text, special tokens included, cut to `max_seq_length`."""
        ids = self.pieces.tokenize(texts)
        ids = ids[:, : self.max_seq_length - len(self.prefix) - 1]
        rows = ids.nrows()
        parts = [tf.fill([rows, 1], i) for i in self.prefix]
        return tf.concat([*parts, ids, tf.fill([rows, 1], self.sep_id)], axis=1)

    def pack(self, ids) -> dict[str, tf.Tensor]:
        """Model inputs from ids (ragged, or dense padded with `pad_id`)."""
        return pack_ids(ids, self.pad_id)

    def __call__(self, texts: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.pack(self.tokenize(texts))

    def detokenize(self, ids: tf.Tensor) -> tf.Tensor:
        """Text from generated ids [batch, length]: the tokens before the first end token,
        special tokens left out."""
        ids = tf.cast(ids, tf.int32)
        special = tf.reduce_any(ids[..., None] == tf.constant(self.special_ids), axis=-1)
        kept = before_first(ids, self.sep_id) & ~special
        return self.pieces.detokenize(tf.ragged.boolean_mask(ids, kept))


def _kind(config) -> str:
    kind = config.model_type
    if kind not in SUPPORTED_TYPES:
        raise TfhfError(
            f"a {kind} checkpoint: sequence-to-sequence checkpoints of type "
            f"{', '.join(SUPPORTED_TYPES)} are supported"
        )
    return "t5" if kind == "mt5" else kind


def checkpoint_texts(
    folder: Path,
    config,
    *,
    source_length: int,
    target_length: int,
    asset_dir: Path | None = None,
) -> tuple[CheckpointText, CheckpointText]:
    """(source, target) tokenizers of the checkpoint in `folder`, whose model config is
    `config`: sources of at most `source_length` ids, targets of `target_length` (the start
    token included). `asset_dir` receives BART's BPE tables (see `ByteLevelBPE`)."""
    import tempfile

    from transformers import AutoTokenizer

    kind = _kind(config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    common = {
        "end_id": int(tokenizer.eos_token_id),
        "pad_id": int(tokenizer.pad_token_id),
        "unk_id": int(tokenizer.unk_token_id),
        "vocab_size": int(config.vocab_size),
        "special_ids": [int(i) for i in tokenizer.all_special_ids],
    }
    start = int(config.decoder_start_token_id)
    if kind == "bart":
        bpe = ByteLevelBPE.from_folder(
            folder, asset_dir=asset_dir or Path(tempfile.mkdtemp(prefix="tfhf-bpe-"))
        )
        prefix = [int(tokenizer.bos_token_id)]
        sides = (bpe, bpe)
    else:
        names = _SENTENCEPIECE_FILES[kind]
        missing = sorted({n for n in names if not (folder / n).is_file()})
        if missing:
            raise TfhfError(f"model folder {folder}: no {' or '.join(missing)} (its tokenizer)")
        vocab = tokenizer.get_vocab()
        if kind == "marian" and (folder / "target_vocab.json").is_file():
            raise TfhfError(f"model folder {folder}: separate source and target vocabularies")
        prefix = []
        # T5's two sides share one model: one SentencePiece op and one pair of tables.
        models = {n: _SentencePieces(folder / n, vocab, common["unk_id"]) for n in set(names)}
        sides = tuple(models[n] for n in names)
    source = CheckpointText(
        sides[0], prefix=prefix, start_id=None, max_seq_length=source_length, **common
    )
    target = CheckpointText(
        sides[1], prefix=prefix, start_id=start, max_seq_length=target_length, **common
    )
    return source, target
