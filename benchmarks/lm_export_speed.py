"""Exported generation against XLA generation of the same model: greedy tokens/s.

  python benchmarks/lm_export_speed.py --model=runs/lm

Exports the model of a trained lm workdir (the export needs its tokenizer as trained) to a
temporary folder, loads the SavedModel back as TF Serving would run it, and times,
in this one process: the export's `serving_default` (plain graph ops: any TF Serving), its
`serving_default_xla` (one XLA program per shape: a TF Serving started with
`--xla_cpu_compilation_enabled`, and `tfhf.serve`), and transformers' `generate` under
`tf.function(jit_compile=True)` (tfhf.generate's path). Same prompts, the best of
`--repeats` runs; tokens/s counts `--max_new_tokens` per prompt, and the three texts are
compared (the same texts stop at the same end-of-text token).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_MODEL = flags.DEFINE_string("model", "runs/lm", "A trained lm workdir.")
_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 64, "Tokens generated per prompt.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per figure (best is kept).")
_BATCHES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Prompts per call.")


def _best_seconds(fn, repeats: int) -> float:
    fn()  # compiles (XLA) or traces
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv):
    del argv
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    from lm_models import PROMPTS, model_and_tokenizer

    from tfhf.generation.generator import GenerationSettings, Generator
    from tfhf.serving.lm_export import export_language_model

    if not Path(_MODEL.value).exists():
        raise app.UsageError(f"--model {_MODEL.value}: no such lm workdir")
    model, tokenizer, what = model_and_tokenizer(_MODEL.value)
    n = _NEW_TOKENS.value
    print(f"model: {what}, {model.count_params():,} parameters; greedy, {n} new tokens")
    generator = Generator(model, tokenizer)
    with tempfile.TemporaryDirectory() as root:
        version = export_language_model(model, tokenizer, Path(root), default_max_new_tokens=n)
        loaded = tf.saved_model.load(str(version))
        # Every control given: the signatures' defaults are for TF Serving's requests.
        controls = {
            "max_new_tokens": tf.constant([n]),
            "temperature": tf.constant([0.0]),
            "top_k": tf.constant([0]),
            "top_p": tf.constant([1.0]),
            "seed": tf.constant([0]),
        }
        for batch in map(int, _BATCHES.value):
            prompts = PROMPTS[:batch]
            texts = {}

            def export(name, prompts=prompts, texts=texts):
                def run():
                    out = loaded.signatures[name](prompt=tf.constant(prompts), **controls)
                    texts[name] = [t.decode("utf-8") for t in out["text"].numpy()]

                return run

            def xla(prompts=prompts, texts=texts):
                settings = GenerationSettings(max_new_tokens=n)
                texts["generate"] = [c[0] for c in generator(prompts, settings)]

            figures = {
                name: batch * n / _best_seconds(fn, _REPEATS.value)
                for name, fn in (
                    ("serving_default", export("serving_default")),
                    ("serving_default_xla", export("serving_default_xla")),
                    ("generate (XLA)", xla),
                )
            }
            base = figures["generate (XLA)"]
            same = texts["serving_default"] == texts["serving_default_xla"] == texts["generate"]
            print(
                f"batch {batch}: "
                + ", ".join(f"{k} {v:,.0f} tokens/s ({v / base:.2f}x)" for k, v in figures.items())
                + f"; same text: {same}"
            )


if __name__ == "__main__":
    app.run(main)
