"""Losses tf-keras lacks."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class SmoothedCrossEntropy(tf_keras.losses.Loss):
    """Cross-entropy of logits against integer labels, with label smoothing: the target
    puts `1 - smoothing` on the label and `smoothing` spread evenly over all classes.

    Per position, `(1 - smoothing) * -log p(label) + smoothing * mean over classes of
    -log p(class)`. Keras' sample weights then mask and average the positions, as for
    `SparseCategoricalCrossentropy` (which has no smoothing).

    Example:
      >>> loss = SmoothedCrossEntropy(0.1)
      >>> logits = tf.constant([[2.0, 0.0, 0.0]])
      >>> round(float(loss(tf.constant([0]), logits)), 4)
      0.3729
    """

    def __init__(self, smoothing: float, name: str = "smoothed_cross_entropy"):
        super().__init__(name=name)
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32), axis=-1)
        # Keras may hand over labels with a trailing axis of 1 ([n, 1] for logits [n, vocab]).
        labels = tf.reshape(tf.cast(y_true, tf.int32), tf.shape(log_probs)[:-1])
        picked = tf.gather(log_probs, labels, batch_dims=len(y_pred.shape) - 1)
        spread = tf.reduce_mean(log_probs, axis=-1)
        return -(1.0 - self.smoothing) * picked - self.smoothing * spread

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing}
