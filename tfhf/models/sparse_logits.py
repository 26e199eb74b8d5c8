"""Training forward passes that compute a language model's output layer only where the
loss looks: the vocabulary projection and its softmax cost the most per position, and a
masked LM predicts 15% of them, an encoder-decoder only its real target tokens."""

from __future__ import annotations


def at_weighted_positions(hidden, labels, weights):
    """`hidden [b, t, d]`, `labels [b, t]` and `weights [b, t]` at the positions whose
    weight is above 0, flattened: `(hidden [1, n, d], labels [n], weights [n])`.

    The weights are scaled so that Keras' mean of the weighted loss over the `n` positions
    equals its mean over all `b * t`: the same loss and gradients as the full output
    layer. The gather has a data-dependent shape, so XLA cannot compile it.
    """
    import tensorflow as tf

    at = tf.where(weights > 0)
    kept = tf.gather_nd(weights, at)
    scale = tf.cast(tf.size(kept), kept.dtype) / tf.cast(tf.size(weights), kept.dtype)
    return tf.gather_nd(hidden, at)[None], tf.gather_nd(labels, at), kept * scale


def masked_lm_logits_at_masks(model, features, labels, weights, training):
    """The training forward pass of a `TFBertForMaskedLM` (or `TFRoFormerForMaskedLM`, whose
    parts have the same names) with its output layer computed at the chosen (masked) tokens
    only: `(logits [n, vocab], labels [n], weights [n])`."""
    encoder = getattr(model, model.base_model_prefix)  # model.bert, model.roformer
    hidden = encoder(
        input_ids=features["input_ids"],
        attention_mask=features.get("attention_mask"),
        token_type_ids=features.get("token_type_ids"),
        training=training,
    )[0]
    hidden, labels, weights = at_weighted_positions(hidden, labels, weights)
    return model.mlm(sequence_output=hidden, training=training)[0], labels, weights
