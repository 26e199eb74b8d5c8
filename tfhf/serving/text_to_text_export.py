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

from tfhf.config import DEFAULT_SEED
from tfhf.errors import TfhfError
from tfhf.generation.generator import PROMPT_BUCKETS
from tfhf.generation.seq2seq import (
    DecodingSettings,
    decode,
    decoder_steps,
    stream_continue,
    stream_start,
)
from tfhf.serving.export import (
    XLA_TWIN,
    SignatureDoc,
    TensorDoc,
    bucket,
    filled_to_row_bucket,
    refuse_unless,
    save_version,
)
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
# Tokens per streamed chunk when a request does not say.
DEFAULT_CHUNK_TOKENS = 8

_RUNS = "the run's"
_CONTROL_DOCS = {
    "max_new_tokens": TensorDoc(
        "int32",
        "[1]",
        "Most target tokens, the end token included.",
        f"{_RUNS} --max_target_length",
    ),
    "num_beams": TensorDoc(
        "int32",
        "[1]",
        f"Beam width, 1 to {MAX_BEAMS}; 1: greedy (or sampling).",
        f"{_RUNS} --num_beams",
    ),
    "length_penalty": TensorDoc(
        "float32",
        "[1]",
        "Beam search: > 0 favours longer outputs.",
        f"{_RUNS} --length_penalty",
    ),
    "temperature": TensorDoc(
        "float32", "[1]", "0: greedy or beam search; above 0: sampling (with num_beams 1).", "0"
    ),
    "top_k": TensorDoc("int32", "[1]", "Sampling from the k likeliest tokens; 0: off.", "0"),
    "top_p": TensorDoc(
        "float32", "[1]", "Sampling from the nucleus of this mass; 1.0: off.", "1.0"
    ),
    "seed": TensorDoc(
        "int32", "[1]", "Sampling noise; the same seed, the same text.", str(DEFAULT_SEED)
    ),
}
_CHUNK_DOC = TensorDoc("int32", "[1]", "Tokens decoded by this call.", str(DEFAULT_CHUNK_TOKENS))
_STATE_DOCS = {
    "length": TensorDoc("int32", "[]", "Target tokens decoded so far."),
    "running": TensorDoc("int32", "[batch, beams, length]", "The live hypotheses' tokens."),
    "running_scores": TensorDoc("float32", "[batch, beams]", "Their log-probabilities."),
    "ended": TensorDoc("int32", "[batch, beams, length]", "Finished hypotheses' tokens."),
    "ended_scores": TensorDoc("float32", "[batch, beams]", "Their length-penalised scores."),
    "done": TensorDoc("bool", "[batch, beams]", "Which finished slots are filled."),
    "searching": TensorDoc("bool", "[batch]", "Whether a text's search can still improve."),
    "encoded": TensorDoc("float32", "[batch, source length, width]", "The encoder's output."),
    "encoder_mask": TensorDoc("int32", "[batch, source length]", "Its padding mask."),
    "cache": TensorDoc(
        "float32",
        "[layers, 2, rows, heads, length, head width]",
        "The decoder's self-attention cache.",
    ),
    "cross_cache": TensorDoc(
        "float32",
        "[layers, 2, rows, heads, source length, head width]",
        "Its cross-attention keys and values.",
    ),
}


