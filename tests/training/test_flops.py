"""The training FLOP estimate against TensorFlow's own count of the model's graph."""

from __future__ import annotations

import pytest
import tensorflow as tf
import transformers

from tfhf.training.flops import transformer_training_flops

BATCH, CONTEXT = 2, 32


def _counted_forward_flops_per_token(model) -> float:
    """FLOPs of one forward pass per token, as TensorFlow's profiler counts the graph's ops
    (matmuls, and everything else: norms, softmaxes, activations)."""
    forward = tf.function(lambda ids: model(ids, training=False).logits)
    graph = forward.get_concrete_function(tf.TensorSpec([BATCH, CONTEXT], tf.int32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    return profile.total_float_ops / (BATCH * CONTEXT)


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_the_estimate_is_three_forward_passes_of_what_the_graph_computes(kind):
    if kind == "gpt2":
        config = transformers.GPT2Config(
            n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=64
        )
        model = transformers.TFGPT2LMHeadModel(config)
    else:
        config = transformers.BertConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            intermediate_size=256,
            vocab_size=500,
            max_position_embeddings=64,
        )
        model = transformers.TFBertForMaskedLM(config)
    estimate = transformer_training_flops(config, context=CONTEXT)
    counted = _counted_forward_flops_per_token(model)
    # The estimate leaves out what is not a matmul (a few percent at this width).
    assert 0.9 < 3 * counted / estimate < 1.1
