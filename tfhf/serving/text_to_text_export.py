"""SavedModel export of an encoder-decoder: a text in, its generated text out, all in the graph.

The serving signature tokenizes the source with the in-graph WordPiece preprocessor, runs
the encoder once, decodes with `tfhf.generation.seq2seq` (greedy, sampling or beam search,
with a fixed-size key/value cache) and detokenizes, so a client of TF Serving sends and
receives plain strings. Decoding controls are optional inputs with SignatureDef defaults:
the settings the model was evaluated with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import DecodingSettings, decode, decoder_steps
from tfhf.serving.export import refuse_unless, save_version
from tfhf.serving.warmup import WarmupRequest
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor
from tfhf.tokenizers.bpe_targets import BpeTargets
from tfhf.tokenizers.checkpoint_text import CheckpointText

# (name, dtype) of the optional controls, in the signature's order.
CONTROLS = (
    ("max_new_tokens", tf.int32),
    ("num_beams", tf.int32),
    ("length_penalty", tf.float32),
    ("temperature", tf.float32),
    ("top_k", tf.int32),
    ("top_p", tf.float32),
    ("seed", tf.int32),
)
MAX_BEAMS = 16


class TextToTextServingModule(tf.Module):
    """Text -> generated text, the exported form of an encoder-decoder.

    The signature takes `text` (string [batch]) and the optional controls of `CONTROLS`,
    each holding one value for the whole batch. `min_new_tokens` and
    `no_repeat_ngram_size` are fixed at export. Only the model's variables are tracked
    (see `ClassifierServingModule`).
    """

    def __init__(
        self,
        model,
        source: BertPreprocessor | CheckpointText,
        target: BertPreprocessor | BpeTargets | CheckpointText,
        defaults: DecodingSettings,
        *,
        output_name: str,
    ):
        super().__init__(name="text_to_text")
        defaults.check()
        self.weights = list(model.weights)
        self.source, self.target = source, target
        self.steps = decoder_steps(
            model, start_id=target.cls_id, end_id=target.sep_id, pad_id=target.pad_id
        )
        # A text of no words still gets its special tokens ([CLS] [SEP], or </s> alone).
        self.empty_length = int(source.tokenize(tf.constant([""])).row_lengths()[0])
        self.fixed = defaults  # for min_new_tokens and no_repeat_ngram_size
        self.max_new_tokens_limit = _decoder_positions(model)
        if defaults.max_new_tokens > self.max_new_tokens_limit:
            raise TfhfError(
                f"max_new_tokens {defaults.max_new_tokens} exceeds the decoder's "
                f"{self.max_new_tokens_limit} positions"
            )
        # Tensors made here, eagerly, so that the SavedModel records them as the signature's
        # defaults.
        default_values = {
            name: tf.constant([getattr(defaults, name)], dtype) for name, dtype in CONTROLS
        }

        # A signature takes named arguments; these are the controls in `CONTROLS` order.
        def generate(
            text,
            max_new_tokens=default_values["max_new_tokens"],
            num_beams=default_values["num_beams"],
            length_penalty=default_values["length_penalty"],
            temperature=default_values["temperature"],
            top_k=default_values["top_k"],
            top_p=default_values["top_p"],
            seed=default_values["seed"],
        ):
            controls = dict(
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                length_penalty=length_penalty,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                seed=seed,
            )
            return {output_name: self._generate(text, controls)}

        self.generate = tf.function(
            generate,
            input_signature=[tf.TensorSpec([None], tf.string, name="text")]
            + [tf.TensorSpec([None], dtype, name=name) for name, dtype in CONTROLS],
        )

    def _generate(self, text, controls):
        checks = [
            refuse_unless(tf.size(value) == 1, f"{name} must hold one value")
            for name, value in controls.items()
        ]
        # The first value (0 if none), an op that cannot fail: a request of the wrong size
        # fails on the check above, not on the op that reads it.
        values = {
            name: tf.concat([value, tf.zeros([1], value.dtype)], axis=0)[0]
            for name, value in controls.items()
        }
        with tf.control_dependencies(checks):
            values = {name: tf.identity(value) for name, value in values.items()}
        ids = self.source.tokenize(text)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        limit = self.max_new_tokens_limit
        checks = [
            refuse_unless(
                (values["max_new_tokens"] >= 1) & (values["max_new_tokens"] <= limit),
                f"max_new_tokens must be in [1, {limit}]",
            ),
            refuse_unless(
                values["max_new_tokens"] > self.fixed.min_new_tokens,
                f"max_new_tokens must exceed the exported min_new_tokens "
                f"({self.fixed.min_new_tokens})",
            ),
            refuse_unless(
                (values["num_beams"] >= 1) & (values["num_beams"] <= MAX_BEAMS),
                f"num_beams must be in [1, {MAX_BEAMS}]",
            ),
            refuse_unless(
                (values["temperature"] >= 0.0) & tf.math.is_finite(values["temperature"]),
                "temperature must be 0 or a finite positive number",
            ),
            refuse_unless(
                (values["temperature"] == 0.0) | (values["num_beams"] == 1),
                "sampling (temperature above 0) needs num_beams 1",
            ),
            refuse_unless(values["top_k"] >= 0, "top_k must be 0 (off) or positive"),
            refuse_unless(
                (values["top_p"] > 0.0) & (values["top_p"] <= 1.0), "top_p must be in (0, 1]"
            ),
            # Special tokens alone: nothing to read.
            refuse_unless(lengths > self.empty_length, "empty text: give at least one word"),
        ]
        # Nothing runs before every check has passed, so a bad request fails on its reason.
        with tf.control_dependencies(checks):
            input_ids = ids.to_tensor(default_value=self.source.pad_id)
            input_ids = tf.cast(input_ids, tf.int32)
        mask = tf.cast(tf.not_equal(input_ids, self.source.pad_id), tf.int32)
        settings = dataclasses.replace(self.fixed, **values)
        return self.target.detokenize(decode(self.steps, input_ids, mask, settings))


# T5's relative positions set no limit of their own; its checkpoints were trained on 512.
T5_POSITIONS = 512


def _decoder_positions(model) -> int:
    # GPT-2's config answers to this name too (its n_positions).
    config = getattr(model.config, "decoder", model.config)
    return int(getattr(config, "max_position_embeddings", T5_POSITIONS))


def export_text_to_text(
    model,
    source: BertPreprocessor | CheckpointText,
    target: BertPreprocessor | BpeTargets | CheckpointText,
    defaults: DecodingSettings,
    export_dir: str | Path,
    *,
    output_name: str,
) -> Path:
    """Writes a new version of the encoder-decoder under `export_dir`; returns its folder.

    Signature `serving_default`: `text` (string [batch]); optional `max_new_tokens`,
    `num_beams`, `top_k`, `seed` (int32 [1]), `length_penalty`, `temperature`, `top_p`
    (float32 [1]), whose defaults are `defaults` -> `output_name` (string [batch]).
    Temperature 0 decodes greedily (num_beams 1) or by beam search; above 0 it samples.
    The version carries warmup requests, greedy, beam search and sampled, which TF Serving
    runs before it answers any client.
    """
    module = TextToTextServingModule(model, source, target, defaults, output_name=output_name)
    return save_version(
        module,
        {"serving_default": module.generate},
        export_dir,
        warmup=_warmup(defaults),
    )


def _warmup(defaults: DecodingSettings) -> list[WarmupRequest]:
    """A short text decoded greedily, two by beam search, one sampled: the branches a
    first client would otherwise pay for. Every control is given (a TF Serving that
    predates SignatureDef defaults would fail the request, and the model's load)."""
    new = min(defaults.max_new_tokens, max(4, defaults.min_new_tokens + 1))

    def controls(beams: int, temperature: float) -> dict[str, np.ndarray]:
        return {
            "max_new_tokens": np.array([new], np.int32),
            "num_beams": np.array([beams], np.int32),
            "length_penalty": np.array([defaults.length_penalty], np.float32),
            "temperature": np.array([temperature], np.float32),
            "top_k": np.array([0], np.int32),
            "top_p": np.array([1.0], np.float32),
            "seed": np.array([0], np.int32),
        }

    one = ["a small tool to read and write files"]
    two = one + ["a library for parsing text, with bindings for several languages"]
    return [
        ("serving_default", {"text": one, **controls(1, 0.0)}),
        ("serving_default", {"text": two, **controls(max(2, defaults.num_beams), 0.0)}),
        ("serving_default", {"text": one, **controls(1, 0.8)}),
    ]
