"""The training step every task runs: float32 loss, loss scaling, gradient accumulation."""

from __future__ import annotations

import types

import tensorflow as tf
import tf_keras

from tfhf.tracing import unconverted


def _float32_logits(outputs) -> tf.Tensor:
    # Under mixed precision the heads compute in float16/bfloat16; softmax and the loss
    # need float32's range and precision.
    logits = outputs.logits if hasattr(outputs, "logits") else outputs
    return tf.cast(logits, tf.float32)


def _rows(structure, start, stop):
    return tf.nest.map_structure(lambda t: t[start:stop], structure)


def _forward(model, x, y, sample_weight, training):
    """What the loss is computed on by default: the model's logits at every position."""
    return model(x, training=training), y, sample_weight


def _train_step(model, data, *, accum_steps: int, forward):
    x, y, sample_weight = tf_keras.utils.unpack_x_y_sample_weight(data)
    optimizer = model.optimizer
    scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    variables = model.trainable_variables
    rows = tf.shape(tf.nest.flatten(x)[0])[0]

    def gradients(i):
        """Gradients of micro-batch i's loss, weighted by its share of the batch's rows, so
        that their sum is the whole batch's gradient."""
        start = i * rows // accum_steps
        stop = (i + 1) * rows // accum_steps
        xi, yi = _rows(x, start, stop), _rows(y, start, stop)
        wi = None if sample_weight is None else _rows(sample_weight, start, stop)
        with tf.GradientTape() as tape:
            outputs, yi, wi = forward(model, xi, yi, wi, True)
            logits = _float32_logits(outputs)
            loss = model.compiled_loss(yi, logits, wi, regularization_losses=model.losses)
            loss *= tf.cast(stop - start, loss.dtype) / tf.cast(rows, loss.dtype)
            if scaling:
                loss = optimizer.get_scaled_loss(loss)
        model.compiled_metrics.update_state(yi, logits, wi)
        grads = tape.gradient(loss, variables)
        return [None if g is None else tf.convert_to_tensor(g) for g in grads]

    total = gradients(0)
    if accum_steps > 1:
        # Variables without a gradient (an unused pooler) stay out of the update, as in
        # Keras' own step; the rest accumulate in a loop, so the graph holds one copy.
        present = [i for i, g in enumerate(total) if g is not None]

        def body(i, acc):
            grads = gradients(i)
            return i + 1, [a + grads[k] for a, k in zip(acc, present, strict=True)]

        _, summed = tf.while_loop(
            lambda i, _: i < accum_steps,
            body,
            (tf.constant(1), [total[k] for k in present]),
        )
        for k, g in zip(present, summed, strict=True):
            total[k] = g
    if scaling:
        total = optimizer.get_unscaled_gradients(total)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(total, variables, strict=True) if g is not None]
    )
    results = {}
    for metric in model.metrics:
        value = metric.result()
        results.update(value if isinstance(value, dict) else {metric.name: value})
    return results


def install_train_step(model, *, accum_steps: int = 1, forward=None) -> None:
    """Makes `model.fit` train with tfhf's step instead of the transformers one.

    Each batch is split into `accum_steps` micro-batches run one after another, with their
    gradients summed before one optimizer update, so activations are held for a
    micro-batch at a time and the update equals that of the whole batch. Logits are cast
    to float32 before the loss; under float16 the loss is scaled (the optimizer is the
    `LossScaleOptimizer` that Keras' `compile` puts in place) and non-finite steps skipped.

    `forward(model, x, y, sample_weight, training)` returns what the loss and metrics are
    computed on, `(logits, y, sample_weight)`; by default the model's logits at every
    position. A task may compute fewer (only the positions that count in the loss).
    """

    # An instance attribute: `fit` looks the step up on the model, and the transformers
    # classes are not ours to subclass for every architecture. Traced as plain Python (it and
    # the model branch only on Python values): AutoGraph would rewrite every layer's call on
    # the way, for the same graph.
    @unconverted
    def train_step(self, data):
        return _train_step(self, data, accum_steps=accum_steps, forward=forward or _forward)

    model.train_step = types.MethodType(train_step, model)
