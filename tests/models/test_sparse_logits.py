"""A masked LM's (BERT's, RoFormer's) training forward pass with the output layer at the
chosen tokens only gives the loss and gradients of the full output layer."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import transformers

from tfhf.models.sparse_logits import masked_lm_logits_at_masks


@pytest.mark.parametrize("architecture", ["bert", "roformer"])
def test_the_output_layer_at_masked_tokens_gives_the_full_loss_and_gradients(architecture):
    tf.keras.utils.set_random_seed(5)
    sizes = dict(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if architecture == "bert":
        model = transformers.TFBertForMaskedLM(transformers.BertConfig(**sizes))
    else:
        model = transformers.TFRoFormerForMaskedLM(
            transformers.RoFormerConfig(embedding_size=16, **sizes)
        )
    labels = tf.constant([[2, 7, 9, 11, 13, 3], [2, 8, 21, 3, 0, 0]])
    chosen = tf.constant([[0, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0]], tf.float32)
    features = {
        "input_ids": tf.where(chosen > 0, 4, labels),  # 4 stands for [MASK]
        "attention_mask": tf.cast(labels != 0, tf.int32),
        "token_type_ids": tf.zeros_like(labels),
    }
    weights = chosen * tf.cast(tf.size(chosen), tf.float32) / tf.reduce_sum(chosen)  # mean 1
    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_and_gradients(forward):
        with tf.GradientTape() as tape:
            logits, y, w = forward()
            value = loss(y, logits, w)
        return value, tape.gradient(value, model.trainable_variables), logits

    full = loss_and_gradients(lambda: (model(features).logits, labels, weights))
    gathered = loss_and_gradients(
        lambda: masked_lm_logits_at_masks(model, features, labels, weights, training=True)
    )
    assert gathered[2].shape == (3, 50)  # the three chosen tokens, not all twelve
    np.testing.assert_allclose(gathered[0], full[0], rtol=1e-6)
    pairs = [(a, b) for a, b in zip(full[1], gathered[1], strict=True) if a is not None]
    assert len(pairs) > 10
    for a, b in pairs:
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), atol=1e-6)
