"""Decoding for encoder-decoder models in TensorFlow ops: greedy, sampling and beam search,
with a fixed-size key/value cache, so one function serves XLA (every shape static) and the
SavedModel (no Python at serving time).

The encoder runs once. The decoder then runs one token at a time: its self-attention keys
and values are written into a cache of `max_new_tokens` slots, the cross-attention ones are
computed at the first step and reused. Beam search follows transformers' TF beam search
(its scoring, its length penalty and its stopping rule), so the two agree token for token,
except that each example of a batch stops on its own, so its result does not depend on the
batch (transformers' loop stops for all at once).

Example:
  >>> import transformers
  >>> encoder = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
  ...                                   num_attention_heads=2, intermediate_size=32)
  >>> decoder = transformers.BertConfig(
  ...     **{**encoder.to_dict(), "is_decoder": True, "add_cross_attention": True})
  >>> model = transformers.TFEncoderDecoderModel(
  ...     config=transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder))
  >>> steps = DecoderSteps(model, start_id=2, end_id=3, pad_id=0)
  >>> ids = decode(steps, tf.constant([[2, 7, 9, 3]]), tf.ones([1, 4], tf.int32),
  ...              DecodingSettings(max_new_tokens=5, num_beams=2))
  >>> ids.shape
  TensorShape([1, 5])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tensorflow as tf

from tfhf.config import DEFAULT_SEED
from tfhf.errors import TfhfError
from tfhf.generation.sampling import filter_scores, gumbel_choice, hashed_uniform
from tfhf.tracing import unconverted

NEG_INF = -1.0e9  # transformers' beam search uses this very value; finite, so no inf - inf


@dataclasses.dataclass(frozen=True)
class DecodingSettings:
    """How to turn a source into a target.

    Attributes:
      max_new_tokens: Most target tokens, the end token included.
      num_beams: Beam width; 1 decodes greedily (or samples, with a temperature).
      length_penalty: Beam search ranks finished targets by their log-probability divided
        by length ** length_penalty (> 0 favours longer targets).
      min_new_tokens: The end token is blocked before this many tokens.
      no_repeat_ngram_size: No n-gram of this size occurs twice in a target (0: off).
      temperature: 0 decodes greedily (or by beam search); above 0 samples, with
        `top_k` and `top_p` filtering and noise drawn from (`seed`, step).
    """

    max_new_tokens: int = 32
    num_beams: int = 1
    length_penalty: float = 1.0
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = DEFAULT_SEED

    def problems(self) -> list[str]:
        """What makes no sense, one phrase per problem (the flag names of tfhf.generate)."""
        problems = []
        for name in ("max_new_tokens", "num_beams"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} must be positive, got {getattr(self, name)}")
        for name in ("min_new_tokens", "no_repeat_ngram_size", "top_k"):
            if getattr(self, name) < 0:
                problems.append(f"--{name} must not be negative, got {getattr(self, name)}")
        if self.min_new_tokens >= self.max_new_tokens >= 1:
            problems.append(
                f"--min_new_tokens ({self.min_new_tokens}) must be below --max_new_tokens "
                f"({self.max_new_tokens})"
            )
        if self.temperature < 0:
            problems.append(f"--temperature must be 0 (greedy) or positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"--top_p must be in (0, 1], got {self.top_p}")
        if self.temperature > 0 and self.num_beams > 1:
            problems.append("sampling (--temperature > 0) needs --num_beams=1")
        return problems

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise TfhfError("; ".join(problems))


class DecoderSteps:
    """One encoder-decoder model (transformers' `TFEncoderDecoderModel` with a BERT or GPT-2
    decoder) seen as: encode once, then one decoder step at a time on a fixed-size cache.

    The decoder's own attention layers concatenate the cache with the new token's keys and
    values; an attention mask over the cache slots hides the slots not written yet, and the
    new token's keys and values are then written into its slot.
    """

    def __init__(self, model, *, start_id: int, end_id: int, pad_id: int):
        self.model = model
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        decoder_type = model.config.decoder.model_type
        if decoder_type not in ("bert", "gpt2"):
            raise TfhfError(f"decoding supports BERT and GPT-2 decoders, not '{decoder_type}'")
        # BERT's cache holds (self key, self value, cross key, cross value) per layer with the
        # batch first; GPT-2's holds the self keys and values stacked, batch second, and
        # recomputes its cross-attention from the encoder states at every step.
        self._gpt2 = decoder_type == "gpt2"
        self.batch_axis = 1 if self._gpt2 else 0
        self.vocab_size = int(model.config.decoder.vocab_size)

    @unconverted
    def encode(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        hidden = self.model.encoder(
            input_ids=input_ids, attention_mask=attention_mask, training=False
        ).last_hidden_state
        projection = getattr(self.model, "enc_to_dec_proj", None)
        return hidden if projection is None else projection(hidden)

    @unconverted
    def _decoder(self, tokens, position, attention_mask, past, encoded, encoder_mask):
        rows = tf.shape(tokens)[0]
        out = self.model.decoder(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=tf.fill([rows, 1], position),
            encoder_hidden_states=encoded,
            encoder_attention_mask=encoder_mask,
            past_key_values=past,
            use_cache=True,
            training=False,
        )
        return tf.cast(out.logits[:, -1, :], tf.float32), out.past_key_values

    def _self_part(self, layer):
        return layer if self._gpt2 else layer[:2]

    def first(self, tokens, encoded, encoder_mask, slots: int):
        """Logits for position 0 and the cache (`slots` self-attention slots, slot 0 set)."""
        rows = tf.shape(tokens)[0]
        logits, present = self._decoder(
            tokens, 0, tf.ones([rows, 1], tf.int32), None, encoded, encoder_mask
        )

        def widen(t):
            padding = [[0, 0]] * (len(t.shape) - 2) + [[0, slots - 1], [0, 0]]
            return tf.pad(t, padding)

        cache = []
        for layer in present:
            if self._gpt2:
                cache.append(widen(layer))
            else:
                cache.append((widen(layer[0]), widen(layer[1]), layer[2], layer[3]))
        return logits, tuple(cache)

    def step(self, tokens, position, cache, encoded, encoder_mask):
        """Logits for `position` (>= 1) after `tokens`, and the cache with its slot written."""
        rows = tf.shape(tokens)[0]
        slots = tf.shape(tf.nest.flatten(self._self_part(cache[0]))[0])[-2]
        written = tf.range(slots) < position
        mask = tf.concat(
            [tf.tile(tf.cast(written, tf.int32)[None, :], [rows, 1]), tf.ones([rows, 1], tf.int32)],
            axis=1,
        )
        logits, present = self._decoder(tokens, position, mask, cache, encoded, encoder_mask)
        slot = tf.equal(tf.range(slots), position)[:, None]

        def write(old, new):
            return tf.where(slot, new[..., -1:, :], old)

        updated = []
        for old, new in zip(cache, present, strict=True):
            if self._gpt2:
                updated.append(write(old, new))
            else:
                updated.append((write(old[0], new[0]), write(old[1], new[1]), old[2], old[3]))
        return logits, tuple(updated)

    def reorder(self, cache, rows: tf.Tensor):
        """The cache of the rows `rows` (beam search keeps the rows of the surviving beams)."""

        def pick(t):
            picked = tf.gather(t, rows, axis=self.batch_axis)
            # As many rows as before. Said, since the graph cannot always tell (one source
            # of 4 beams lost its batch size), and XLA's loops need it.
            picked.set_shape(t.shape)
            return picked

        return tf.nest.map_structure(pick, cache)


class CheckpointSteps(DecoderSteps):
    """A sequence-to-sequence checkpoint (transformers' `TFAutoModelForSeq2SeqLM`: T5, BART,
    Marian) on the same fixed-size cache as `DecoderSteps`.

    Their caches hold (self key, self value, cross key, cross value) per layer, batch first,
    as BERT's do. BART and Marian take each token's position; T5's relative attention finds
    it from the cache (its last non-zero slot), and counts the new token's own key, which
    sits after the slots, as no distance at all: a decoder's relative positions ahead of the
    query share the bucket of distance 0.
    """

    def __init__(self, model, *, start_id: int, end_id: int, pad_id: int):
        self.model = model
        self.start_id, self.end_id, self.pad_id = start_id, end_id, pad_id
        self._gpt2 = False
        self.batch_axis = 0
        self._positions = model.config.model_type in ("bart", "marian")
        self.vocab_size = int(model.config.vocab_size)

    @unconverted
    def encode(self, input_ids: tf.Tensor, attention_mask: tf.Tensor) -> tf.Tensor:
        return self.model.get_encoder()(
            input_ids=input_ids, attention_mask=attention_mask, training=False
        ).last_hidden_state

    @unconverted
    def _decoder(self, tokens, position, attention_mask, past, encoded, encoder_mask):
        rows = tf.shape(tokens)[0]
        extra = {"decoder_position_ids": tf.fill([rows, 1], position)} if self._positions else {}
        out = self.model(
            input_ids=None,
            encoder_outputs=(encoded,),
            attention_mask=encoder_mask,
            decoder_input_ids=tokens[:, None],
            decoder_attention_mask=attention_mask,
            past_key_values=past,
            use_cache=True,
            training=False,
            **extra,
        )
        return tf.cast(out.logits[:, -1, :], tf.float32), out.past_key_values


def decoder_steps(model, *, start_id: int, end_id: int, pad_id: int) -> DecoderSteps:
    """The steps of `model`: a `TFEncoderDecoderModel` or a sequence-to-sequence checkpoint."""
    kind = DecoderSteps if model.config.model_type == "encoder-decoder" else CheckpointSteps
    return kind(model, start_id=start_id, end_id=end_id, pad_id=pad_id)


def _no_repeat_mask(sequences, length, size: int, vocab: int):
    """[rows, vocab] True where a token would complete an n-gram of `size` that already
    occurs in `sequences[:, :length]` (as transformers' no-repeat-ngram processor)."""
    rows = tf.shape(sequences)[0]
    width = sequences.shape[1]
    if width is None:  # a width given as a tensor (the SavedModel's max_new_tokens)
        windows = tf.maximum(tf.shape(sequences)[1] - size + 1, 0)
    elif width - size + 1 < 1:
        return tf.zeros([rows, vocab], tf.bool)
    else:
        windows = width - size + 1
    # The n-gram starting at j may be reused only if it lies within the sequence so far.
    starts = tf.range(windows)
    matched = tf.broadcast_to(starts[None, :] <= length - size, [rows, windows])
    for k in range(size - 1):
        last = tf.gather(sequences, tf.maximum(length - size + 1 + k, 0), axis=1)
        matched &= tf.equal(sequences[:, k : k + windows], last[:, None])
    following = sequences[:, size - 1 : size - 1 + windows]
    row_ids = tf.broadcast_to(tf.range(rows)[:, None], [rows, windows])
    indices = tf.stack([tf.reshape(row_ids, [-1]), tf.reshape(following, [-1])], axis=1)
    hits = tf.tensor_scatter_nd_add(
        tf.zeros([rows, vocab], tf.float32), indices, tf.reshape(tf.cast(matched, tf.float32), [-1])
    )
    return hits > 0


def _process(scores, sequences, length, settings: DecodingSettings, end_id: int, vocab: int):
    """Scores with the end token blocked before `min_new_tokens` and repeated n-grams blocked.

    `length` counts the tokens in `sequences` so far, the start token included."""
    if settings.min_new_tokens:
        too_soon = length - 1 < settings.min_new_tokens
        end = tf.one_hot(end_id, vocab, on_value=True, off_value=False)
        scores = tf.where(too_soon & end[None, :], NEG_INF, scores)
    if settings.no_repeat_ngram_size:
        banned = _no_repeat_mask(sequences, length, settings.no_repeat_ngram_size, vocab)
        scores = tf.where(banned, NEG_INF, scores)
    return scores


def decode(
    steps: DecoderSteps,
    input_ids,
    attention_mask,
    settings: DecodingSettings,
    *,
    most=None,
    beams: bool | None = None,
) -> tf.Tensor:
    """Target token ids [batch, max_new_tokens] for each source; after the end token (kept),
    the rows hold `pad_id`.

    In a plain graph `max_new_tokens`, `num_beams`, `length_penalty`, `temperature`,
    `top_k`, `top_p` and `seed` may be scalar tensors (the SavedModel's controls);
    `min_new_tokens` and `no_repeat_ngram_size` stay Python values. Under XLA the tensors
    that set shapes (`max_new_tokens`, `num_beams`) must come from the inputs' shapes.

    Args:
      most: A scalar tensor of at most `max_new_tokens`: no more tokens than this are
        decoded (the rest of each row is padding), the same tokens as a decode with
        `max_new_tokens=most`. So one program, its cache sized for `max_new_tokens`,
        serves every shorter request.
      beams: Whether to search (True) or decode one token at a time (False), where
        `num_beams` is a tensor whose branch is known: XLA then compiles only that branch.
        None decides by `num_beams`.
    """
    encoded = steps.encode(input_ids, attention_mask)
    iterations = settings.max_new_tokens if most is None else most - 1

    def run(search: _Search):
        return search.result(_run(search, search.start(), settings, iterations))

    def one_at_a_time():
        return run(_one_at_a_time(steps, encoded, attention_mask, settings))

    def beam_search():
        beams = settings.num_beams
        # Every beam of an example reads the same encoder states.
        return run(
            _beam_search(
                steps,
                tf.repeat(encoded, beams, axis=0),
                tf.repeat(attention_mask, beams, axis=0),
                settings,
            )
        )

    if beams is None and isinstance(settings.num_beams, int):
        beams = settings.num_beams > 1
    if beams is not None:
        return beam_search() if beams else one_at_a_time()
    return tf.cond(settings.num_beams > 1, beam_search, one_at_a_time)


@dataclasses.dataclass(frozen=True)
class _Search:
    """One way of decoding as the parts of a loop over a state (a dict of tensors, the
    cache under "cache"): `start()` is the state once the first token is chosen, `body`
    chooses one more while `going`, and `result` is the ids [batch, max_new_tokens].
    `shown` is the ids every later state's result starts with; `done` [batch], the rows
    whose result is already final."""

    start: Callable[[], dict]
    going: Callable[[dict], tf.Tensor]
    body: Callable[[dict], dict]
    result: Callable[[dict], tf.Tensor]
    shown: Callable[[dict], tf.Tensor]
    done: Callable[[dict], tf.Tensor]


def _run(search: _Search, state: dict, settings: DecodingSettings, iterations) -> dict:
    """`state` after at most `iterations` more tokens."""
    (state,) = tf.while_loop(
        search.going,
        lambda state: (search.body(state),),
        (state,),
        maximum_iterations=iterations,
        shape_invariants=_invariants((state,), settings),
    )
    return state


def _one_at_a_time(steps: DecoderSteps, encoded, encoder_mask, settings: DecodingSettings):
    """Greedy decoding, or sampling when `settings.temperature` > 0."""
    rows = tf.shape(encoded)[0]
    width = settings.max_new_tokens + 1
    vocab = steps.vocab_size

    def choose(logits, sequences, length):
        scores = _process(logits, sequences, length, settings, steps.end_id, vocab)

        def sampled():
            filtered = filter_scores(
                scores, temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p
            )
            # Every row draws from (seed, step) alone, the same bits with and without XLA,
            # so a source samples the same text whatever else is in its batch.
            seeds = tf.fill([rows], tf.cast(settings.seed, tf.int32))
            return gumbel_choice(filtered, hashed_uniform(seeds, length, vocab))

        def greedy():
            return tf.argmax(scores, axis=-1, output_type=tf.int32)

        if isinstance(settings.temperature, (int, float)):
            return sampled() if settings.temperature > 0 else greedy()
        return tf.cond(settings.temperature > 0, sampled, greedy)

    def advance(state, logits):
        """The state with the token at `length` chosen (the end token, then padding)."""
        length, sequences, finished = state["length"], state["sequences"], state["finished"]
        token = tf.where(finished, steps.pad_id, choose(logits, sequences, length))
        sequences = tf.tensor_scatter_nd_update(
            sequences, tf.stack([tf.range(rows), tf.fill([rows], length)], axis=1), token
        )
        finished |= tf.equal(token, steps.end_id)
        return dict(state, length=length + 1, sequences=sequences, finished=finished)

    def start():
        sequences = tf.concat(
            [tf.fill([rows, 1], steps.start_id), tf.fill([rows, width - 1], steps.pad_id)],
            axis=1,
        )
        logits, cache = steps.first(sequences[:, 0], encoded, encoder_mask, settings.max_new_tokens)
        state = dict(length=tf.constant(1), sequences=sequences, finished=tf.zeros([rows], tf.bool))
        return advance(dict(state, cache=cache), logits)

    def going(state):
        return (state["length"] < width) & ~tf.reduce_all(state["finished"])

    def body(state):
        length = state["length"]
        token = tf.gather(state["sequences"], length - 1, axis=1)
        logits, cache = steps.step(token, length - 1, state["cache"], encoded, encoder_mask)
        return advance(dict(state, cache=cache), logits)

    def result(state):
        return state["sequences"][:, 1:]

    def done(state):
        return state["finished"] | (state["length"] >= width)

    return _Search(start, going, body, result, shown=result, done=done)


def _invariants(loop_vars, settings: DecodingSettings):
    """The loop variables' shapes: as they are for Python settings (XLA wants them static),
    every dimension free for tensor settings (whose shapes the graph learns only at run
    time, after some dimensions were already seen as known)."""
    if isinstance(settings.num_beams, int) and isinstance(settings.max_new_tokens, int):
        return tf.nest.map_structure(lambda t: t.shape, loop_vars)
    return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), loop_vars)