def text_to_text_signatures(output_name: str) -> tuple[SignatureDoc, ...]:
    """The signatures of a text-to-text export whose text output is `output_name`."""
    text_in = TensorDoc("string", "[batch]", "Source texts, tokenized in the graph.")
    text_out = TensorDoc("string", "[batch]", f"The {output_name} of each text.")
    so_far = TensorDoc(
        "string",
        "[batch]",
        f"What the {output_name} is sure to start with so far (all of it once finished); "
        "beam search sends only what every live hypothesis agrees on.",
    )
    finished = TensorDoc("bool", "[batch]", "Whether a text's decoding has ended.")
    return (
        SignatureDoc(
            "serving_default",
            f"A text in, its {output_name} out; every control optional.",
            {"text": text_in, **_CONTROL_DOCS},
            {output_name: text_out},
        ),
        SignatureDoc(
            "serving_default" + XLA_TWIN,
            "The same text as serving_default, the decoding one XLA program per (rows, "
            "source, new tokens, beams) bucket. TF Serving runs it only with "
            "--xla_cpu_compilation_enabled.",
            {"text": text_in, **_CONTROL_DOCS},
            {output_name: text_out},
        ),
        SignatureDoc(
            "stream_start",
            "The first chunk_tokens of serving_default's decoding, and the state to go on from.",
            {"text": text_in, **_CONTROL_DOCS, "chunk_tokens": _CHUNK_DOC},
            {output_name: so_far, "finished": finished, **_STATE_DOCS},
        ),
        SignatureDoc(
            "stream_continue",
            "The next chunk_tokens, from the state stream_start (or the last "
            "stream_continue) returned; the last chunk's text is serving_default's.",
            {**_STATE_DOCS, **_CONTROL_DOCS, "chunk_tokens": _CHUNK_DOC},
            {output_name: so_far, "finished": finished, **_STATE_DOCS},
        ),
    )


