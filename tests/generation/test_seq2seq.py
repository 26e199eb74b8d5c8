"""Encoder-decoder decoding: greedy and beam search agree with transformers' TF generate on
tiny BERT and GPT-2 decoders and on tiny T5, BART and Marian checkpoints, eager and under XLA,
and their settings are checked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import transformers

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import (
    CheckpointSteps,
    DecodingSettings,
    decode,
    decoder_steps,
    stream_continue,
    stream_start,
)

START, PAD = 2, 0


def tiny_pair(decoder: str):
    tf.keras.utils.set_random_seed(1)
    encoder = transformers.BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.3,  # peaked logits: near-ties would make the comparison a coin toss
    )
    if decoder == "bert":
        decoder_config = transformers.BertConfig(
            **{**encoder.to_dict(), "is_decoder": True, "add_cross_attention": True}
        )
    else:
        decoder_config = transformers.GPT2Config(
            vocab_size=40,
            n_positions=64,
            n_embd=24,
            n_layer=2,
            n_head=2,
            add_cross_attention=True,
            is_decoder=True,
            initializer_range=0.3,
        )
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder_config)
    config.decoder_start_token_id, config.pad_token_id = START, PAD
    return transformers.TFEncoderDecoderModel(config=config)


def tiny_checkpoint_model(kind: str):
    """A random-init T5, BART or Marian of the same size and ids as `tiny_pair`."""
    tf.keras.utils.set_random_seed(1)
    ids = dict(vocab_size=40, pad_token_id=PAD, decoder_start_token_id=START, eos_token_id=3)
    if kind == "t5":
        config = transformers.T5Config(
            d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, initializer_factor=8.0,
            **ids,
        )  # fmt: skip
    else:
        layers = dict(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=64, init_std=0.3, forced_eos_token_id=None,
        )  # fmt: skip
        kinds = {"bart": transformers.BartConfig, "marian": transformers.MarianConfig}
        config = kinds[kind](**layers, **ids)
    return transformers.TFAutoModelForSeq2SeqLM.from_config(config)


def sources():
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, (4, 7)).astype(np.int32)
    ids[:, 0], ids[:, -1] = START, 3  # source framing, as [CLS] ... [SEP]
    mask = np.ones_like(ids)
    ids[2, 5:], mask[2, 5:] = PAD, 0  # a shorter source, padded
    return tf.constant(ids), tf.constant(mask)


SETTINGS = [
    DecodingSettings(max_new_tokens=10),
    DecodingSettings(max_new_tokens=10, no_repeat_ngram_size=2),
    DecodingSettings(max_new_tokens=10, num_beams=3),
    DecodingSettings(max_new_tokens=10, num_beams=4, length_penalty=2.0),
    DecodingSettings(max_new_tokens=10, num_beams=4, length_penalty=-1.0),
    DecodingSettings(max_new_tokens=10, num_beams=3, no_repeat_ngram_size=2, min_new_tokens=4),
]


def with_an_end_it_writes(model):
    """(model, its decoder steps, the end token): the end token is one the model writes a few
    steps in, so that targets end early and every ending rule comes into play."""
    ids, mask = sources()
    never = decoder_steps(model, start_id=START, end_id=-1, pad_id=PAD)
    written = decode(never, ids, mask, DecodingSettings(max_new_tokens=8)).numpy()[:, 1:5]
    counts = np.bincount(written.ravel(), minlength=40)
    counts[[START, PAD]] = 0
    end = int(counts.argmax())
    model.config.eos_token_id = end
    return model, decoder_steps(model, start_id=START, end_id=end, pad_id=PAD), end


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def pair(request):
    return with_an_end_it_writes(tiny_pair(request.param))


@pytest.fixture(scope="module", params=["t5", "bart", "marian"])
def checkpoint(request):
    return with_an_end_it_writes(tiny_checkpoint_model(request.param))


def transformers_ids(model, ids, mask, settings: DecodingSettings, end: int) -> np.ndarray:
    """transformers' TF generate on each source alone: its beam search stops every row of a
    batch at once, ours each row on its own, so only one-row batches agree always (greedy
    rows are independent either way)."""
    if settings.num_beams == 1:
        return _transformers_row(model, ids, mask, settings, end)
    rows = [
        _transformers_row(model, ids[i : i + 1], mask[i : i + 1], settings, end)
        for i in range(ids.shape[0])
    ]
    return np.concatenate(rows, axis=0)


def _transformers_row(model, ids, mask, settings: DecodingSettings, end: int) -> np.ndarray:
    out = model.generate(
        input_ids=ids,
        eos_token_id=end,
        attention_mask=mask,
        max_new_tokens=settings.max_new_tokens,
        num_beams=settings.num_beams,
        length_penalty=settings.length_penalty,
        no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
        # transformers' TF generate counts the start token in min_length (and ignores
        # min_new_tokens for encoder-decoders).
        min_length=1 + settings.min_new_tokens,
        do_sample=False,
        early_stopping=False,
    ).numpy()[:, 1:]  # without the start token
    return np.pad(out, [[0, 0], [0, settings.max_new_tokens - out.shape[1]]])


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_decoding_matches_transformers(pair, settings):
    model, steps, end = pair
    ids, mask = sources()
    ours = decode(steps, ids, mask, settings).numpy()
    np.testing.assert_array_equal(ours, transformers_ids(model, ids, mask, settings, end))


@pytest.mark.parametrize("settings", [SETTINGS[0], SETTINGS[5]], ids=str)
def test_checkpoint_decoding_matches_transformers(checkpoint, settings):
    model, steps, end = checkpoint
    assert isinstance(steps, CheckpointSteps)
    ids, mask = sources()
    ours = decode(steps, ids, mask, settings).numpy()
    np.testing.assert_array_equal(ours, transformers_ids(model, ids, mask, settings, end))


def test_t5_decoding_under_xla_is_the_plain_graph_s():
    # T5 finds a token's position from the cache, the one thing XLA could see otherwise.
    _, steps, _ = with_an_end_it_writes(tiny_checkpoint_model("t5"))
    ids, mask = sources()
    compiled = tf.function(lambda i, m: decode(steps, i, m, SETTINGS[5]), jit_compile=True)
    np.testing.assert_array_equal(
        compiled(ids, mask).numpy(), decode(steps, ids, mask, SETTINGS[5]).numpy()
    )


@pytest.mark.parametrize("settings", [SETTINGS[1], SETTINGS[5]], ids=str)
def test_xla_decodes_as_the_plain_graph_does(pair, settings):
    _, steps, _ = pair
    ids, mask = sources()
    compiled = tf.function(lambda i, m: decode(steps, i, m, settings), jit_compile=True)
    np.testing.assert_array_equal(
        compiled(ids, mask).numpy(), decode(steps, ids, mask, settings).numpy()
    )


def test_the_comparison_covers_ended_targets_and_beams_that_differ(pair):
    _, steps, end = pair
    ids, mask = sources()
    greedy = decode(steps, ids, mask, SETTINGS[0]).numpy()
    beams = [decode(steps, ids, mask, s).numpy() for s in SETTINGS[2:5]]
    assert (greedy[:, :-1] == end).any()  # some target ends before the limit
    assert any((b[:, :-1] == end).any() for b in beams)
    assert any((b != greedy).any() for b in beams)
    for row in greedy:  # after its end token a row holds padding only
        if end in row:
            assert (row[list(row).index(end) + 1 :] == PAD).all()


def test_no_repeated_ngrams_and_no_early_end(pair):
    _, steps, end = pair
    ids, mask = sources()
    settings = DecodingSettings(max_new_tokens=12, no_repeat_ngram_size=2, min_new_tokens=5)
    for row in decode(steps, ids, mask, settings).numpy():
        tokens = [START] + [t for t in row.tolist() if t != PAD]
        pairs = list(zip(tokens, tokens[1:], strict=False))
        assert len(pairs) == len(set(pairs))
        assert end not in tokens[1:6]


@pytest.mark.parametrize(
    "settings, message",
    [
        (DecodingSettings(max_new_tokens=0), "--max_new_tokens must be positive"),
        (DecodingSettings(num_beams=0), "--num_beams must be positive"),
        (DecodingSettings(max_new_tokens=4, min_new_tokens=4), "must be below --max_new_tokens"),
        (DecodingSettings(temperature=0.7, num_beams=2), "sampling .* needs --num_beams=1"),
        (DecodingSettings(top_p=0.0), r"--top_p must be in \(0, 1\]"),
    ],
)
def test_settings_that_make_no_sense_are_refused(settings, message):
    with pytest.raises(TfhfError, match=message):
        settings.check()


@pytest.mark.parametrize("settings", [SETTINGS[5]], ids=str)
def test_settings_given_as_tensors_decode_as_python_values_do(pair, settings):
    # The SavedModel's controls arrive as tensors: one graph serves every width and length.
    _, steps, _ = pair
    ids, mask = sources()
    names = ("max_new_tokens", "num_beams", "length_penalty", "temperature", "top_k", "top_p")

    @tf.function
    def with_tensors(*values):
        return decode(
            steps, ids, mask, dataclasses.replace(settings, **dict(zip(names, values, strict=True)))
        )

    values = [
        tf.constant(
            getattr(settings, n),
            tf.float32 if isinstance(getattr(settings, n), float) else tf.int32,
        )
        for n in names
    ]
    np.testing.assert_array_equal(
        with_tensors(*values).numpy(), decode(steps, ids, mask, settings).numpy()
    )


def test_sampling_with_tensor_settings_draws_as_python_settings_do(pair):
    _, steps, _ = pair
    ids, mask = sources()
    settings = DecodingSettings(max_new_tokens=6, temperature=0.9, top_k=8, top_p=0.9, seed=3)
    tensors = dataclasses.replace(
        settings,
        temperature=tf.constant(0.9),
        top_k=tf.constant(8),
        top_p=tf.constant(0.9),
        seed=tf.constant(3),
        max_new_tokens=tf.constant(6),
        num_beams=tf.constant(1),
    )
    sampled = tf.function(lambda: decode(steps, ids, mask, tensors))().numpy()
    np.testing.assert_array_equal(sampled, decode(steps, ids, mask, settings).numpy())
    greedy = decode(steps, ids, mask, DecodingSettings(max_new_tokens=6)).numpy()
    assert (sampled != greedy).any()


@pytest.mark.parametrize("settings", [SETTINGS[1], SETTINGS[5]], ids=str)
def test_xla_with_a_larger_cache_and_a_cap_decodes_as_the_capped_plain_graph(pair, settings):
    # The export's XLA twin: the cache's size and the beams come from input shapes (so one
    # program serves each bucket), the request's max_new_tokens is `most`, a tensor.
    _, steps, _ = pair
    ids, mask = sources()

    def capped(ids, mask, room, beams, most):
        fixed = dataclasses.replace(
            settings, max_new_tokens=tf.shape(room)[0], num_beams=tf.shape(beams)[0]
        )
        return decode(steps, ids, mask, fixed, most=most, beams=settings.num_beams > 1)

    compiled = tf.function(capped, jit_compile=True)
    room, beams = tf.zeros([16]), tf.zeros([settings.num_beams])
    for most in (settings.max_new_tokens, 3):
        got = compiled(ids, mask, room, beams, tf.constant(most)).numpy()
        plain = decode(steps, ids, mask, dataclasses.replace(settings, max_new_tokens=most))
        assert got.shape == (ids.shape[0], 16)
        np.testing.assert_array_equal(got[:, :most], plain.numpy())
        assert (got[:, most:] == PAD).all()
    # One source alone (a served request of one text; its beams once lost their row count).
    one = compiled(ids[:1], mask[:1], room, beams, tf.constant(3)).numpy()
    plain = decode(steps, ids[:1], mask[:1], dataclasses.replace(settings, max_new_tokens=3))
    np.testing.assert_array_equal(one[:, :3], plain.numpy())


@pytest.mark.parametrize(
    "settings", [SETTINGS[3], DecodingSettings(max_new_tokens=6, temperature=1.5, seed=3)], ids=str
)
def test_each_source_decodes_as_it_would_alone(pair, settings):
    # Served requests are batched with whatever else arrives: a text's summary must not
    # depend on its neighbours (transformers' TF beam search stops all rows at once; a
    # sampled row draws its noise from the seed and the step, not from its place).
    _, steps, _ = pair
    ids, mask = sources()
    batch = decode(steps, ids, mask, settings).numpy()
    for row in range(ids.shape[0]):
        alone = decode(steps, ids[row : row + 1], mask[row : row + 1], settings).numpy()
        np.testing.assert_array_equal(alone[0], batch[row])


# Traced once per decoder and fixed settings, as the export traces them: the controls and the
# chunk size arrive as tensors, so every case after the first reuses the same graphs.
_TRACED: dict = {}


def _traced(steps, fixed: DecodingSettings):
    """(decode, stream_start, stream_continue) for `steps`, taking the controls as tensors."""
    key = (id(steps), fixed.min_new_tokens, fixed.no_repeat_ngram_size)
    if key not in _TRACED:

        def settings(controls):
            return dataclasses.replace(fixed, **controls)

        _TRACED[key] = (
            tf.function(lambda ids, mask, c: decode(steps, ids, mask, settings(c))),
            tf.function(lambda ids, mask, c, n: stream_start(steps, ids, mask, settings(c), n)),
            tf.function(lambda state, c, n: stream_continue(steps, state, settings(c), n)),
        )
    return _TRACED[key]


def _controls(settings: DecodingSettings) -> dict:
    """The settings as the SavedModel's controls arrive: scalar tensors."""
    names = ("max_new_tokens", "num_beams", "length_penalty", "temperature", "top_k", "top_p")
    return {n: tf.constant(getattr(settings, n)) for n in (*names, "seed")}