def _gather_beams(tensor, indices):
    """Rows of `tensor` [batch, beams, ...] picked by `indices` [batch, n] along the beams."""
    return tf.gather(tensor, indices, axis=1, batch_dims=1)


def _beam_search(steps: DecoderSteps, encoded, encoder_mask, settings: DecodingSettings):
    """Beam search; `encoded` and `encoder_mask` hold a row per beam (batch x beams)."""
    beams = settings.num_beams
    batch = tf.shape(encoded)[0] // beams
    width = settings.max_new_tokens + 1
    vocab = steps.vocab_size
    penalty = settings.length_penalty

    def flat(t):
        if t.shape[2:].is_fully_defined():  # keeps static shapes for XLA
            return tf.reshape(t, [-1] + t.shape[2:].as_list())
        return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], axis=0))

    def unflat(t):
        return tf.reshape(t, tf.concat([[batch, beams], tf.shape(t)[1:]], axis=0))

    def advance(state, logits):
        length = state["length"]
        log_probs = tf.nn.log_softmax(logits)
        log_probs = _process(
            log_probs, flat(state["running"]), length, settings, steps.end_id, vocab
        )
        log_probs = unflat(log_probs) + state["running_scores"][:, :, None]
        log_probs = tf.reshape(log_probs, [batch, beams * vocab])
        # Twice the beams: even if every best candidate ends here, `beams` stay alive.
        top_scores, top_indices = tf.math.top_k(log_probs, k=2 * beams)
        from_beam = top_indices // vocab
        tokens = top_indices % vocab
        candidates = _gather_beams(state["running"], from_beam)
        at_length = tf.one_hot(length, width, on_value=True, off_value=False)[None, None, :]
        candidates = tf.where(at_length, tokens[:, :, None], candidates)
        ended = tf.equal(tokens, steps.end_id)
        # Only the first `beams` candidates may end a target.
        just_done = ended & (tf.range(2 * beams) < beams)[None, :]
        alive_scores = top_scores + tf.cast(ended, tf.float32) * NEG_INF
        next_alive = tf.math.top_k(alive_scores, k=beams).indices
        running = _gather_beams(candidates, next_alive)
        running_scores = _gather_beams(alive_scores, next_alive)
        ranked = top_scores / tf.cast(length, tf.float32) ** penalty
        ranked += tf.cast(~just_done, tf.float32) * NEG_INF
        merged_scores = tf.concat([state["ended_scores"], ranked], axis=1)
        best = tf.math.top_k(merged_scores, k=beams).indices
        rows = tf.reshape(
            _gather_beams(from_beam, next_alive) + tf.range(batch)[:, None] * beams, [-1]
        )
        return dict(
            state,
            length=length + 1,
            running=running,
            running_scores=running_scores,
            ended=_gather_beams(tf.concat([state["ended"], candidates], axis=1), best),
            ended_scores=_gather_beams(merged_scores, best),
            done=_gather_beams(tf.concat([state["done"], just_done], axis=1), best),
            cache=steps.reorder(state["cache"], rows),
        )

    def start():
        running = tf.concat(
            [
                tf.fill([batch, beams, 1], steps.start_id),
                tf.fill([batch, beams, width - 1], steps.pad_id),
            ],
            axis=2,
        )
        logits, cache = steps.first(
            tf.fill([batch * beams], steps.start_id), encoded, encoder_mask, settings.max_new_tokens
        )
        state = dict(
            length=tf.constant(1),
            running=running,
            # Only the first beam is alive at the start: the others would repeat it.
            running_scores=tf.tile(
                tf.where(tf.range(beams) == 0, 0.0, NEG_INF)[None, :], [batch, 1]
            ),
            ended=tf.fill([batch, beams, width], steps.pad_id),
            ended_scores=tf.fill([batch, beams], NEG_INF),
            done=tf.zeros([batch, beams], tf.bool),
            cache=cache,
        )
        return dict(advance(state, logits), searching=tf.ones([batch], tf.bool))

    def improvable(state):
        """[batch]: whether an example's best running beam may still beat a finished one."""
        length = state["length"]
        best_alive = state["running_scores"][:, :1] / tf.cast(length - 1, tf.float32) ** penalty
        worst_done = tf.where(
            state["done"], tf.reduce_min(state["ended_scores"], axis=1, keepdims=True), NEG_INF
        )
        return tf.reduce_any(best_alive > worst_done, axis=1)

    def going(state):
        return (state["length"] < width) & tf.reduce_any(state["searching"] & improvable(state))

    def body(state):
        searching = state["searching"] & improvable(state)
        tokens = tf.reshape(
            tf.gather(state["running"], state["length"] - 1, axis=2), [batch * beams]
        )
        logits, cache = steps.step(
            tokens, state["length"] - 1, state["cache"], encoded, encoder_mask
        )
        new = advance(dict(state, cache=cache), logits)
        # An example whose search is over keeps its beams, as if it had been decoded alone:
        # its summary must not depend on how long the other examples in the batch search.
        for key in ("running", "running_scores", "ended", "ended_scores", "done"):
            keep = tf.reshape(searching, [-1] + [1] * (new[key].shape.rank - 1))
            new[key] = tf.where(keep, new[key], state[key])
        new["searching"] = searching
        return new

    def result(state):
        none_done = ~tf.reduce_any(state["done"], axis=1)
        best = tf.where(none_done[:, None], state["running"][:, 0], state["ended"][:, 0])
        return best[:, 1:]

    def done(state):
        return ~(state["searching"] & improvable(state)) | (state["length"] >= width)

    def shown(state):
        """The tokens every live hypothesis (running, or ended and kept) agrees on: the
        result extends one of them, so it starts with these."""
        hypotheses = tf.concat([state["running"], state["ended"]], axis=1)
        live = tf.concat([state["running_scores"] > NEG_INF / 2, state["done"]], axis=1)
        reference = state["running"][:, :1]
        agree = tf.reduce_all(
            tf.equal(hypotheses, reference) | ~live[:, :, None], axis=1
        )  # [batch, width]
        written = tf.range(width)[None, :] < state["length"]
        agreed = tf.math.cumprod(tf.cast(agree & written, tf.int32), axis=1) > 0
        common = tf.where(agreed, reference[:, 0], steps.pad_id)
        return tf.where(done(state)[:, None], result(state), common[:, 1:])

    return _Search(start, going, body, result, shown=shown, done=done)


