"""Label-smoothed cross-entropy against a hand computation, padding masked out."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfhf.training.losses import SmoothedCrossEntropy


def by_hand(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, smoothing: float):
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    per_token = -(1 - smoothing) * picked - smoothing * log_probs.mean(-1)
    return (per_token * weights).sum() / weights.size  # Keras: mean over all positions


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_smoothed_loss_is_the_hand_computed_mean_over_weighted_positions(smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 11)).astype(np.float32)
    labels = rng.integers(0, 11, (3, 5))
    weights = np.ones((3, 5), np.float32)
    weights[1, 3:] = 0  # padding
    ours = SmoothedCrossEntropy(smoothing)(
        tf.constant(labels), tf.constant(logits), sample_weight=tf.constant(weights)
    )
    assert float(ours) == pytest.approx(by_hand(logits, labels, weights, smoothing), rel=1e-5)


def test_without_smoothing_it_is_keras_cross_entropy_and_padding_changes_nothing():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 7)).astype(np.float32)
    labels = rng.integers(0, 7, (2, 4))
    weights = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], np.float32)
    keras = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ours = SmoothedCrossEntropy(0.0)
    expected = keras(labels, logits, sample_weight=weights)
    assert float(ours(labels, logits, sample_weight=weights)) == pytest.approx(float(expected))
    # Whatever the padded positions hold, the loss stays the same.
    noisy = logits.copy()
    noisy[weights == 0] = 50.0
    assert float(ours(labels, noisy, sample_weight=weights)) == pytest.approx(float(expected))


def test_flat_positions_give_the_loss_of_the_same_positions_in_a_batch():
    # The seq2seq training step hands over only the real target tokens, as [n, vocab].
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 9)).astype(np.float32)
    labels = rng.integers(0, 9, 6)
    loss = SmoothedCrossEntropy(0.1)
    # Through Keras' compiled loss, as training calls it (it reshapes [n] labels to [n, 1]).
    model = tf_keras.Sequential([tf_keras.layers.Dense(9)])
    model.compile(loss=loss)
    flat = model.compute_loss(y=tf.constant(labels), y_pred=tf.constant(logits))
    batched = loss(tf.constant(labels.reshape(2, 3)), tf.constant(logits.reshape(2, 3, 9)))
    assert float(flat) == pytest.approx(float(batched), rel=1e-6)
    assert float(flat) == pytest.approx(by_hand(logits, labels, np.ones(6), 0.1), rel=1e-5)
