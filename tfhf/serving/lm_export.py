"""SavedModel export of a causal LM: a prompt in, its continuation out, all in the graph.

The serving signature tokenizes with `ByteLevelBPE`, decodes token by token with
the model's key/value cache, and detokenizes, so a client of TF Serving sends and
receives plain strings. Generation controls are optional inputs with defaults
(SignatureDef defaults, which TF Serving fills in for inputs a request leaves out).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfhf.config import DEFAULT_SEED
from tfhf.errors import TfhfError
from tfhf.generation.generator import PROMPT_BUCKETS
from tfhf.generation.sampling import filter_scores, gumbel_choice, hashed_uniform
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
from tfhf.tokenizers.byte_level_bpe import ByteLevelBPE
from tfhf.tracing import unconverted

DEFAULT_MAX_NEW_TOKENS = 64
# Tokens per streamed chunk when a request does not say.
DEFAULT_CHUNK_TOKENS = 8

_ONE_OR_PER_PROMPT = "[1] or [batch]"
_CONTROL_DOCS = {
    "max_new_tokens": TensorDoc(
        "int32",
        _ONE_OR_PER_PROMPT,
        "Most tokens to add; prompt and new tokens must fit the context.",
        f"{DEFAULT_MAX_NEW_TOKENS}, or half the context if less",
    ),
    "temperature": TensorDoc(
        "float32", _ONE_OR_PER_PROMPT, "0: greedy; above 0: sampling at that temperature.", "0"
    ),
    "top_k": TensorDoc(
        "int32", _ONE_OR_PER_PROMPT, "Sampling from the k likeliest tokens; 0: off.", "0"
    ),
    "top_p": TensorDoc(
        "float32", _ONE_OR_PER_PROMPT, "Sampling from the nucleus of this mass; 1.0: off.", "1.0"
    ),
    "seed": TensorDoc(
        "int32",
        _ONE_OR_PER_PROMPT,
        "Sampling noise; the same seed and prompt give the same text.",
        str(DEFAULT_SEED),
    ),
}
_PROMPT_DOC = TensorDoc("string", "[batch]", "Prompts, tokenized in the graph (byte-level BPE).")
_TEXT_DOC = TensorDoc("string", "[batch]", "The continuation only (the prompt not repeated).")
_CHUNK_DOC = TensorDoc("int32", "[1]", "Tokens decoded by this call.", str(DEFAULT_CHUNK_TOKENS))
_LM_STATE = {
    "step": TensorDoc("int32", "[]", "Tokens decoded so far."),
    "logits": TensorDoc("float32", "[batch, vocabulary]", "The next token's logits."),
    "past": TensorDoc(
        "float32",
        "[layers, 2, batch, heads, length, head width]",
        "The key/value cache.",
    ),
    "mask": TensorDoc("int32", "[batch, length]", "Which cache positions hold tokens."),
    "finished": TensorDoc("bool", "[batch]", "Whether a prompt's continuation has ended."),
    "tokens": TensorDoc("int32", "[batch, new tokens]", "The tokens decoded so far."),
}
LM_SIGNATURES = (
    SignatureDoc(
        "serving_default",
        "A prompt in, its continuation out; every control optional.",
        {"prompt": _PROMPT_DOC, **_CONTROL_DOCS},
        {"text": _TEXT_DOC},
    ),
    SignatureDoc(
        "serving_default" + XLA_TWIN,
        "The same text as serving_default, decoded as one XLA program per (rows, prompt, "
        "new tokens) bucket. TF Serving runs it only with --xla_cpu_compilation_enabled.",
        {"prompt": _PROMPT_DOC, **_CONTROL_DOCS},
        {"text": _TEXT_DOC},
    ),
    SignatureDoc(
        "stream_start",
        "The first chunk_tokens of serving_default's decoding, and the state to go on from.",
        {"prompt": _PROMPT_DOC, **_CONTROL_DOCS, "chunk_tokens": _CHUNK_DOC},
        {"text": TensorDoc("string", "[batch]", "The continuation so far."), **_LM_STATE},
    ),
    SignatureDoc(
        "stream_continue",
        "The next chunk_tokens, from the state stream_start (or the last stream_continue) "
        "returned; the last chunk's text is serving_default's.",
        {**_LM_STATE, **_CONTROL_DOCS, "chunk_tokens": _CHUNK_DOC},
        {"text": TensorDoc("string", "[batch]", "The continuation so far."), **_LM_STATE},
    ),
)


class LanguageModelServingModule(tf.Module):
    """Prompt -> continuation, the exported form of a GPT-2 style causal LM.

    `generate` takes `prompt` (string [batch]) and the optional controls
    `max_new_tokens`, `temperature`, `top_k`, `top_p` and `seed`, each holding one
    value for the whole batch or one per prompt. Temperature 0 (the default) is
    greedy decoding; above 0 it samples, with top-k / top-p filtering and noise
    drawn from (seed, step), so the same seed gives the same text. Generation stops
    at the end-of-text token or after `max_new_tokens`; `text` holds the
    continuation only. `generate_xla` takes the same inputs and writes the same text, as
    one XLA program per shape.

    Only the model's variables are tracked (see `ClassifierServingModule`).
    """

    def __init__(
        self,
        model,
        tokenizer: ByteLevelBPE,
        *,
        eos_id: int,
        pad_id: int,
        default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ):
        super().__init__(name="language_model")
        self._forward = unconverted(
            lambda **inputs: model(**inputs, use_cache=True, training=False)
        )
        self.weights = list(model.weights)
        self.tokenizer = tokenizer
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.context = int(model.config.n_positions)
        self.num_layers = int(model.config.n_layer)
        if not 1 <= default_max_new_tokens < self.context:
            raise TfhfError(
                f"default max_new_tokens {default_max_new_tokens} must be in "
                f"[1, {self.context - 1}] for a context of {self.context}"
            )

        # Tensors made here, eagerly, so that the SavedModel records them as the signature's
        # defaults.
        count = tf.constant([default_max_new_tokens], tf.int32)
        zero, one = tf.constant([0], tf.int32), tf.constant([1.0])
        greedy = tf.constant([0.0])
        default_seed = tf.constant([DEFAULT_SEED], tf.int32)

        controls = [
            tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
            tf.TensorSpec([None], tf.float32, name="temperature"),
            tf.TensorSpec([None], tf.int32, name="top_k"),
            tf.TensorSpec([None], tf.float32, name="top_p"),
            tf.TensorSpec([None], tf.int32, name="seed"),
        ]

        def prompt_to_text(decode):
            def generate(
                prompt,
                max_new_tokens=count,
                temperature=greedy,
                top_k=zero,
                top_p=one,
                seed=default_seed,
            ):
                return {"text": decode(prompt, max_new_tokens, temperature, top_k, top_p, seed)}

            return tf.function(
                generate,
                input_signature=[tf.TensorSpec([None], tf.string, name="prompt"), *controls],
            )

        self.generate = prompt_to_text(self._generate)
        # The same decoding as one XLA program per (rows, prompt, new tokens) bucket: the
        # key/value cache allocated once at its full length. TF Serving compiles it only with
        # --xla_cpu_compilation_enabled (and fails its requests without).
        self._compiled_decode = tf.function(unconverted(self._static_decode), jit_compile=True)
        self.generate_xla = prompt_to_text(self._generate_static)

        # Streaming: `stream_start` decodes the first `chunk_tokens` and returns the
        # decoding state (the key/value cache among it); `stream_continue` takes that state
        # and decodes the next chunk. The steps are the very ops `generate` runs, so the
        # last chunk's `text` is `generate`'s text for the same inputs.
        chunk = tf.constant([DEFAULT_CHUNK_TOKENS], tf.int32)

        def stream_start(
            prompt,
            max_new_tokens=count,
            temperature=greedy,
            top_k=zero,
            top_p=one,
            seed=default_seed,
            chunk_tokens=chunk,
        ):
            ids, lengths, settings = self._checked(
                prompt, max_new_tokens, temperature, top_k, top_p, seed
            )
            logits, past, mask = self._prefill(ids, lengths)
            batch = tf.shape(lengths)[0]
            state = (tf.constant(0), logits, past, mask, tf.zeros([batch], tf.bool))
            empty = tf.zeros([batch, 0], tf.int32)
            return self._stream_chunk(state, empty, settings, chunk_tokens)

        def stream_continue(
            step,
            logits,
            past,
            mask,
            finished,
            tokens,
            max_new_tokens=count,
            temperature=greedy,
            top_k=zero,
            top_p=one,
            seed=default_seed,
            chunk_tokens=chunk,
        ):
            batch = tf.shape(finished)[0]
            settings = self._settings(max_new_tokens, temperature, top_k, top_p, seed, batch)
            state = (step, logits, tuple(tf.unstack(past, num=self.num_layers)), mask, finished)
            return self._stream_chunk(state, tokens, settings, chunk_tokens)

        chunk_spec = tf.TensorSpec([None], tf.int32, name="chunk_tokens")
        self.stream_start = tf.function(
            stream_start,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="prompt"),
                *controls,
                chunk_spec,
            ],
        )
        heads = int(model.config.n_head)
        self.stream_continue = tf.function(
            stream_continue,
            input_signature=[
                tf.TensorSpec([], tf.int32, name="step"),
                tf.TensorSpec([None, None], tf.float32, name="logits"),
                tf.TensorSpec(
                    [self.num_layers, 2, None, heads, None, int(model.config.n_embd) // heads],
                    tf.float32,
                    name="past",
                ),
                tf.TensorSpec([None, None], tf.int32, name="mask"),
                tf.TensorSpec([None], tf.bool, name="finished"),
                tf.TensorSpec([None, None], tf.int32, name="tokens"),
                *controls,
                chunk_spec,
            ],
        )

    def _per_prompt(self, name: str, values: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
        size = tf.size(values)
        fits = tf.logical_or(tf.equal(size, 1), tf.equal(size, batch))
        with tf.control_dependencies(
            [refuse_unless(fits, f"{name} must hold one value, or one per prompt")]
        ):
            return tf.broadcast_to(values, [batch])

    def _generate(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        ids, lengths, settings = self._checked(
            prompt, max_new_tokens, temperature, top_k, top_p, seed
        )
        logits, past, mask = self._prefill(ids, lengths)
        batch = tf.shape(lengths)[0]
        state = (tf.constant(0), logits, past, mask, tf.zeros([batch], tf.bool))
        *_, tokens = self._decode(state, settings)
        return self._text(tokens, settings[0])

    def _generate_static(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        ids, lengths, settings = self._checked(
            prompt, max_new_tokens, temperature, top_k, top_p, seed
        )
        batch = tf.shape(lengths)[0]
        width = bucket(
            tf.reduce_max(tf.concat([lengths, [1]], axis=0)), PROMPT_BUCKETS, self.context
        )
        room = bucket(
            tf.reduce_max(tf.concat([settings[0], [1]], axis=0)), PROMPT_BUCKETS, self.context
        )
        input_ids, mask = self._left_padded(ids, lengths, width)
        filled = filled_to_row_bucket([input_ids, mask, *settings])
        tokens = self._compiled_decode(*filled[:2], tf.zeros([room], tf.int32), *filled[2:])
        return self._text(tokens[:batch], settings[0])

    def _static_decode(self, input_ids, mask, room, *settings):
        """New tokens [batch, len(room)] after the left-padded prompts, every shape fixed by
        the inputs' (the cache holds the prompt bucket and `room` more positions), so that
        XLA compiles the whole loop once per shape."""
        max_new_tokens = settings[0]
        batch, width = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
        steps = tf.shape(room)[0]
        logits, past = self._read(input_ids, mask)
        grown = [[0, 0], [0, 0], [0, 0], [0, steps], [0, 0]]
        past = tuple(tf.pad(p, grown) for p in past)
        cache_mask = tf.pad(mask, [[0, 0], [0, steps]])
        slots = tf.range(width + steps)

        def going(step, logits, past, cache_mask, finished, tokens):
            return (step < steps) & tf.logical_not(tf.reduce_all(finished))

        def decode_one(step, logits, past, cache_mask, finished, tokens):
            token = tf.where(finished, self.eos_id, self._choose(logits, step, settings))
            tokens = tf.where(tf.range(steps)[None, :] == step, token[:, None], tokens)
            finished = finished | tf.equal(token, self.eos_id) | (step + 1 >= max_new_tokens)
            out = self._forward(
                input_ids=token[:, None],
                attention_mask=tf.concat([cache_mask, tf.ones([batch, 1], tf.int32)], axis=1),
                position_ids=tf.reduce_sum(cache_mask, axis=1, keepdims=True),
                past_key_values=past,
            )
            # The model appends the new key and value; they go to the cache's next slot.
            here = tf.equal(slots, width + step)
            past = tuple(
                tf.where(here[None, None, None, :, None], new[:, :, :, -1:, :], old)
                for old, new in zip(past, out.past_key_values, strict=True)
            )
            cache_mask = tf.where(here[None, :], 1, cache_mask)
            return step + 1, out.logits[:, -1, :], past, cache_mask, finished, tokens

        loop_vars = (
            tf.constant(0),
            logits,
            past,
            cache_mask,
            tf.zeros([batch], tf.bool),
            tf.fill([batch, steps], self.eos_id),
        )
        *_, tokens = tf.while_loop(going, decode_one, loop_vars)
        return tokens

    def _settings(self, max_new_tokens, temperature, top_k, top_p, seed, batch):
        """The controls, one per prompt, after the checks that need no prompt."""
        settings = [
            self._per_prompt(name, values, batch)
            for name, values in zip(
                ("max_new_tokens", "temperature", "top_k", "top_p", "seed"),
                (max_new_tokens, temperature, top_k, top_p, seed),
                strict=True,
            )
        ]
        max_new_tokens, temperature, top_k, top_p, _ = settings
        checks = [
            refuse_unless(max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            refuse_unless(
                (temperature >= 0.0) & tf.math.is_finite(temperature),
                "temperature must be 0 (greedy) or a finite positive number",
            ),
            refuse_unless(top_k >= 0, "top_k must be 0 (off) or positive"),
            refuse_unless((top_p > 0.0) & (top_p <= 1.0), "top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            return [tf.identity(value) for value in settings]

    def _checked(self, prompt, max_new_tokens, temperature, top_k, top_p, seed):
        """(prompt ids, their lengths, the controls one per prompt), once every check on
        the request has passed."""
        batch = tf.shape(prompt)[0]
        settings = self._settings(max_new_tokens, temperature, top_k, top_p, seed, batch)
        # No token spells more than `longest_token_bytes`, so a longer prompt cannot fit the
        # context: refused before tokenizing it, which costs time and memory by the byte.
        most = (self.context - 1) * self.tokenizer.longest_token_bytes
        fits = refuse_unless(
            tf.strings.length(prompt) <= most,
            f"prompt longer than {most} bytes: it cannot fit the model context of "
            f"{self.context} tokens",
        )
        # The split pattern's pieces give a lower bound on the tokens in linear time: a
        # prompt that cannot fit by that count is refused before BPE, whose time grows with
        # the square of a piece's length (2,000 letters without a space: seconds a prompt).
        with tf.control_dependencies([fits]):
            fewest = self.tokenizer.fewest_tokens(prompt)
        room = refuse_unless(
            settings[0] <= self.context - fewest,
            f"prompt tokens plus max_new_tokens exceed the model context of {self.context}",
        )
        with tf.control_dependencies([room]):
            ids = self.tokenizer.tokenize(prompt)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        checks = [
            refuse_unless(lengths >= 1, "empty prompt: give at least one character"),
            refuse_unless(  # subtracted, not added: a huge max_new_tokens must not wrap
                settings[0] <= self.context - lengths,
                f"prompt tokens plus max_new_tokens exceed the model context of {self.context}",
            ),
        ]
        # Nothing runs before every check has passed, so a bad request fails on its reason
        # rather than on whichever op trips over it first.
        with tf.control_dependencies(checks):
            return tf.identity(ids), tf.identity(lengths), settings

    def _left_padded(self, ids, lengths, width):
        """(input ids [batch, width], attention mask): each prompt ends in the last column."""
        batch = tf.shape(lengths)[0]
        right_padded = ids.to_tensor(
            default_value=self.pad_id, shape=tf.cast(tf.stack([batch, width]), tf.int64)
        )
        offsets = tf.range(width)[None, :] - (width - lengths)[:, None]
        real = offsets >= 0
        input_ids = tf.where(
            real, tf.gather(right_padded, tf.maximum(offsets, 0), batch_dims=1), self.pad_id
        )
        return input_ids, tf.cast(real, tf.int32)

    def _prefill(self, ids, lengths):
        """(last logits, key/value cache, attention mask) after reading the prompts."""
        width = tf.reduce_max(tf.concat([lengths, [1]], axis=0))
        input_ids, mask = self._left_padded(ids, lengths, width)
        return (*self._read(input_ids, mask), mask)

    def _read(self, input_ids, mask):
        """(last logits, key/value cache) after the left-padded prompts; positions count
        real tokens only, so padding does not shift a prompt."""
        out = self._forward(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=tf.cumsum(mask, axis=1, exclusive=True),
        )
        return out.logits[:, -1, :], tuple(out.past_key_values)

    def _choose(self, logits, step, settings):
        """Each row's next token: the likeliest, or drawn from (seed, step) where the row's
        temperature is above 0."""
        _, temperature, top_k, top_p, seed = settings
        logits = tf.cast(logits, tf.float32)
        greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)

        def sampled():
            scores = filter_scores(
                logits,
                temperature=tf.where(temperature > 0, temperature, 1.0),
                top_k=top_k,
                top_p=top_p,
            )
            uniform = hashed_uniform(seed, step, tf.shape(logits)[1])
            return tf.where(temperature > 0, gumbel_choice(scores, uniform), greedy)

        return tf.cond(tf.reduce_any(temperature > 0), sampled, lambda: greedy)

    def _decode(self, state, settings, chunk_tokens=None):
        """Decodes from `state` (step, logits, cache, mask, finished) until every row has
        finished, or for at most `chunk_tokens` steps; returns the new state and the new
        tokens [batch, steps decoded]."""
        max_new_tokens = settings[0]
        step, logits, past, mask, finished = state
        batch = tf.shape(finished)[0]
        last = step + chunk_tokens if chunk_tokens is not None else None

        def going(step, logits, past, mask, finished, tokens):
            more = tf.logical_not(tf.reduce_all(finished))
            return more if last is None else more & (step < last)

        def decode_one(step, logits, past, mask, finished, tokens):
            token = tf.where(finished, self.eos_id, self._choose(logits, step, settings))
            tokens = tf.concat([tokens, token[:, None]], axis=1)
            finished = finished | tf.equal(token, self.eos_id) | (step + 1 >= max_new_tokens)
            mask = tf.concat([mask, tf.ones([batch, 1], tf.int32)], axis=1)
            out = self._forward(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=tf.reduce_sum(mask, axis=1, keepdims=True) - 1,
                past_key_values=past,
            )
            return (
                step + 1,
                out.logits[:, -1, :],
                tuple(out.past_key_values),
                mask,
                finished,
                tokens,
            )

        loop_vars = (
            step,
            logits,
            past,
            mask,
            finished,
            # Grown by concatenation: a growing TensorArray fails on TF Serving builds of
            # TensorFlow 2.12 ("Trying to modify element 0 in a list with 0 elements").
            tf.zeros([batch, 0], tf.int32),
        )
        unknown = tf.TensorShape(None)
        *state, tokens = tf.while_loop(
            going,
            decode_one,
            loop_vars,
            shape_invariants=(
                tf.TensorShape([]),
                tf.TensorShape([None, None]),
                tuple(unknown for _ in range(self.num_layers)),
                tf.TensorShape([None, None]),
                tf.TensorShape([None]),
                tf.TensorShape([None, None]),
            ),
        )
        return (*state, tokens)

    def _text(self, tokens, max_new_tokens):
        """The continuation `tokens` spell, cut at the first end-of-text token."""
        steps = tf.shape(tokens)[1]
        positions = tf.range(steps)[None, :]
        first_eos = tf.reduce_min(tf.where(tf.equal(tokens, self.eos_id), positions, steps), axis=1)
        kept = tf.minimum(first_eos, max_new_tokens)
        return self.tokenizer.detokenize(tf.RaggedTensor.from_tensor(tokens, lengths=kept))

    def _stream_chunk(self, state, tokens, settings, chunk_tokens):
        chunk = tf.reshape(chunk_tokens, [-1])[0]
        with tf.control_dependencies(
            [refuse_unless(chunk >= 1, "chunk_tokens must be at least 1")]
        ):
            chunk = tf.identity(chunk)
        step, logits, past, mask, finished, new = self._decode(state, settings, chunk)
        tokens = tf.concat([tokens, new], axis=1)
        return {
            "text": self._text(tokens, settings[0]),
            "finished": finished,
            "step": step,
            "logits": tf.cast(logits, tf.float32),
            "past": tf.stack([tf.cast(p, tf.float32) for p in past]),
            "mask": mask,
            "tokens": tokens,
        }


def export_language_model(
    model,
    tokenizer,
    export_dir: str | Path,
    *,
    default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> Path:
    """Writes a new version of the language model under `export_dir`; returns its folder.

    Signature `serving_default`: `prompt` (string [batch]); optional `max_new_tokens`
    (int32), `temperature` (float32, 0 = greedy), `top_k` (int32, 0 = off), `top_p`
    (float32, 1.0 = off), `seed` (int32), each [1] or [batch] -> `text` (string [batch]),
    the continuation. The default `max_new_tokens` is capped at half the context.
    `serving_default_xla`: the same, XLA-compiled (TF Serving: --xla_cpu_compilation_enabled).
    The version carries warmup requests, greedy and sampled, which TF Serving runs
    before it answers any client.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise TfhfError("the tokenizer has no end-of-text token; generation could never stop")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    default_max_new_tokens = min(default_max_new_tokens, int(model.config.n_positions) // 2)
    with tempfile.TemporaryDirectory(prefix="tfhf-bpe-") as scratch:
        tokenizer.save_pretrained(Path(scratch) / "tokenizer")
        bpe = ByteLevelBPE.from_folder(
            Path(scratch) / "tokenizer", asset_dir=Path(scratch) / "assets"
        )
        module = LanguageModelServingModule(
            model, bpe, eos_id=eos, pad_id=pad, default_max_new_tokens=default_max_new_tokens
        )
        return save_version(
            module,
            {
                "serving_default": module.generate,
                "serving_default" + XLA_TWIN: module.generate_xla,
                "stream_start": module.stream_start,
                "stream_continue": module.stream_continue,
            },
            export_dir,
            warmup=_lm_warmup(int(model.config.n_positions)),
        )


def _lm_warmup(context: int) -> list[WarmupRequest]:
    """One prompt decoded greedily, then two sampled, a few new tokens each; all fit in
    `context` tokens (a failing warmup request would fail the model's load). None for the
    XLA twin: a TF Serving without XLA fails its requests, so it would fail the load."""
    new = max(1, min(4, context // 4))
    # ASCII prompts cut to `context - new` characters: byte-level BPE gives at most one
    # token per ASCII character.
    hello, once = ("Hello", "Once upon a time")
    hello, once = hello[: context - new], once[: context - new]

    # Every control is given: a TF Serving that predates SignatureDef defaults would fail
    # the request, and with it the model's load. Sampling warms the branch greedy skips.
    def controls(temperature: float, top_k: int, top_p: float) -> dict[str, np.ndarray]:
        return {
            "max_new_tokens": np.array([new], np.int32),
            "temperature": np.array([temperature], np.float32),
            "top_k": np.array([top_k], np.int32),
            "top_p": np.array([top_p], np.float32),
            "seed": np.array([0], np.int32),
        }

    return [
        ("serving_default", {"prompt": [hello], **controls(0.0, 0, 1.0)}),
        ("serving_default", {"prompt": [hello, once], **controls(0.8, 20, 0.9)}),
    ]
