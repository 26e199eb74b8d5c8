"""Interface strings of the libreoffice_en_zh test split, drawn by a fixed seed, with the
reference and what a translate SavedModel writes for them (its default decoding): a
markdown table.

  python benchmarks/translate_ui_strings.py --export_dir=savedmodels/translate

Interface strings are the pairs from LibreOffice's gettext catalogues (documents named
"ui/..."), short labels and messages; the draw takes --count of those with at most
--max_words English words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_EXPORT_DIR = flags.DEFINE_string("export_dir", "savedmodels/translate", "Export root.")
_COUNT = flags.DEFINE_integer("count", 10, "Strings drawn.")
_MAX_WORDS = flags.DEFINE_integer("max_words", 8, "Longest English string drawn, in words.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the draw.")


def main(argv):
    del argv
    import tensorflow_datasets as tfds

    from tfhf import api
    from tfhf.data.pairs import libreoffice_en_zh_builder
    from tfhf.serving.predictor import saved_model_version

    version = saved_model_version(Path(_EXPORT_DIR.value))
    if version is None:
        raise app.UsageError(f"no SavedModel version under {_EXPORT_DIR.value}")
    builder, _ = libreoffice_en_zh_builder()
    strings = [
        (example["source"].decode(), example["target"].decode())
        for example in tfds.as_numpy(builder.as_dataset(split="test"))
        if example["document"].startswith(b"ui/")
        and len(example["source"].split()) <= _MAX_WORDS.value
    ]
    strings.sort()  # the draw does not depend on the order tfds reads in
    chosen = np.random.default_rng(_SEED.value).choice(len(strings), _COUNT.value, replace=False)
    english = [strings[i][0] for i in sorted(chosen)]
    translator = api.load(version, jit_compile=False)  # the plain graph, as TF Serving runs it
    if not isinstance(translator, api.TextToTextModel):
        raise app.UsageError(f"{version} is not a text-to-text export")
    outputs = translator.generate(english)  # with the export's default controls
    print(
        f"{len(strings)} interface strings of at most {_MAX_WORDS.value} words in the test "
        f"split; {_COUNT.value} drawn with seed {_SEED.value}; export {version}, its default "
        "decoding\n"
    )
    print("| English | reference | tfhf |")
    print("|---|---|---|")
    for i, out in zip(sorted(chosen), outputs, strict=True):
        source, reference = strings[i]
        print(f"| {source} | {reference} | {out} |")


if __name__ == "__main__":
    app.run(main)