def _streamed(steps, ids, mask, settings: DecodingSettings, chunk: int) -> list[np.ndarray]:
    """The ids each call of a stream shows, `chunk` tokens a call, until every row is done."""
    _, start, more = _traced(steps, settings)
    controls, chunk = _controls(settings), tf.constant(chunk)
    out, shown = start(ids, mask, controls, chunk), []
    while True:
        shown.append(out["ids"].numpy())
        if out["finished"].numpy().all():
            return shown
        assert len(shown) <= settings.max_new_tokens, "the stream does not end"
        state = {k: v for k, v in out.items() if k not in ("ids", "finished")}
        out = more(state, controls, chunk)


# One fixed part (min_new_tokens, no_repeat_ngram_size) for all four, so that they share graphs.
STREAMED = [
    DecodingSettings(max_new_tokens=10, no_repeat_ngram_size=2, min_new_tokens=4),
    DecodingSettings(
        max_new_tokens=10,
        temperature=0.9,
        top_k=8,
        seed=3,
        no_repeat_ngram_size=2,
        min_new_tokens=4,
    ),
    DecodingSettings(max_new_tokens=10, num_beams=3, no_repeat_ngram_size=2, min_new_tokens=4),
    DecodingSettings(
        max_new_tokens=10, num_beams=4, length_penalty=2.0, no_repeat_ngram_size=2, min_new_tokens=4
    ),
]


