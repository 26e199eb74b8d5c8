"""A summarize or translate SavedModel: outputs per second at batch 1 and 8, greedy and 4
beams, and whether the export writes what `tfhf.generate` writes on the run's workdir.

  python benchmarks/text_to_text_export_speed.py --export_dir=savedmodels/summarize \\
      --workdir=runs/summarize --dataset=debian_descriptions
  python benchmarks/text_to_text_export_speed.py --export_dir=savedmodels/translate \\
      --workdir=runs/translate --dataset=libreoffice_en_zh

The texts are the first test-split sources of the packaged dataset. The export runs as TF
Serving runs it: a plain graph, no XLA. `tfhf.generate` compiles with XLA.
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
    serve = loaded.signatures["serving_default"]
    (output,) = serve.structured_outputs  # "summary" or "translation"
    model, source, target, saved = load_text_to_text_folder(Path(_WORKDIR.value) / "model")
    run_settings = DecodingSettings(**saved["decoding"])
    max_new = run_settings.max_new_tokens
    print(f"export {version}; {len(texts)} test texts; max_new_tokens {max_new}")

    def call(batch, beams):
        inputs = dict(CONTROLS, max_new_tokens=max_new, num_beams=beams)
        inputs = {k: tf.constant([v]) for k, v in inputs.items()}
        out = serve(text=tf.constant(batch), **inputs)[output].numpy()
        return [t.decode("utf-8") for t in out]

    exported = {}
    for beams in (1, 4):
        for size in (1, 8):
            batches = [texts[i : i + size] for i in range(0, len(texts), size)]
            call(batches[0], beams)  # the first call builds the function's kernels
            start = time.perf_counter()
            outputs = [s for batch in batches for s in call(batch, beams)]
            seconds = time.perf_counter() - start
            exported.setdefault(beams, outputs)
            name = "greedy" if beams == 1 else f"{beams} beams"
            print(f"{name}, batch {size}: {len(texts) / seconds:.2f} texts/s")
    generate = TextToText(model, source, target)  # XLA, as tfhf.generate runs
    for beams in (1, 4):
        settings = DecodingSettings(
            max_new_tokens=max_new,
            num_beams=beams,
            length_penalty=1.0,
            min_new_tokens=run_settings.min_new_tokens,
            no_repeat_ngram_size=run_settings.no_repeat_ngram_size,
        )
        same = sum(a == b for a, b in zip(exported[beams], generate(texts, settings), strict=True))
        name = "greedy" if beams == 1 else f"{beams} beams"
        print(f"{name}: export and tfhf.generate agree on {same} of {len(texts)} texts")


if __name__ == "__main__":
    app.run(main)
