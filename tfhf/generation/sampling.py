"""Seeded sampling that draws fresh noise at every step, reproducibly and inside XLA."""

from __future__ import annotations

import tensorflow as tf
from transformers.generation.tf_logits_process import TFLogitsProcessor

BLOCKED = -1e9  # finite, so no step ever sees inf - inf


class SeededSampling(TFLogitsProcessor):
    """Temperature, top-k and top-p filtering, then a Gumbel-max draw, as a logits processor.

    transformers' TF sampling reuses one stateless seed at every step when given a
    seed, which correlates the draws and sends text into loops; without a seed it
    is not reproducible. This processor draws its noise from `(seed, step)`, so every
    step is fresh and the same seed gives the same text. It returns scores where
    only the drawn token is not blocked, so a greedy decoder then picks exactly it.

    The settings are variables: changing the seed or the sampling controls reuses
    the compiled program instead of compiling a new one.
    """

    def __init__(self):
        self.seed = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.temperature = tf.Variable(1.0, dtype=tf.float32, trainable=False)
        self.top_k = tf.Variable(0, dtype=tf.int32, trainable=False)
        self.top_p = tf.Variable(1.0, dtype=tf.float32, trainable=False)

    def set(self, *, seed: int, temperature: float, top_k: int, top_p: float) -> None:
        self.seed.assign(seed)
        self.temperature.assign(temperature)
        self.top_k.assign(top_k)
        self.top_p.assign(top_p)

    def __call__(self, input_ids: tf.Tensor, scores: tf.Tensor, cur_len) -> tf.Tensor:
        scores = filter_scores(
            scores, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p
        )
        step_seed = tf.stack([self.seed, tf.cast(cur_len, tf.int32)])
        uniform = tf.random.stateless_uniform(
            tf.shape(scores), seed=step_seed, minval=1e-20, maxval=1.0
        )
        choice = gumbel_choice(scores, uniform)
        return tf.where(tf.one_hot(choice, tf.shape(scores)[-1]) > 0, 0.0, BLOCKED)


def filter_scores(scores: tf.Tensor, *, temperature, top_k, top_p) -> tf.Tensor:
    """Scores [batch, vocab] divided by the temperature, with every token outside the top-k
    and the top-p nucleus blocked. The controls are scalars or one value per row; top_k 0
    and top_p 1.0 switch their filter off."""
    scores = tf.cast(scores, tf.float32)
    rows, vocab = tf.shape(scores)[0], tf.shape(scores)[-1]
    temperature = tf.broadcast_to(tf.cast(temperature, tf.float32), [rows])
    top_k = tf.broadcast_to(tf.cast(top_k, tf.int32), [rows])
    top_p = tf.broadcast_to(tf.cast(top_p, tf.float32), [rows])
    scores = scores / temperature[:, None]
    ranked = tf.sort(scores, direction="DESCENDING", axis=-1)
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth = tf.gather(ranked, k - 1, batch_dims=1)
    scores = tf.where(scores < kth[:, None], BLOCKED, scores)
    # Nucleus: keep the likeliest tokens until their mass reaches top_p (at least one).
    ranked = tf.sort(scores, direction="DESCENDING", axis=-1)
    mass_before = tf.cumsum(tf.nn.softmax(ranked, axis=-1), axis=-1, exclusive=True)
    kept = tf.reduce_sum(tf.cast(mass_before < top_p[:, None], tf.int32), axis=-1)
    threshold = tf.gather(ranked, tf.maximum(kept, 1) - 1, batch_dims=1)
    return tf.where(scores < threshold[:, None], BLOCKED, scores)


def gumbel_choice(scores: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """The token each row draws from softmax(scores), given uniform noise in (0, 1]
    (the Gumbel-max trick: the noise decides, so the same noise gives the same token)."""
    return tf.argmax(scores - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32)


def hashed_uniform(seeds: tf.Tensor, step: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Uniform noise in (0, 1], [len(seeds), size]: a hash of (row's seed, step, column).

    The same bits come out of plain TensorFlow kernels and of XLA, so an XLA-compiled
    decoder draws the tokens the uncompiled one draws; `tf.random`'s stateless ops do not
    (their XLA kernels give other numbers for the same seed).

    Example:
      >>> a = hashed_uniform(tf.constant([3, 4]), tf.constant(0), 5)
      >>> b = tf.function(hashed_uniform, jit_compile=True)(
      ...     tf.constant([3, 4]), tf.constant(0), 5)
      >>> bool(tf.reduce_all(a == b)), bool(tf.reduce_all(a[0] != a[1]))
      (True, True)
    """

    def word(value):
        return tf.constant(value, tf.uint32)

    def mix(x):  # MurmurHash3's finaliser: every input bit moves every output bit
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, word(16)))
        x = x * word(0x85EBCA6B)
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, word(13)))
        x = x * word(0xC2B2AE35)
        return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, word(16)))

    rows = mix(
        tf.bitwise.bitwise_xor(
            tf.cast(seeds, tf.uint32) * word(0x9E3779B1),
            mix(tf.cast(step, tf.uint32) + word(0x68E31DA4)),
        )
    )
    columns = tf.range(size, dtype=tf.int32)
    x = mix(
        tf.bitwise.bitwise_xor(
            rows[:, None], tf.cast(columns, tf.uint32)[None, :] * word(0xC2B2AE3D)
        )
    )
    # The top 24 bits, which a float32 holds exactly; + 1 keeps 0 out (log(0) in Gumbel).
    return (tf.cast(tf.bitwise.right_shift(x, word(8)), tf.float32) + 1.0) / float(1 << 24)