class TextToTextServingModule(tf.Module):
    """Text -> generated text, the exported form of an encoder-decoder.

    The signature takes `text` (string [batch]) and the optional controls of `CONTROLS`,
    each holding one value for the whole batch. `min_new_tokens` and
    `no_repeat_ngram_size` are fixed at export. `generate_xla` takes the same inputs and
    writes the same text, as one XLA program per shape. Only the model's variables are
    tracked (see `ClassifierServingModule`).
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

        signature = [tf.TensorSpec([None], tf.string, name="text")] + [
            tf.TensorSpec([None], dtype, name=name) for name, dtype in CONTROLS
        ]

        def text_to_text(decode):
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
                return {output_name: decode(text, _controls(locals()))}

            return tf.function(generate, input_signature=signature)

        self.generate = text_to_text(self._generate)
        # The same decoding as one XLA program per (rows, source, new tokens, beams) bucket:
        # TF Serving compiles it only with --xla_cpu_compilation_enabled (and fails its
        # requests without). Greedy decoding and beam search are programs of their own, so a
        # request compiles only the one it runs.
        self._compiled_greedy = tf.function(self._static_greedy, jit_compile=True)
        self._compiled_beams = tf.function(self._static_beams, jit_compile=True)
        self.generate_xla = text_to_text(self._generate_static)
        self._stream_signatures(default_values, output_name)

    def _stream_signatures(self, default_values: dict, output_name: str) -> None:
        """`stream_start` decodes the first `chunk_tokens` and returns the decoding state
        (the key/value cache and the encoder's output among it); `stream_continue` takes
        that state and decodes the next chunk. Both run `generate`'s very steps, so the last
        chunk's text is `generate`'s text for the same inputs. Before it, a chunk's text is
        what the result will start with (for beam search, what every live beam agrees on)."""
        d = default_values
        chunk = tf.constant([DEFAULT_CHUNK_TOKENS], tf.int32)

        def outputs(stream):
            cache, cross_cache = self._packed(stream.pop("cache"))
            text = self.target.detokenize(stream.pop("ids"))
            return {output_name: text, **stream, "cache": cache, "cross_cache": cross_cache}

        # A signature takes named arguments; after the state, the controls in `CONTROLS`
        # order and the chunk size.
        def start(
            text,
            max_new_tokens=d["max_new_tokens"],
            num_beams=d["num_beams"],
            length_penalty=d["length_penalty"],
            temperature=d["temperature"],
            top_k=d["top_k"],
            top_p=d["top_p"],
            seed=d["seed"],
            chunk_tokens=chunk,
        ):
            controls = _controls(locals())
            input_ids, mask, settings = self._prepared(text, controls)
            stream = stream_start(self.steps, input_ids, mask, settings, self._chunk(chunk_tokens))
            return outputs(stream)

        def cont(
            length,
            running,
            running_scores,
            ended,
            ended_scores,
            done,
            searching,
            encoded,
            encoder_mask,
            cache,
            cross_cache,
            max_new_tokens=d["max_new_tokens"],
            num_beams=d["num_beams"],
            length_penalty=d["length_penalty"],
            temperature=d["temperature"],
            top_k=d["top_k"],
            top_p=d["top_p"],
            seed=d["seed"],
            chunk_tokens=chunk,
        ):
            controls = _controls(locals())
            settings = self._settings(self._first_values(controls))
            stream = dict(
                length=length,
                running=running,
                running_scores=running_scores,
                ended=ended,
                ended_scores=ended_scores,
                done=done,
                searching=searching,
                encoded=encoded,
                encoder_mask=encoder_mask,
                cache=self._unpacked(cache, cross_cache),
            )
            return outputs(stream_continue(self.steps, stream, settings, self._chunk(chunk_tokens)))

        control_specs = [tf.TensorSpec([None], dtype, name=name) for name, dtype in CONTROLS]
        chunk_spec = tf.TensorSpec([None], tf.int32, name="chunk_tokens")
        self.stream_start = tf.function(
            start,
            input_signature=[tf.TensorSpec([None], tf.string, name="text")]
            + control_specs
            + [chunk_spec],
        )
        self.stream_continue = tf.function(
            cont, input_signature=self._state_specs() + control_specs + [chunk_spec]
        )

    def _state_specs(self) -> list[tf.TensorSpec]:
        """The stream's state as signature inputs; the cache's layout from one step run
        here, eagerly, on a one-word text."""
        ids = tf.cast(self.source.tokenize(tf.constant(["a"])).to_tensor(), tf.int32)
        mask = tf.ones_like(ids)
        encoded = self.steps.encode(ids, mask)
        _, cache = self.steps.first(tf.fill([1], self.steps.start_id), encoded, mask, 1)
        self._layers = len(cache)
        packed, _ = self._packed(cache)
        int3, any2, any6 = [None] * 3, [None] * 2, [None] * 6
        return [
            tf.TensorSpec([], tf.int32, name="length"),
            tf.TensorSpec(int3, tf.int32, name="running"),
            tf.TensorSpec(any2, tf.float32, name="running_scores"),
            tf.TensorSpec(int3, tf.int32, name="ended"),
            tf.TensorSpec(any2, tf.float32, name="ended_scores"),
            tf.TensorSpec(any2, tf.bool, name="done"),
            tf.TensorSpec([None], tf.bool, name="searching"),
            tf.TensorSpec([None, None, encoded.shape[-1]], encoded.dtype, name="encoded"),
            tf.TensorSpec(any2, tf.int32, name="encoder_mask"),
            tf.TensorSpec(any6, packed.dtype, name="cache"),
            tf.TensorSpec(any6, packed.dtype, name="cross_cache"),
        ]

    def _packed(self, cache) -> tuple[tf.Tensor, tf.Tensor]:
        """The cache as two tensors [layers, 2 (key, value), ...]: the self-attention part
        and the cross-attention part (empty for GPT-2, which recomputes it each step)."""
        if self.steps.batch_axis == 1:  # GPT-2: a [2, batch, ...] tensor per layer
            own = tf.stack(list(cache))
            return own, tf.zeros([0, 2, 0, 0, 0, 0], own.dtype)
        own = tf.stack([tf.stack(layer[:2]) for layer in cache])
        return own, tf.stack([tf.stack(layer[2:]) for layer in cache])

    def _unpacked(self, own, cross):
        layers = tf.unstack(own, num=self._layers)
        if self.steps.batch_axis == 1:
            return tuple(layers)
        crossed = tf.unstack(cross, num=self._layers)
        return tuple((o[0], o[1], c[0], c[1]) for o, c in zip(layers, crossed, strict=True))

    @staticmethod
    def _chunk(chunk_tokens):
        chunk = tf.concat([tf.reshape(chunk_tokens, [-1]), tf.zeros([1], tf.int32)], axis=0)[0]
        with tf.control_dependencies(
            [refuse_unless(chunk >= 1, "chunk_tokens must be one value of at least 1")]
        ):
            return tf.identity(chunk)

    def _first_values(self, controls: dict) -> dict:
        """Each control's one value, once every control was checked to hold one."""
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
            return {name: tf.identity(value) for name, value in values.items()}

    def _settings(self, values: dict) -> DecodingSettings:
        """The decoding settings of a request, checked: nothing runs before every check has
        passed, so a bad request fails on its reason."""
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
        ]
        with tf.control_dependencies(checks):
            values = {name: tf.identity(value) for name, value in values.items()}
        return dataclasses.replace(self.fixed, **values)

    def _prepared(self, text, controls: dict):
        """(input ids, attention mask, settings) of a request, every check passed."""
        settings = self._settings(self._first_values(controls))
        ids = self.source.tokenize(text)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        # Special tokens alone: nothing to read.
        check = refuse_unless(lengths > self.empty_length, "empty text: give at least one word")
        with tf.control_dependencies([check, settings.max_new_tokens]):
            input_ids = tf.cast(ids.to_tensor(default_value=self.source.pad_id), tf.int32)
        mask = tf.cast(tf.not_equal(input_ids, self.source.pad_id), tf.int32)
        return input_ids, mask, settings

    def _generate(self, text, controls):
        input_ids, mask, settings = self._prepared(text, controls)
        return self.target.detokenize(decode(self.steps, input_ids, mask, settings))

    def _generate_static(self, text, controls):
        """`_generate` as XLA runs it: the checks and the tokenizers outside, the decoding
        inside, on sources padded to a length bucket, rows filled to a row bucket (copies
        of the first) and a cache sized for a bucket of `max_new_tokens`."""
        input_ids, mask, settings = self._prepared(text, controls)
        batch, length = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        width = bucket(length, PROMPT_BUCKETS, tf.maximum(length, self.source.max_seq_length))
        room = bucket(settings.max_new_tokens, PROMPT_BUCKETS, self.max_new_tokens_limit)
        padding = [[0, 0], [0, width - length]]
        inputs = (
            *filled_to_row_bucket(
                [
                    tf.pad(input_ids, padding, constant_values=self.source.pad_id),
                    tf.pad(mask, padding),
                ]
            ),
            tf.zeros([room], tf.int32),  # its shape is the cache's size
            settings.max_new_tokens,
            *(getattr(settings, name) for name in _STATIC_VALUES),
        )
        ids = tf.cond(
            settings.num_beams > 1,
            lambda: self._compiled_beams(*inputs, beams=tf.zeros([settings.num_beams], tf.int32)),
            lambda: self._compiled_greedy(*inputs),
        )
        return self.target.detokenize(ids[:batch])

    def _static_settings(self, room, values, beams) -> DecodingSettings:
        """The settings inside the XLA program: the cache's size and the beams from the
        shapes of `room` and of the beam count's stand-in, the rest from `values`."""
        return dataclasses.replace(
            self.fixed,
            max_new_tokens=tf.shape(room)[0],
            num_beams=beams,
            **dict(zip(_STATIC_VALUES, values, strict=True)),
        )

    def _static_greedy(self, input_ids, mask, room, most, *values):
        settings = self._static_settings(room, values, 1)
        return decode(self.steps, input_ids, mask, settings, most=most, beams=False)

    def _static_beams(self, input_ids, mask, room, most, *values, beams):
        settings = self._static_settings(room, values, tf.shape(beams)[0])
        return decode(self.steps, input_ids, mask, settings, most=most, beams=True)


# The controls the XLA programs take as values (the others set their shapes), in their order.
_STATIC_VALUES = ("length_penalty", "temperature", "top_k", "top_p", "seed")


def _controls(arguments: dict) -> dict:
    """The controls among a signature function's arguments (its `locals()`), by name."""
    return {name: arguments[name] for name, _ in CONTROLS}


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
    `serving_default_xla`: the same, XLA-compiled (TF Serving: --xla_cpu_compilation_enabled).
    The version carries warmup requests, greedy, beam search and sampled, which TF Serving
    runs before it answers any client; none for the XLA twin (a TF Serving without XLA fails
    its requests, so it would fail the load).
    """
    module = TextToTextServingModule(model, source, target, defaults, output_name=output_name)
    return save_version(
        module,
        {
            "serving_default": module.generate,
            "serving_default" + XLA_TWIN: module.generate_xla,
            "stream_start": module.stream_start,
            "stream_continue": module.stream_continue,
        },
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
