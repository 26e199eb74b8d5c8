"""Tracing HuggingFace TF models inside tfhf's own graphs: training and evaluation steps,
exports, decoding loops."""

from __future__ import annotations

import tensorflow as tf


def unconverted(fn):
    """`fn`, traced as the plain Python it is, and the model's layers with it.

    Inside a `tf.function`, Keras hands every layer's `call` to AutoGraph, which rewrites
    each one as it is traced. The transformers layers and tfhf's steps branch only on Python
    values (their loops are `tf.while_loop`s), so the graph is the same without it: measured
    on the summarize default's export, the same ops, in 23% less time.
    """
    return tf.autograph.experimental.do_not_convert(fn)