# The decoding state a stream carries between calls, besides the cache and the encoder's
# output: beam search's own (greedy decoding's fits it with one beam).
STREAM_STATE = ("length", "running", "running_scores", "ended", "ended_scores", "done", "searching")


def stream_start(
    steps: DecoderSteps, input_ids, attention_mask, settings: DecodingSettings, chunk
) -> dict:
    """The first `chunk` tokens of `decode` (settings as tensors): a dict of the stream's
    state (`STREAM_STATE`, "cache", "encoded", "encoder_mask"), "ids" (the tokens that
    will start the result, the result itself for finished rows) and "finished" [batch].
    `stream_continue` goes on from it; the ids of the last call are `decode`'s."""
    encoded = steps.encode(input_ids, attention_mask)

    def one_at_a_time():
        search = _one_at_a_time(steps, encoded, attention_mask, settings)
        state = _run(search, search.start(), settings, chunk - 1)
        return _streamed(search, _as_beams(state), encoded, attention_mask)

    def beam_search():
        beams = settings.num_beams
        encoded_beams = tf.repeat(encoded, beams, axis=0)
        mask_beams = tf.repeat(attention_mask, beams, axis=0)
        search = _beam_search(steps, encoded_beams, mask_beams, settings)
        state = _run(search, search.start(), settings, chunk - 1)
        return _streamed(search, state, encoded_beams, mask_beams)

    return tf.cond(settings.num_beams > 1, beam_search, one_at_a_time)


