"""A summarize or translate SavedModel: outputs per second at batch 1 and 8, greedy and 4
beams, for its plain `serving_default` (what TF Serving runs with no flags), its XLA twin
`serving_default_xla` (TF Serving: --xla_cpu_compilation_enabled) and `tfhf.generate`'s XLA
decoding of the same model, and whether the three write the same text.

  python benchmarks/text_to_text_export_speed.py --export_dir=savedmodels/summarize \\
      --workdir=runs/summarize --dataset=debian_descriptions
  python benchmarks/text_to_text_export_speed.py --export_dir=savedmodels/translate \\
      --workdir=runs/translate --dataset=libreoffice_en_zh

The texts are the first test-split sources of the packaged dataset. Every figure is the
best of `--repeats` passes over them, after one untimed pass (which compiles); all in one
process, so the figures compare with each other, not with another day's.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_EXPORT_DIR = flags.DEFINE_string("export_dir", "savedmodels/summarize", "Export root.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/summarize", "The run's workdir (parity).")
_TEXTS = flags.DEFINE_integer("texts", 16, "Texts timed per figure (and compared).")
_DATASET = flags.DEFINE_string("dataset", "debian_descriptions", "Packaged pairs to read.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes per figure; the best is shown.")

CONTROLS = dict(
    length_penalty=1.0, temperature=0.0, top_k=0, top_p=1.0, seed=0
)  # with max_new_tokens and num_beams, every input of the signature


def main(argv):
    del argv
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the graph's tokenizer ops)

    from tfhf.data.pairs import load_pairs
    from tfhf.generation.seq2seq import DecodingSettings, TextToText
    from tfhf.models.model_folder import load_text_to_text_folder
    from tfhf.serving.predictor import saved_model_version

    version = saved_model_version(Path(_EXPORT_DIR.value))
    if version is None:
        raise app.UsageError(f"no SavedModel version under {_EXPORT_DIR.value}")
    texts = load_pairs(dataset=_DATASET.value).test.sources[: _TEXTS.value]
    loaded = tf.saved_model.load(str(version))
    if "serving_default_xla" not in loaded.signatures:
        raise app.UsageError(f"{version} has no serving_default_xla: export it again")
    (output,) = loaded.signatures["serving_default"].structured_outputs
    model, source, target, saved = load_text_to_text_folder(Path(_WORKDIR.value) / "model")
    run_settings = DecodingSettings(**saved["decoding"])
    max_new = run_settings.max_new_tokens
    print(f"export {version}; {len(texts)} test texts; max_new_tokens {max_new}")

    def signature(name):
        def call(batch, beams):
            inputs = dict(CONTROLS, max_new_tokens=max_new, num_beams=beams)
            inputs = {k: tf.constant([v]) for k, v in inputs.items()}
            out = loaded.signatures[name](text=tf.constant(batch), **inputs)[output].numpy()
            return [t.decode("utf-8") for t in out]

        return call

    def generate(size, beams):
        decoder = TextToText(model, source, target, batch_size=size)  # as tfhf.generate
        # One object for every call: a new one would trace (and compile) again.
        settings = DecodingSettings(
            max_new_tokens=max_new,
            num_beams=beams,
            length_penalty=1.0,
            min_new_tokens=run_settings.min_new_tokens,
            no_repeat_ngram_size=run_settings.no_repeat_ngram_size,
        )
        return lambda batch, beams: decoder(batch, settings)

    for beams in (1, 4):
        for size in (1, 8):
            batches = [texts[i : i + size] for i in range(0, len(texts), size)]
            rates, outputs = {}, {}
            ways = {
                "serving_default": signature("serving_default"),
                "serving_default_xla": signature("serving_default_xla"),
                "tfhf.generate (XLA)": generate(size, beams),
            }
            for name, call in ways.items():
                for batch in batches:  # compiles each shape (and builds the plain kernels)
                    call(batch, beams)
                best = float("inf")
                for _ in range(_REPEATS.value):
                    start = time.perf_counter()
                    outputs[name] = [s for batch in batches for s in call(batch, beams)]
                    best = min(best, time.perf_counter() - start)
                rates[name] = len(texts) / best
            xla = rates["tfhf.generate (XLA)"]
            reference = outputs["tfhf.generate (XLA)"]
            decoding = "greedy" if beams == 1 else f"{beams} beams"
            for name, rate in rates.items():
                same = sum(a == b for a, b in zip(outputs[name], reference, strict=True))
                print(
                    f"{decoding}, batch {size}, {name}: {rate:.2f} texts/s "
                    f"({rate / xla:.2f}x XLA), same text as XLA on {same} of {len(texts)}"
                )


if __name__ == "__main__":
    app.run(main)
