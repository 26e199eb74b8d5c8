"""Classifier evaluation: accuracy, macro-F1 and loss over a whole dataset, every epoch or once."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras


def evaluate(model, ds: tf.data.Dataset, num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of a transformers classifier over all of `ds`.

    Example:
      >>> evaluate(model, test_ds, num_labels=2)["accuracy"]  # doctest: +SKIP
      0.82
    """
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(
        input_signature=[{"input_ids": spec, "attention_mask": spec, "token_type_ids": spec}]
    )
    def logits_of(features):
        return model(features, training=False).logits

    all_logits, all_labels = [], []
    for features, labels in ds:
        all_logits.append(logits_of(features).numpy())
        all_labels.append(labels.numpy())
    logits = np.concatenate(all_logits).astype(np.float64)
    labels = np.concatenate(all_labels)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    predictions = logits.argmax(-1)
    f1s = []
    for k in range(num_labels):
        tp = np.sum((predictions == k) & (labels == k))
        fp = np.sum((predictions == k) & (labels != k))
        fn = np.sum((predictions != k) & (labels == k))
        if tp + fp + fn:  # a label absent from both labels and predictions has no F1
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "macro_f1": float(np.mean(f1s)),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "examples": int(len(labels)),
    }


class EvaluateEachEpoch(tf_keras.callbacks.Callback):
    """Runs `evaluate` on validation data after each epoch and adds `val_*` entries to the logs.

    Place it before callbacks that read those entries (best-epoch keeping,
    TensorBoard). `results[epoch]` keeps every epoch's full figures.
    """

    def __init__(self, ds: tf.data.Dataset, num_labels: int):
        super().__init__()
        self.ds = ds
        self.num_labels = num_labels
        self.results: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        result = evaluate(self.model, self.ds, self.num_labels)
        self.results.append(result)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in result.items() if k != "examples"})
