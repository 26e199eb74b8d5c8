"""tf.data pipelines: in-graph tokenization, length bucketing and dynamic padding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfhf.config import SHUFFLE_BUFFER
from tfhf.data.masking import MaskingRule, mask_tokens
from tfhf.data.token_cache import Shard
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor

# Texts are tokenized a block at a time: the tokenizer's per-call cost dominates on short texts.
_TOKENIZE_BLOCK = 256


def bucket_boundaries(max_seq_length: int) -> list[int]:
    """Length-bucket upper bounds (exclusive) below `max_seq_length`.

    Narrow buckets for the short lengths most sentences have, wider ones above,
    so a batch is padded only to the longest sequence among similar lengths.
    """
    candidates = [8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512]
    return [b for b in candidates if b <= max_seq_length]


def _tokenize_block(preprocessor: BertPreprocessor, texts: tf.Tensor, labels: tf.Tensor):
    ids = preprocessor.tokenize(texts)
    return ids.to_tensor(default_value=preprocessor.pad_id), ids.row_lengths(), labels


def classification_dataset(
    texts: Sequence[str],
    labels: np.ndarray,
    *,
    preprocessor: BertPreprocessor,
    batch_size: int,
    training: bool,
    seed: int = 0,
    fixed_length: bool = False,
) -> tf.data.Dataset:
    """Batches of `(model inputs, label ids)` from raw texts.

    Order: shuffle -> repeat -> tokenize (in TF ops, parallel) -> bucket by
    length with dynamic padding -> prefetch. Training data repeats forever (use
    `steps_per_epoch`); evaluation data is read once, every example exactly once.

    Args:
      texts: The raw texts.
      labels: Integer label ids, one per text.
      preprocessor: Tokenizes and packs; the same object the export uses.
      batch_size: Examples per batch (the last batch of a bucket may be smaller).
      training: Shuffle (reshuffled each epoch) and repeat.
      seed: Shuffle seed.
      fixed_length: Pad every text to `max_seq_length` and batch in arrival order, dropping
        a last partial batch: static shapes, as TPUs need, at the cost of padding.
    """
    ds = tf.data.Dataset.from_tensor_slices((list(texts), np.asarray(labels, np.int32)))
    if training:
        ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(_TOKENIZE_BLOCK)
    ds = ds.map(
        lambda t, y: _tokenize_block(preprocessor, t, y),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,  # the same seed must give the same batches
    )
    # Rows come out padded to their block's longest; trimming restores each one's own length.
    ds = ds.unbatch().map(lambda ids, n, y: (ids[:n], y))
    if fixed_length:
        length = preprocessor.max_seq_length
        ds = ds.padded_batch(
            batch_size,
            padded_shapes=([length], []),
            padding_values=(preprocessor.pad_id, 0),
            drop_remainder=True,
        )
        ds = ds.map(lambda ids, y: (preprocessor.pack(ids), y))
        return ds.prefetch(tf.data.AUTOTUNE)
    boundaries = bucket_boundaries(preprocessor.max_seq_length)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda ids, y: tf.shape(ids)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=(preprocessor.pad_id, 0),
        no_padding=False,
    )
    ds = ds.map(lambda ids, y: (preprocessor.pack(ids), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def padding_fraction(ds: tf.data.Dataset, *, steps: int | None = None) -> float:
    """Share of positions in `ds`'s batches that are padding (attention mask 0)."""
    real = total = 0
    for step, (features, _) in enumerate(ds):
        if steps is not None and step >= steps:
            break
        mask = features["attention_mask"].numpy()
        real += int(mask.sum())
        total += mask.size
    return 1.0 - real / max(total, 1)