def stream_continue(steps: DecoderSteps, stream: dict, settings: DecodingSettings, chunk) -> dict:
    """`chunk` more tokens after `stream` (the state a `stream_start` or `stream_continue`
    returned); the same dict again. The state's shape decides the width and the beams, so
    a request cannot change them on the way."""
    shape = tf.shape(stream["running"])
    settings = dataclasses.replace(settings, num_beams=shape[1], max_new_tokens=shape[2] - 1)
    encoded, mask = stream["encoded"], stream["encoder_mask"]
    state = {key: stream[key] for key in (*STREAM_STATE, "cache")}

    def one_at_a_time():
        search = _one_at_a_time(steps, encoded, mask, settings)
        greedy = dict(
            length=state["length"],
            sequences=state["running"][:, 0],
            finished=~state["searching"],
            cache=state["cache"],
        )
        return _streamed(search, _as_beams(_run(search, greedy, settings, chunk)), encoded, mask)

    def beam_search():
        search = _beam_search(steps, encoded, mask, settings)
        return _streamed(search, _run(search, state, settings, chunk), encoded, mask)

    return tf.cond(settings.num_beams > 1, beam_search, one_at_a_time)


def _as_beams(state: dict) -> dict:
    """Greedy decoding's state as beam search's, with one beam and no ended hypotheses."""
    sequences = state["sequences"]
    rows = tf.shape(sequences)[0]
    return dict(
        length=state["length"],
        running=sequences[:, None, :],
        running_scores=tf.zeros([rows, 1]),
        ended=tf.zeros_like(sequences)[:, None, :],
        ended_scores=tf.zeros([rows, 1]),
        done=tf.zeros([rows, 1], tf.bool),
        searching=~state["finished"],
        cache=state["cache"],
        sequences=sequences,
        finished=state["finished"],
    )


