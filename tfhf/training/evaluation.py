"""Evaluation over a whole dataset, every epoch or once: classifiers (accuracy, macro-F1, loss)
and token predictors (loss, perplexity, accuracy)."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras

from tfhf.tracing import unconverted


def evaluate(model, ds: tf.data.Dataset, num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of a transformers classifier over all of `ds`."""
    spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(
        input_signature=[{"input_ids": spec, "attention_mask": spec, "token_type_ids": spec}]
    )
    @unconverted
    def logits_of(features):
        return tf.cast(model(features, training=False).logits, tf.float32)

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


def token_scorer(model):
    """A compiled `(inputs, labels, weights) -> (weighted loss sum, hits, weight sum)` for
    `model`; build it once per model, so that every evaluation reuses its trace."""

    @tf.function(reduce_retracing=True)  # batches of many lengths share a trace
    @unconverted
    def score(inputs, labels, weights):
        logits = tf.cast(model(inputs, training=False).logits, tf.float32)  # mixed precision
        losses = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        hits = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        return (
            tf.reduce_sum(losses * weights),
            tf.reduce_sum(hits * weights),
            tf.reduce_sum(weights),
        )

    return score


def evaluate_tokens(model, ds: tf.data.Dataset, *, scorer=None) -> dict[str, float]:
    """Mean loss, perplexity and accuracy of a token-predicting model (causal or masked LM)
    over the tokens `ds` weights, from `(inputs, labels, weights)` batches. `scorer` is
    `token_scorer(model)`, made here when not given."""
    step = scorer or token_scorer(model)
    loss_sum = hit_sum = tokens = 0.0
    for inputs, labels, weights in ds:
        batch_loss, batch_hits, batch_tokens = step(inputs, labels, weights)
        loss_sum += float(batch_loss)
        hit_sum += float(batch_hits)
        tokens += float(batch_tokens)
    loss = loss_sum / max(tokens, 1.0)
    return {
        "loss": loss,
        "perplexity": float(math.exp(min(loss, 50.0))),
        "accuracy": hit_sum / max(tokens, 1.0),
        "tokens": int(tokens),
    }


class EvaluateTokensEachEpoch(tf_keras.callbacks.Callback):
    """`evaluate_tokens` on validation data after each epoch, as `val_*` log entries.

    With `characters` (how many characters the weighted tokens spell), also bits per
    character: the total loss in nats over the characters, divided by ln 2, a figure that
    compares models whatever their tokenizer (character-level ones included).
    """

    def __init__(self, ds: tf.data.Dataset, *, characters: int | None = None):
        super().__init__()
        self.ds = ds
        self.characters = characters
        self.results: list[dict[str, float]] = []
        self._scorer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._scorer is None:
            self._scorer = token_scorer(self.model)
        result = evaluate_tokens(self.model, self.ds, scorer=self._scorer)
        if self.characters:
            nats = result["loss"] * result["tokens"]
            result["bits_per_character"] = nats / self.characters / math.log(2)
        self.results.append(result)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in result.items() if k != "tokens"})


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 of `predictions` against `references`, from
    Google's `rouge-score` package with its Porter stemmer.

    Example:
      >>> scores = rouge(["the cat sat on the mat"], ["a cat was sitting on the mat"])
      >>> {k: round(v, 4) for k, v in scores.items()}
      {'rouge1': 0.6154, 'rouge2': 0.3636, 'rougeL': 0.6154}
    """
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    return {kind: totals[kind] / max(len(predictions), 1) for kind in kinds}


def lead(texts: list[str], words: int) -> list[str]:
    """The first `words` words of each text: the baseline a summarizer must beat.

    Example:
      >>> lead(["One two three four.", "Five"], 2)
      ['One two', 'Five']
    """
    return [" ".join(text.split()[:words]) for text in texts]