@pytest.mark.parametrize("settings, chunk", list(zip(STREAMED, [1, 3, 1, 2], strict=True)), ids=str)
def test_a_stream_ends_in_what_one_call_decodes_and_never_takes_back_a_token(pair, settings, chunk):
    _, steps, _ = pair
    ids, mask = sources()
    whole = _traced(steps, settings)[0](ids, mask, _controls(settings)).numpy()
    shown = _streamed(steps, ids, mask, settings, chunk)
    np.testing.assert_array_equal(shown[-1], whole)
    for before in shown[:-1]:
        # What a call shows is how the result starts: the shown tokens, then padding.
        kept = before != PAD
        assert (np.cumprod(kept, axis=1) == kept).all()
        np.testing.assert_array_equal(np.where(kept, whole, PAD), before)
    assert len(shown) <= -(-settings.max_new_tokens // chunk)
    if chunk == 1:
        # Text arrives before the end: for beam search, as soon as the beams agree.
        assert (shown[len(shown) // 2] != PAD).any()


@pytest.mark.parametrize("checkpoint", ["t5"], indirect=True)  # positions read from the cache
def test_a_checkpoint_streams_what_it_decodes(checkpoint):
    _, steps, _ = checkpoint
    ids, mask = sources()
    for settings in (STREAMED[0], STREAMED[2]):
        whole = decode(steps, ids, mask, settings).numpy()
        np.testing.assert_array_equal(_streamed(steps, ids, mask, settings, 2)[-1], whole)
