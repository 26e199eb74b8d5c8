"""BERT's masked-language-model corruption, in TensorFlow ops for tf.data."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MaskingRule:
    """What to hide and how.

    Attributes:
      probability: Chance that a token (or, with whole-word masking, a word) is chosen.
      mask_id: The `[MASK]` id; 80% of chosen tokens become it, 10% a random token,
        10% stay as they are (all are predicted).
      special_ids: Ids never chosen (`[CLS]`, `[SEP]`, `[PAD]`, ...).
      vocab_size: Ids are below this.
      continues_word: For whole-word masking, one flag per id: True for word pieces that
        continue the previous token's word (`##...`). None masks token by token.
    """

    probability: float
    mask_id: int
    special_ids: tuple[int, ...]
    vocab_size: int
    continues_word: tuple[bool, ...] | None = None

    @classmethod
    def for_vocabulary(
        cls,
        vocab: dict[str, int],
        *,
        probability: float,
        mask_id: int,
        special_ids,
        whole_words: bool = False,
    ) -> MaskingRule:
        """The rule for a WordPiece vocabulary (token -> id); with `whole_words`, a token
        starting with `##` continues the word before it.

        Example:
          >>> vocab = {"[PAD]": 0, "[MASK]": 1, "play": 2, "##ing": 3}
          >>> rule = MaskingRule.for_vocabulary(
          ...     vocab, probability=0.15, mask_id=1, special_ids=[1, 0], whole_words=True)
          >>> rule.special_ids, rule.continues_word
          ((0, 1), (False, False, False, True))
        """
        size = max(vocab.values()) + 1
        continues = None
        if whole_words:
            flags = [False] * size
            for token, i in vocab.items():
                flags[i] = token.startswith("##")
            continues = tuple(flags)
        return cls(
            probability=probability,
            mask_id=mask_id,
            special_ids=tuple(sorted(set(special_ids))),
            vocab_size=size,
            continues_word=continues,
        )

    def replacement_ids(self) -> np.ndarray:
        """The ids a chosen token may be swapped for: every id but the special ones."""
        keep = np.ones(self.vocab_size, bool)
        keep[list(self.special_ids)] = False
        return np.flatnonzero(keep).astype(np.int32)


def mask_tokens(ids: tf.Tensor, rule: MaskingRule, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(corrupted ids, chosen) for one sequence of ids [length], drawn from `seed` (shape [2]).

    `chosen` is a bool [length] marking the tokens the model must predict.
    """
    ids = tf.convert_to_tensor(ids, tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    special = tf.reduce_any(
        tf.equal(ids[:, None], tf.constant(rule.special_ids, tf.int32)[None, :]), axis=1
    )
    draw = tf.random.stateless_uniform(tf.shape(ids), seed=seeds[0])
    if rule.continues_word is not None:
        # One draw per word: each token takes the draw of the token that starts its word.
        continues = tf.gather(tf.constant(rule.continues_word, tf.bool), ids) & ~special
        word = tf.cumsum(tf.cast(~continues, tf.int32)) - 1
        draw = tf.gather(tf.boolean_mask(draw, ~continues), tf.maximum(word, 0))
    chosen = (draw < rule.probability) & ~special
    action = tf.random.stateless_uniform(tf.shape(ids), seed=seeds[1])
    replacements = tf.constant(rule.replacement_ids())
    random_ids = tf.gather(
        replacements,
        tf.random.stateless_uniform(
            tf.shape(ids), seed=seeds[2], maxval=tf.size(replacements), dtype=tf.int32
        ),
    )
    corrupted = tf.where(chosen & (action < 0.8), rule.mask_id, ids)
    corrupted = tf.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, corrupted)
    return corrupted, chosen
