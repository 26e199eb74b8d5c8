"""BERT's masking rule: proportions, special tokens, whole words, and dynamic masks in tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfhf.data.masking import MaskingRule, mask_tokens
from tfhf.data.pipeline import mlm_dataset

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = (PAD, UNK, CLS, SEP, MASK)
VOCAB = 60


def rule(probability=0.15, continues_word=None) -> MaskingRule:
    return MaskingRule(
        probability=probability,
        mask_id=MASK,
        special_ids=SPECIAL,
        vocab_size=VOCAB,
        continues_word=continues_word,
    )


def test_rule_chooses_15_percent_and_splits_them_80_10_10():
    ids = np.random.default_rng(0).integers(5, VOCAB, size=40_000).astype(np.int32)
    corrupted, chosen = (t.numpy() for t in mask_tokens(ids, rule(), tf.constant([7, 1])))
    assert abs(chosen.mean() - 0.15) < 0.006
    masked = corrupted[chosen] == MASK
    kept = corrupted[chosen] == ids[chosen]
    swapped = ~masked & ~kept
    assert abs(masked.mean() - 0.8) < 0.02
    # A random replacement equals the original 1 time in 55: count those as swaps.
    assert abs(kept.mean() - 0.1 - 0.1 / 55) < 0.015
    assert abs(swapped.mean() - 0.1 + 0.1 / 55) < 0.015
    assert not np.isin(corrupted[chosen][swapped], SPECIAL).any()  # swaps are never special
    assert (corrupted[~chosen] == ids[~chosen]).all()


def test_same_seed_same_masks_other_seed_other_masks():
    ids = np.arange(5, VOCAB, dtype=np.int32)
    first = mask_tokens(ids, rule(0.5), tf.constant([1, 2]))[1].numpy()
    again = mask_tokens(ids, rule(0.5), tf.constant([1, 2]))[1].numpy()
    other = mask_tokens(ids, rule(0.5), tf.constant([1, 3]))[1].numpy()
    assert (first == again).all() and (first != other).any()


def test_special_tokens_are_never_chosen_or_changed():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, size=20_000).astype(np.int32)
    special = np.isin(ids, SPECIAL)
    assert special.sum() > 1000
    corrupted, chosen = (t.numpy() for t in mask_tokens(ids, rule(0.9), tf.constant([3, 3])))
    assert not chosen[special].any()
    assert (corrupted[special] == ids[special]).all()
    assert chosen[~special].mean() > 0.85


def test_whole_word_masking_takes_every_piece_of_a_word_or_none():
    continues = tuple(i >= 40 for i in range(VOCAB))  # ids 40+ are "##" pieces
    rng = np.random.default_rng(2)
    ids = [CLS]
    for _ in range(3000):
        ids += [int(rng.integers(5, 40))] + [
            int(i) for i in rng.integers(40, VOCAB, rng.integers(0, 4))
        ]
    ids = np.asarray(ids + [SEP], np.int32)
    _, chosen = (t.numpy() for t in mask_tokens(ids, rule(0.2, continues), tf.constant([5, 5])))
    word = np.cumsum(~np.asarray(continues)[ids]) - 1
    split_words = [w for w in np.unique(word) if 0 < chosen[word == w].mean() < 1]
    assert split_words == []
    starts = ~np.asarray(continues)[ids] & ~np.isin(ids, SPECIAL)
    assert abs(chosen[starts].mean() - 0.2) < 0.03  # words, not pieces, are drawn at 20%
    assert chosen[~starts].any()  # continuation pieces are masked with their word


def _batches(ds, n):
    return [tuple(t.numpy() if not isinstance(t, dict) else t for t in b) for b in ds.take(n)]


def test_mlm_dataset_packs_wraps_and_masks_afresh_each_epoch():
    ids = np.random.default_rng(3).integers(5, VOCAB, size=4 * 14).astype(np.int32)
    ds = mlm_dataset(
        ids,
        max_seq_length=16,
        batch_size=1,
        cls_id=CLS,
        sep_id=SEP,
        pad_id=PAD,
        rule=rule(0.3),
        training=True,
        seed=9,
    )
    seen: dict[bytes, list] = {}
    for features, labels, weights in ds.take(4 * 6):  # six epochs of four sequences
        labels = labels.numpy()[0]
        assert features["input_ids"].shape == (1, 16)
        assert labels[0] == CLS and labels[-1] == SEP
        np.testing.assert_allclose(weights.numpy().mean(), 1.0, rtol=1e-5)  # averaged to 1
        seen.setdefault(labels.tobytes(), []).append(features["input_ids"].numpy()[0])
    assert len(seen) == 4
    for masks in seen.values():
        assert len(masks) == 6
        assert len({m.tobytes() for m in masks}) > 1  # dynamic: a new mask per epoch


def test_mlm_validation_masks_repeat_and_only_padding_is_unattended():
    ids = np.random.default_rng(4).integers(5, VOCAB, size=30).astype(np.int32)
    ds = mlm_dataset(
        ids,
        max_seq_length=16,
        batch_size=4,
        cls_id=CLS,
        sep_id=SEP,
        pad_id=PAD,
        rule=rule(0.3),
        training=False,
    )
    first = [(f["input_ids"].numpy(), w.numpy()) for f, _, w in ds]
    again = [(f["input_ids"].numpy(), w.numpy()) for f, _, w in ds]
    for (a_ids, a_w), (b_ids, b_w) in zip(first, again, strict=True):
        assert (a_ids == b_ids).all() and (a_w == b_w).all()
    features, labels, weights = next(iter(ds))
    mask = features["attention_mask"].numpy()
    assert mask.sum(axis=1).tolist() == [16, 16, 4]  # 30 tokens = 14 + 14 + 2, each + 2
    assert set(np.unique(weights.numpy())) <= {0.0, 1.0}
    assert (weights.numpy()[mask == 0] == 0).all() and (labels.numpy()[mask == 0] == PAD).all()