def _streamed(search: _Search, state: dict, encoded, encoder_mask) -> dict:
    out = {key: state[key] for key in (*STREAM_STATE, "cache")}
    return dict(
        out,
        encoded=encoded,
        encoder_mask=encoder_mask,
        ids=search.shown(state),
        finished=search.done(state),
    )


class TextToText:
    """Texts in, generated texts out, with XLA: sources are padded to a length bucket and
    batches to a fixed size, so that each (bucket, batch size, settings) compiles once.

    Args:
      model: A `TFEncoderDecoderModel` with a BERT or GPT-2 decoder.
      source: The in-graph tokenizer of the sources (a `BertPreprocessor`).
      target: Turns target ids back into text (`detokenize`) and names the start, end and
        padding ids (`cls_id`, `sep_id`, `pad_id`, as `BertPreprocessor` does).
      batch_size: Sources decoded together.
      jit_compile: Compile decoding with XLA (else run it as a plain graph).
    """

    def __init__(self, model, source, target, *, batch_size: int = 32, jit_compile: bool = True):
        self.source, self.target, self.batch_size = source, target, batch_size
        self.steps = decoder_steps(
            model, start_id=target.cls_id, end_id=target.sep_id, pad_id=target.pad_id
        )
        self._decode = tf.function(self._ids, jit_compile=jit_compile)

    def _ids(self, input_ids, attention_mask, settings):
        return decode(self.steps, input_ids, attention_mask, settings)

    def ids(self, texts: list[str], settings: DecodingSettings) -> tf.Tensor:
        """Target ids [len(texts), max_new_tokens] (see `decode`)."""
        from tfhf.generation.generator import bucket_length

        settings.check()
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            ids = self.source.tokenize(tf.constant(chunk))
            width = bucket_length(int(tf.reduce_max(ids.row_lengths())), self.source.max_seq_length)
            ids = ids.to_tensor(default_value=self.source.pad_id, shape=[self.batch_size, width])
            ids = tf.cast(ids, tf.int32)
            mask = tf.cast(tf.not_equal(ids, self.source.pad_id), tf.int32)
            out.append(self._decode(ids, mask, settings)[: len(chunk)])
        return tf.concat(out, axis=0)

    def __call__(self, texts: list[str], settings: DecodingSettings) -> list[str]:
        """The generated text of each source."""
        ids = self.ids(texts, settings)
        return [t.decode("utf-8") for t in self.target.detokenize(ids).numpy()]