def token_chunks(
    source: np.ndarray | Sequence[Shard],
    size: int,
    *,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = SHUFFLE_BUFFER,
    min_length: int = 1,
) -> tf.data.Dataset:
    """Consecutive chunks of `size` ids of a token stream (an array, or the shards of a
    `tfhf.data.token_cache` entry, read from disk as needed), each shard's last chunk
    shorter, those under `min_length` left out.

    Training shuffles the shards' order and the chunks within a buffer of `shuffle_buffer`
    (all of them when there are fewer: then each epoch is a full shuffle), reshuffled each
    epoch, and repeats; otherwise the chunks come in order, once.
    """
    if isinstance(source, np.ndarray):
        ids = np.asarray(source, np.int32)
        whole = len(ids) - len(ids) % size
        chunks = tf.data.Dataset.from_tensor_slices(ids[:whole].reshape(-1, size))
        if len(ids) - whole >= min_length:
            chunks = chunks.concatenate(tf.data.Dataset.from_tensors(ids[whole:]))
        count = -(-len(ids) // size)
    else:
        paths = [s.path for s in source]
        tails = [s.tokens % size for s in source]
        count = sum(-(-s.tokens // size) for s in source)

        def read(path, tail, tokens):
            body = tf.data.FixedLengthRecordDataset(path, 4 * size, footer_bytes=4 * tail)
            last = tf.data.FixedLengthRecordDataset(
                path, 4 * tf.maximum(tail, 1), header_bytes=4 * (tokens - tail)
            ).filter(lambda _: tail >= min_length)
            return body.concatenate(last).map(lambda r: tf.io.decode_raw(r, tf.int32))

        shards = tf.data.Dataset.from_tensor_slices(
            (paths, np.asarray(tails, np.int64), np.asarray([s.tokens for s in source], np.int64))
        )
        if training:
            shards = shards.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        # Training draws from several shards at once, so the shuffle buffer holds blocks from
        # all over the corpus; otherwise the shards are read in order.
        chunks = shards.interleave(
            read,
            cycle_length=min(len(paths), 4) if training else 1,
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if training:
        chunks = chunks.shuffle(
            max(min(count, shuffle_buffer), 1), seed=seed, reshuffle_each_iteration=True
        ).repeat()
    return chunks


def lm_dataset(
    source: np.ndarray | Sequence[Shard],
    *,
    block_size: int,
    batch_size: int,
    pad_id: int,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> tf.data.Dataset:
    """Batches of `(input_ids, next-token labels, loss weights)` packed from one id stream
    (an array, or a tokenized corpus's shards: see `token_chunks`).

    The stream is cut into consecutive blocks of `block_size + 1` tokens; each block
    gives inputs `block[:-1]` and labels `block[1:]`. The last, shorter block (of each
    shard) is padded to full length with weight 0 on the padding, so every batch has the
    static shape [batch, block_size] and padding never counts in the loss.

    Example:
      >>> ds = lm_dataset(np.arange(1, 100), block_size=8, batch_size=4, pad_id=0,
      ...                 training=False)
      >>> inputs, labels, weights = next(iter(ds))
      >>> inputs[0].numpy().tolist(), labels[0].numpy().tolist()
      ([1, 2, 3, 4, 5, 6, 7, 8], [2, 3, 4, 5, 6, 7, 8, 9])
    """
    # A block of one token predicts nothing.
    ds = token_chunks(
        source,
        block_size + 1,
        training=training,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        min_length=2,
    )

    def to_example(block):
        n = tf.size(block) - 1
        pad = block_size - n
        inputs = tf.pad(block[:-1], [[0, pad]], constant_values=pad_id)
        labels = tf.pad(block[1:], [[0, pad]], constant_values=pad_id)
        weights = tf.pad(tf.ones([n], tf.float32), [[0, pad]])
        shape = [block_size]
        return (
            tf.ensure_shape(inputs, shape),
            tf.ensure_shape(labels, shape),
            tf.ensure_shape(weights, shape),
        )

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def mlm_dataset(
    source: np.ndarray | Sequence[Shard],
    *,
    max_seq_length: int,
    batch_size: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    rule: MaskingRule,
    training: bool,
    seed: int = 0,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> tf.data.Dataset:
    """Batches of `(features, labels, weights)` for masked-LM training, packed from one id stream
    (an array, or a tokenized corpus's shards: see `token_chunks`).

    The stream (documents separated by `[SEP]`) is cut into windows of
    `max_seq_length - 2` tokens, each wrapped as `[CLS] window [SEP]`; the last is
    padded. Masks are drawn inside the pipeline from `(seed, position in the stream
    of examples)`, so each epoch of training sees fresh masks (dynamic masking) while
    validation sees the same ones every time. `labels` are the original ids and
    `weights` mark the chosen tokens. For training, the weights of a batch are scaled
    to average 1, so that Keras' mean over all positions is the mean over chosen tokens.
    """
    ds = token_chunks(
        source, max_seq_length - 2, training=training, seed=seed, shuffle_buffer=shuffle_buffer
    )
    ds = ds.enumerate()

    def to_example(position, chunk):
        sequence = tf.concat([[cls_id], chunk, [sep_id]], axis=0)
        corrupted, chosen = mask_tokens(
            sequence, rule, tf.stack([tf.constant(seed, tf.int64), position])
        )
        pad = [[0, max_seq_length - tf.size(sequence)]]
        shape = [max_seq_length]
        features = {
            "input_ids": tf.ensure_shape(tf.pad(corrupted, pad, constant_values=pad_id), shape),
            "attention_mask": tf.ensure_shape(tf.pad(tf.ones_like(sequence), pad), shape),
            "token_type_ids": tf.zeros(shape, tf.int32),
        }
        labels = tf.ensure_shape(tf.pad(sequence, pad, constant_values=pad_id), shape)
        weights = tf.ensure_shape(tf.pad(tf.cast(chosen, tf.float32), pad), shape)
        return features, labels, weights

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training)
    if training:
        ds = ds.map(_average_one, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _average_one(features, labels, weights):
    """The batch's weights scaled to average 1, so that Keras' mean over all positions is
    the mean over the weighted ones."""
    total = tf.reduce_sum(weights)
    scale = tf.cast(tf.size(weights), tf.float32) / tf.maximum(total, 1.0)
    return features, labels, weights * scale


def seq2seq_dataset(
    sources: Sequence[str],
    targets: Sequence[str],
    *,
    source_preprocessor: BertPreprocessor,
    target_preprocessor,
    batch_size: int,
    training: bool,
    seed: int = 0,
    decoder_input_dropout: float = 0.0,
) -> tf.data.Dataset:
    """Batches of `(features, labels, weights)` for teacher-forced sequence-to-sequence
    training, from raw text pairs.

    Order: shuffle -> repeat -> tokenize both sides (in TF ops, parallel) -> bucket by
    source length with dynamic padding -> prefetch. A target is `[CLS] tokens [SEP]`, cut to
    the target preprocessor's length: the decoder reads it from `[CLS]` on
    (`decoder_input_ids`) and predicts it from the first token through `[SEP]` (`labels`).
    The target preprocessor is a `BertPreprocessor` or any tokenizer with its `tokenize`,
    `pad_id` and `unk_id` (`BpeTargets`: `<|endoftext|>` starts and ends a target).
    `weights` are 1 on real target tokens and 0 on padding; for training they are scaled
    to average 1 in each batch, so that the loss is the mean over real target tokens.

    With `decoder_input_dropout`, training replaces that share of the decoder's input tokens
    (never the first) by `[UNK]`, drawn from the seed and the batch's place in the stream:
    a decoder that cannot lean on its own previous tokens learns to read the source.
    """
    pad, target_pad = source_preprocessor.pad_id, target_preprocessor.pad_id
    ds = tf.data.Dataset.from_tensor_slices((list(sources), list(targets)))
    if training:
        ds = ds.shuffle(len(sources), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(_TOKENIZE_BLOCK)

    def tokenize(source, target):
        source_ids = source_preprocessor.tokenize(source)
        target_ids = target_preprocessor.tokenize(target)
        return (
            source_ids.to_tensor(default_value=pad),
            source_ids.row_lengths(),
            target_ids.to_tensor(default_value=target_pad),
            target_ids.row_lengths(),
        )

    ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch().map(lambda s, n, t, m: (s[:n], t[:m]))
    boundaries = bucket_boundaries(source_preprocessor.max_seq_length)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda source, target: tf.shape(source)[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=(pad, target_pad),
    )

    def to_example(source, target):
        features = source_preprocessor.pack(source)
        del features["token_type_ids"]
        decoder_input_ids = target[:, :-1]
        features["decoder_input_ids"] = decoder_input_ids
        # The first input is the start token, which is the padding id itself for T5 and
        # Marian (their decoder_start_token_id).
        first = tf.equal(tf.range(tf.shape(decoder_input_ids)[1]), 0)[None, :]
        features["decoder_attention_mask"] = tf.cast(
            tf.not_equal(decoder_input_ids, target_pad) | first, tf.int32
        )
        labels = target[:, 1:]
        return features, labels, tf.cast(tf.not_equal(labels, target_pad), tf.float32)

    ds = ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE)
    if training and decoder_input_dropout:
        unknown = target_preprocessor.unk_id

        def drop(position, example):
            features, labels, weights = example
            ids = features["decoder_input_ids"]
            noise = tf.random.stateless_uniform(
                tf.shape(ids), seed=tf.stack([tf.constant(seed, tf.int64), position])
            )
            dropped = (noise < decoder_input_dropout) & (tf.range(tf.shape(ids)[1]) > 0)
            dropped &= tf.not_equal(ids, pad)
            return (
                {**features, "decoder_input_ids": tf.where(dropped, unknown, ids)},
                labels,
                weights,
            )

        ds = ds.enumerate().map(drop, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.map(_average_one, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
