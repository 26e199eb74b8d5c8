"""Encoder-decoder building blocks: the training forward pass that computes the output
layer at real target tokens only gives the loss and gradients of the full one."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import transformers

from tfhf.models.seq2seq import logits_at_targets


def _pair(decoder_kind: str):
    tf.keras.utils.set_random_seed(3)
    encoder = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    if decoder_kind == "bert":
        decoder = transformers.BertConfig(
            **{**encoder.to_dict(), "is_decoder": True, "add_cross_attention": True}
        )
    else:  # a narrower GPT-2, so the encoder's states pass through the projection
        decoder = transformers.GPT2Config(
            vocab_size=30, n_positions=8, n_embd=8, n_layer=1, n_head=2, add_cross_attention=True,
            is_decoder=True, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )  # fmt: skip
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    return transformers.TFEncoderDecoderModel(config=config)


@pytest.mark.parametrize("decoder_kind", ["bert", "gpt2"])
def test_the_output_layer_at_real_targets_gives_the_full_loss_and_gradients(decoder_kind):
    model = _pair(decoder_kind)
    source = tf.constant([[2, 7, 9, 11, 3], [2, 8, 3, 0, 0], [2, 12, 13, 14, 3]])
    target = tf.constant([[2, 5, 6, 7, 3], [2, 9, 3, 0, 0], [2, 4, 3, 0, 0]])
    features = {
        "input_ids": source,
        "attention_mask": tf.cast(source != 0, tf.int32),
        "decoder_input_ids": target[:, :-1],
        "decoder_attention_mask": tf.cast(target[:, :-1] != 0, tf.int32),
    }
    labels = target[:, 1:]
    weights = tf.cast(labels != 0, tf.float32)
    weights *= tf.cast(tf.size(weights), tf.float32) / tf.reduce_sum(weights)  # mean 1
    loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss_and_gradients(forward):
        with tf.GradientTape() as tape:
            logits, y, w = forward()
            value = loss(y, logits, w)
        return value, tape.gradient(value, model.trainable_variables), logits

    full = loss_and_gradients(lambda: (model(**features).logits, labels, weights))
    gathered = loss_and_gradients(
        lambda: logits_at_targets(model, features, labels, weights, training=True)
    )
    assert gathered[2].shape == (
        int(tf.reduce_sum(tf.cast(labels != 0, tf.int32))),
        full[2].shape[-1],
    )
    np.testing.assert_allclose(gathered[0], full[0], rtol=1e-6)
    pairs = [(a, b) for a, b in zip(full[1], gathered[1], strict=True) if a is not None]
    assert len(pairs) > 10
    for a, b in pairs:
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), atol=1e-6)
