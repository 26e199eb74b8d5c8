"""Generation speed: XLA-compiled vs eager tokens/s at batch 1 and 8, and compile counts.

  python benchmarks/generate_speed.py --model=runs/lm

Without a trained model (no --model, or runs/lm missing) it times a random-init
GPT-2 of the default lm size: speed depends on shapes, not on the weights' values.
"""

from __future__ import annotations

import time

from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_MODEL = flags.DEFINE_string("model", "runs/lm", "A trained lm workdir.")
_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 64, "Tokens generated per prompt.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs per figure (best is kept).")


def _tokens_per_second(generator, prompts, settings, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ids, width = generator.generate_ids(prompts, settings)
        ids.numpy()
        best = min(best, time.perf_counter() - start)
    return len(prompts) * settings.max_new_tokens / best


def main(argv):
    del argv
    from lm_models import PROMPTS, model_and_tokenizer

    from tfhf.generation.generator import GenerationSettings, Generator, bucket_length

    model, tokenizer, what = model_and_tokenizer(_MODEL.value)
    print(f"model: {what}, {model.count_params():,} parameters, context {model.config.n_positions}")
    # min_new_tokens is not used: an eos would only stop eager runs early, which flatters them.
    settings = GenerationSettings(max_new_tokens=_NEW_TOKENS.value, decoding="greedy")
    xla = Generator(model, tokenizer)
    eager = Generator(model, tokenizer, jit_compile=False)
    for batch in (1, 8):
        prompts = PROMPTS[:batch]
        start = time.perf_counter()
        xla.generate_ids(prompts, settings)[0].numpy()
        compile_seconds = time.perf_counter() - start
        fast = _tokens_per_second(xla, prompts, settings, _REPEATS.value)
        slow = _tokens_per_second(eager, prompts, settings, 1)
        print(
            f"batch {batch}: XLA {fast:.1f} tokens/s (first call incl. compile "
            f"{compile_seconds:.1f} s), eager {slow:.1f} tokens/s, ratio {fast / slow:.1f}x"
        )
    # Ten prompts of ten different lengths: prefixes of one long line.
    words = " ".join(PROMPTS[5:]).split()
    ten = [" ".join(words[: 3 * n + 1]) for n in range(10)]
    lengths = [len(tokenizer(p)["input_ids"]) for p in ten]
    counting = Generator(model, tokenizer)
    for prompt in ten:
        counting.generate_ids([prompt], GenerationSettings(max_new_tokens=8))
    buckets = sorted({bucket_length(n, counting.context) for n in lengths})
    print(
        f"ten prompts of token lengths {lengths}: {counting.compilations} compilations "
        f"(buckets used: {buckets})"
    )


if __name__ == "__main__":
    app.run(main)
