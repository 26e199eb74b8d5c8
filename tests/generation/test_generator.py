"""Decoding modes, seeding, prompt bucketing (compilation counts) and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.generation.generator import GenerationSettings, Generator, bucket_length


def test_greedy_is_deterministic_and_matches_eager(tiny_lm):
    model, tokenizer = tiny_lm
    settings = GenerationSettings(max_new_tokens=12, decoding="greedy")
    xla = Generator(model, tokenizer)
    first = xla(["To be", "Whether 'tis"], settings)
    assert first == xla(["To be", "Whether 'tis"], settings)
    assert first == Generator(model, tokenizer, jit_compile=False)(
        ["To be", "Whether 'tis"], settings
    )
    # Greedy takes the argmax at every step: check the first new token against the model.
    ids, width = xla.generate_ids(["To be"], settings)
    prompt = tf.constant([tokenizer("To be")["input_ids"]])
    assert int(ids[0, width]) == int(tf.argmax(model(prompt).logits[0, -1]))


def test_left_padding_does_not_change_a_prompt_s_continuation(tiny_lm):
    model, tokenizer = tiny_lm
    gen = Generator(model, tokenizer)
    settings = GenerationSettings(max_new_tokens=8)
    alone = gen(["To be"], settings)[0]
    beside_longer = gen(["To be", "Whether 'tis nobler in the mind"], settings)[0]
    assert alone == beside_longer


def test_sampling_is_seeded(tiny_lm):
    model, tokenizer = tiny_lm
    gen = Generator(model, tokenizer)

    def sample(seed):
        return gen(
            ["To be"],
            GenerationSettings(
                max_new_tokens=16,
                decoding="sample",
                temperature=1.5,
                seed=seed,
                num_return_sequences=2,
            ),
        )

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert len(sample(1)[0]) == 2
    assert gen.compilations == 1  # seeds are data, not part of the compiled program


def test_beam_search_returns_the_best_scoring_sequence(tiny_lm):
    model, tokenizer = tiny_lm
    gen = Generator(model, tokenizer, jit_compile=False)
    settings = GenerationSettings(
        max_new_tokens=6, decoding="beam", num_beams=4, num_return_sequences=4
    )
    ids, width = gen.generate_ids(["To be"], settings)
    ids = ids.numpy()
    assert ids.shape[0] == 4 and len({tuple(r) for r in ids}) == 4
    _, mask = gen.encode(["To be"])

    def log_prob(row):
        full_mask = tf.concat([mask, tf.ones([1, len(row) - width], tf.int32)], axis=1)
        positions = tf.maximum(tf.cumsum(full_mask, axis=1) - 1, 0)
        logits = model(tf.constant([row]), attention_mask=full_mask, position_ids=positions).logits[
            0
        ]
        logp = tf.nn.log_softmax(logits, -1).numpy()
        return sum(logp[t - 1, row[t]] for t in range(width, len(row)))

    # All beams ran the full length (no end-of-text), so their scores compare directly.
    assert not (ids[:, width:] == tokenizer.eos_token_id).any()
    scores = [log_prob(row.tolist()) for row in ids]
    assert scores[0] == pytest.approx(max(scores), abs=1e-4)


def test_prompts_of_ten_lengths_compile_once_per_bucket(tiny_lm, lm_text):
    model, tokenizer = tiny_lm
    gen = Generator(model, tokenizer)
    words = lm_text.split()
    prompts = [" ".join(words[:n]) for n in range(1, 11)]
    lengths = [len(tokenizer(p)["input_ids"]) for p in prompts]
    assert len(set(lengths)) >= 5
    settings = GenerationSettings(max_new_tokens=4)
    for prompt in prompts:
        gen([prompt], settings)
    buckets = {bucket_length(n, gen.context) for n in lengths}
    assert gen.compilations == len(buckets) < len(set(lengths))


@pytest.mark.parametrize(
    "prompt, settings, message",
    [
        ("To be " * 40, GenerationSettings(max_new_tokens=4), "does not fit the model's context"),
        ("To be", GenerationSettings(max_new_tokens=60), "exceeds the model's context of 64"),
        ("To be", GenerationSettings(decoding="nucleus"), "unknown decoding 'nucleus'"),
        (
            "To be",
            GenerationSettings(decoding="beam", num_beams=2, num_return_sequences=3),
            "cannot exceed --num_beams",
        ),
        ("To be", GenerationSettings(decoding="sample", top_p=1.5), "--top_p must be in"),
        ("", GenerationSettings(), "empty prompt"),
    ],
)
def test_bad_generation_requests_are_refused(tiny_lm, prompt, settings, message):
    model, tokenizer = tiny_lm
    with pytest.raises(TfhfError, match=message):
        Generator(model, tokenizer)([prompt], settings)


def test_bucket_lengths_cover_and_cap_at_the_context():
    assert bucket_length(1, 64) == 8 and bucket_length(9, 64) == 16
    assert bucket_length(40, 64) == 64 and bucket_length(100, 1024) == 128
    assert all(bucket_length(n, 64) >= n for n in range(1, 65))
    np.testing.assert_equal(bucket_length(64, 64), 64)


def test_top_k_of_one_samples_the_greedy_text(tiny_lm):
    model, tokenizer = tiny_lm
    gen = Generator(model, tokenizer)
    greedy = gen(["To be"], GenerationSettings(max_new_tokens=10))
    narrow = gen(
        ["To be"], GenerationSettings(max_new_tokens=10, decoding="sample", top_k=1, seed=4)
    )
    assert narrow == greedy


def test_sampling_follows_the_model_distribution():
    from tfhf.generation.sampling import SeededSampling

    sampler = SeededSampling()
    logits = tf.math.log(tf.constant([[0.6, 0.3, 0.1, 1e-9]] * 4000))
    sampler.set(seed=1, temperature=1.0, top_k=0, top_p=1.0)
    picks = tf.argmax(sampler(None, logits, 5), -1).numpy()
    np.testing.assert_allclose(
        np.bincount(picks, minlength=4) / 4000, [0.6, 0.3, 0.1, 0], atol=0.03
    )
    sampler.set(seed=1, temperature=1.0, top_k=2, top_p=1.0)
    assert set(tf.argmax(sampler(None, logits, 5), -1).numpy()) == {0, 1}
    sampler.set(seed=1, temperature=1.0, top_k=0, top_p=0.5)
    assert set(tf.argmax(sampler(None, logits, 5), -1).numpy()) == {0}
    # A new step draws new noise: the same seed at another step picks differently somewhere.
    sampler.set(seed=1, temperature=1.0, top_k=0, top_p=1.0)
    assert (tf.argmax(sampler(None, logits, 6), -1).numpy() != picks).any()
