"""Seeded sampling that draws fresh noise at every step, reproducibly and inside XLA."""

from __future__ import annotations

import tensorflow as tf
from transformers.generation.tf_logits_process import TFLogitsProcessor

_BLOCKED = -1e9  # finite, so no step ever sees inf - inf


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
        scores = tf.cast(scores, tf.float32) / self.temperature
        vocab = tf.shape(scores)[-1]
        ranked = tf.sort(scores, direction="DESCENDING", axis=-1)
        k = tf.where(self.top_k > 0, tf.minimum(self.top_k, vocab), vocab)
        kth = tf.gather(ranked, tf.fill([tf.shape(scores)[0]], k - 1), batch_dims=1)
        scores = tf.where(scores < kth[:, None], _BLOCKED, scores)
        # Nucleus: keep the likeliest tokens until their mass reaches top_p (at least one).
        ranked = tf.sort(scores, direction="DESCENDING", axis=-1)
        mass_before = tf.cumsum(tf.nn.softmax(ranked, axis=-1), axis=-1, exclusive=True)
        kept = tf.reduce_sum(tf.cast(mass_before < self.top_p, tf.int32), axis=-1)
        threshold = tf.gather(ranked, tf.maximum(kept, 1) - 1, batch_dims=1)
        scores = tf.where(scores < threshold[:, None], _BLOCKED, scores)
        step_seed = tf.stack([self.seed, tf.cast(cur_len, tf.int32)])
        uniform = tf.random.stateless_uniform(
            tf.shape(scores), seed=step_seed, minval=1e-20, maxval=1.0
        )
        choice = tf.argmax(
            scores - tf.math.log(-tf.math.log(uniform)), axis=-1, output_type=tf.int32
        )
        return tf.where(tf.one_hot(choice, vocab) > 0, 0.0, _BLOCKED)
