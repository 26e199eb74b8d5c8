"""How much arithmetic training does: the usual transformer estimate of model FLOPs per
token, and a matmul to compare it with."""

from __future__ import annotations

import time

import tensorflow as tf


def transformer_training_flops(
    config, *, context: int, predicted_share: float = 1.0, vocabulary_output: bool = True
) -> float:
    """Training FLOPs per token of a BERT or GPT-2 (a HuggingFace config of either).

    Forward and backward cost three times the forward pass's two FLOPs per multiply-add:
    `6 x` the weights every token multiplies (each layer's attention projections and
    feed-forward), plus attention itself (`12 x layers x context x width`: the scores and
    the weighted sum, every position against `context` others), plus the output layer
    over the vocabulary (`6 x vocabulary x width`) at the `predicted_share` of positions
    that compute it. Embedding lookups, norms, biases and softmaxes are left out, as the
    estimate usually leaves them.

    Example:
      >>> import transformers
      >>> config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100)
      >>> transformer_training_flops(config, context=32)
      677376.0
    """
    layers = _first(config, "num_hidden_layers", "n_layer")
    width = _first(config, "hidden_size", "n_embd")
    inner = _first(config, "intermediate_size", "n_inner", default=None) or 4 * width
    per_layer = 4 * width * width + 2 * width * inner  # q, k, v, output; feed-forward in, out
    flops = 6.0 * layers * per_layer + 12.0 * layers * context * width
    if vocabulary_output:
        flops += 6.0 * config.vocab_size * width * predicted_share
    return flops


def _first(config, *names, default=0):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def matmul_flops_per_second(size: int = 2048, seconds: float = 2.0) -> float:
    """float32 FLOP/s of `size x size` matmuls on this process's devices, the best of
    repeated timings over about `seconds`: the peak to compare training figures with."""
    a = tf.random.stateless_uniform([size, size], seed=[1, 2])
    b = tf.random.stateless_uniform([size, size], seed=[3, 4])
    multiply = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    multiply(a, b).numpy()  # traced and warmed
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        multiply(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best
