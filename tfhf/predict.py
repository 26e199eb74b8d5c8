"""python -m tfhf.predict: label texts with a trained classifier, fill in [MASK]s, or
summarize or translate texts.

`--model_dir` is a training workdir (the HuggingFace model in it is used), an
exported SavedModel version folder, or an export root (its highest version). For an
mlm workdir it prints the `--top_k` likeliest fillers of each [MASK]; for a summarize or
translate workdir or export, each text's summary or translation (decoded as the run's test
split was).

Examples:
  python -m tfhf.predict --model_dir=runs/classify --text="a gorgeous, witty film"
  python -m tfhf.predict --model_dir=savedmodels/classify/1 --input_file=reviews.txt
  python -m tfhf.predict --model_dir=runs/mlm --text="the movie was [MASK] ."
  python -m tfhf.predict --model_dir=runs/summarize --input_file=texts.jsonl --text_column=source
  python -m tfhf.predict --model_dir=savedmodels/summarize --text="GNU Emacs is ..."
  python -m tfhf.predict --model_dir=savedmodels/translate --text="Insert Page Break"
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.errors import TfhfError
from tfhf.serving.predictor import (
    load_predictor,
    load_text_to_text_export,
    saved_model_version,
)

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Workdir, SavedModel version folder or export root."
)
_TEXT = flags.DEFINE_multi_string("text", [], "A text to label; repeatable.")
_INPUT_FILE = flags.DEFINE_string(
    "input_file", "", "Texts to label: .txt (one per line), or .csv/.tsv/.jsonl with --text_column."
)
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "Text column of --input_file.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Texts per model call.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "mlm models: fillers shown per [MASK].")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
        from tfhf.data.sources import read_texts

        if not _MODEL_DIR.value:
            raise TfhfError("--model_dir is required")
        texts = list(_TEXT.value)
        if _INPUT_FILE.value:
            texts += read_texts(_INPUT_FILE.value, text_column=_TEXT_COLUMN.value)
        if not texts:
            raise TfhfError("nothing to predict: give --text (repeatable) or --input_file")
        if _BATCH_SIZE.value < 1:
            raise TfhfError(f"--batch_size must be positive, got {_BATCH_SIZE.value}")
        from pathlib import Path

        from tfhf.models.model_folder import is_text_to_text_folder
        from tfhf.serving.fill_mask import FillMask, is_masked_lm_folder

        folder = Path(_MODEL_DIR.value)
        if is_text_to_text_folder(folder / "model") or is_text_to_text_folder(folder):
            _text_to_text(folder, texts)
            return
        version = saved_model_version(folder)
        generate = load_text_to_text_export(version) if version is not None else None
        if generate is not None:
            for start in range(0, len(texts), _BATCH_SIZE.value):
                for text in generate(texts[start : start + _BATCH_SIZE.value]):
                    print(text, flush=True)
            return
        if is_masked_lm_folder(Path(_MODEL_DIR.value)):
            fill = FillMask(Path(_MODEL_DIR.value))
            for start in range(0, len(texts), _BATCH_SIZE.value):
                batch = texts[start : start + _BATCH_SIZE.value]
                for text, masks in zip(batch, fill(batch, top_k=_TOP_K.value), strict=True):
                    print(text, flush=True)
                    for n, fillers in enumerate(masks, 1):
                        shown = "  ".join(f"{token} {p:.4f}" for token, p in fillers)
                        print(f"  [MASK] {n}: {shown}", flush=True)
            return
        predictor = load_predictor(_MODEL_DIR.value)
        for start in range(0, len(texts), _BATCH_SIZE.value):
            batch = texts[start : start + _BATCH_SIZE.value]
            for text, (label, probability) in zip(batch, predictor(batch), strict=True):
                print(f"{label}\t{probability:.4f}\t{text}", flush=True)
    except TfhfError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _text_to_text(folder, texts: list[str]) -> None:
    """Prints each text's summary or translation, a line each, decoded as the run's test
    split was."""
    from tfhf.generation.seq2seq import DecodingSettings, TextToText
    from tfhf.models.loading import resolve_model
    from tfhf.models.model_folder import load_text_to_text_folder

    model, source, target, saved = load_text_to_text_folder(resolve_model(str(folder)))
    settings = DecodingSettings(**saved["decoding"])
    outputs = TextToText(model, source, target, batch_size=_BATCH_SIZE.value)(texts, settings)
    for output in outputs:
        print(output, flush=True)


if __name__ == "__main__":
    app.run(main)
