"""python -m tfhf.predict: use a trained model on texts, with the settings its run used.

`--model` is a training workdir, a model folder, an exported SavedModel version folder or
an export root (its highest version). What is printed, a line (or block) per text:
  classify       label<TAB>probability<TAB>text
  mlm            the text, then the --num_fillers likeliest fillers of each [MASK]
  summarize      the summary, decoded as the run's test split was
  translate      the translation, decoded as the run's test split was
  lm             the prompt and its continuation (greedy, as the export's default)
With --output_file, one JSON object per text instead, in input order: classify {text,
label, probability}; mlm {text, fillers: per [MASK] a list of {token, probability}};
summarize {text, summary}; translate {text, translation}; lm {prompt, continuation}.

Examples:
  python -m tfhf.predict --model=runs/classify --text="a gorgeous, witty film"
  python -m tfhf.predict --model=savedmodels/classify/1 --input_file=reviews.txt
  python -m tfhf.predict --model=savedmodels/classify --input_file='reviews/*.jsonl.gz' \\
      --output_file=labels.jsonl
  python -m tfhf.predict --model=runs/mlm --text="the movie was [MASK] ."
  python -m tfhf.predict --model=runs/summarize --input_file=texts.jsonl --text_column=source
  python -m tfhf.predict --model=savedmodels/translate --text="Insert Page Break"
"""

from __future__ import annotations

import contextlib
import json
import os

from absl import flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.cli import EntryPoint, renamed
from tfhf.errors import TfhfError

_MODEL = flags.DEFINE_string(
    "model", None, "Workdir, model folder, SavedModel version folder or export root (required)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Texts per model call.")
_JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", True, "Decode with XLA (summarize, translate and lm workdirs)."
)
_TEXT = flags.DEFINE_multi_string("text", [], "A text; repeatable.")
_INPUT_FILE = flags.DEFINE_string(
    "input_file",
    "",
    "Texts: .txt (one per line), or .csv/.tsv/.jsonl/TFRecord rows with --text_column; a "
    "glob, a comma-separated list or a folder of them, each optionally .gz.",
)
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "Text column of --input_file.")
_NUM_FILLERS = flags.DEFINE_integer("num_fillers", 5, "mlm models: fillers shown per [MASK].")
_OUTPUT_FILE = flags.DEFINE_string(
    "output_file",
    "",
    "Write one JSON line per text here, in input order, instead of printing (written under "
    "a .partial name and renamed when complete); progress and texts per second go to stderr.",
)

ENTRY_POINT = EntryPoint(
    program="tfhf.predict",
    doc=__doc__,
    groups=(
        ("model", ("model", "batch_size", "jit_compile")),
        ("input", ("text", "input_file", "text_column")),
        ("output", ("num_fillers", "output_file")),
    ),
    deprecated=(renamed("model_dir", "model"), renamed("top_k", "num_fillers")),
)


def main(argv: list[str]) -> None:
    import itertools
    import sys
    import time

    from absl import logging

    from tfhf import api

    logging.set_verbosity(logging.WARNING)
    if not _MODEL.value:
        raise TfhfError("--model is required")
    if _NUM_FILLERS.value < 1:
        raise TfhfError(f"--num_fillers must be positive, got {_NUM_FILLERS.value}")
    # Read as they are needed: a file of any size goes through in batches.
    texts = api.iter_inputs(_TEXT.value, _INPUT_FILE.value, _TEXT_COLUMN.value)
    first = next(texts, None)
    if first is None:
        raise TfhfError("nothing to predict: give --text (repeatable) or --input_file")
    texts = itertools.chain([first], texts)
    model = api.load(_MODEL.value, jit_compile=_JIT_COMPILE.value, batch_size=_BATCH_SIZE.value)
    if not _OUTPUT_FILE.value:
        while batch := list(itertools.islice(texts, _BATCH_SIZE.value)):
            _print(model, batch)
        return
    partial = f"{_OUTPUT_FILE.value}.partial"
    start, done, said = time.monotonic(), 0, 0.0
    try:
        with open(partial, "w", encoding="utf-8") as out:
            while batch := list(itertools.islice(texts, _BATCH_SIZE.value)):
                for row in _rows(model, batch):
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                done += len(batch)
                if (elapsed := time.monotonic() - start) - said >= 10:
                    said = elapsed
                    print(f"tfhf: {done} texts, {done / elapsed:.1f} texts/s", file=sys.stderr)
    except BaseException:  # a bad record deep in the input, or an interrupt: nothing half-written
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    os.replace(partial, _OUTPUT_FILE.value)
    elapsed = time.monotonic() - start
    print(
        f"tfhf: {done} texts in {elapsed:.1f} s ({done / elapsed:.1f} texts/s) -> "
        f"{_OUTPUT_FILE.value}",
        file=sys.stderr,
    )


def _print(model, batch: list[str]) -> None:
    """What predict prints for a batch of texts, a line (or block) per text."""
    from tfhf import api

    if isinstance(model, api.Classifier):
        for text, (label, probability) in zip(batch, model.predict(batch), strict=True):
            print(f"{label}\t{probability:.4f}\t{text}", flush=True)
    elif isinstance(model, api.MaskedLanguageModel):
        fills = model.fill_mask(batch, num_fillers=_NUM_FILLERS.value)
        for text, masks in zip(batch, fills, strict=True):
            print(text, flush=True)
            for n, fillers in enumerate(masks, 1):
                shown = "  ".join(f"{token} {p:.4f}" for token, p in fillers)
                print(f"  [MASK] {n}: {shown}", flush=True)
    elif isinstance(model, api.LanguageModel):
        for text, continuation in zip(batch, model.predict(batch), strict=True):
            print(f"{text}{continuation}\n", flush=True)
    else:
        for output in model.predict(batch):
            print(output, flush=True)


def _rows(model, batch: list[str]) -> list[dict]:
    """One JSON object per text: what predict prints, by name."""
    from tfhf import api

    if isinstance(model, api.Classifier):
        return [
            {"text": text, "label": label, "probability": round(float(probability), 6)}
            for text, (label, probability) in zip(batch, model.predict(batch), strict=True)
        ]
    if isinstance(model, api.MaskedLanguageModel):
        fills = model.fill_mask(batch, num_fillers=_NUM_FILLERS.value)
        return [
            {
                "text": text,
                "fillers": [
                    [{"token": t, "probability": round(float(p), 6)} for t, p in fillers]
                    for fillers in masks
                ],
            }
            for text, masks in zip(batch, fills, strict=True)
        ]
    if isinstance(model, api.LanguageModel):
        return [
            {"prompt": text, "continuation": continuation}
            for text, continuation in zip(batch, model.predict(batch), strict=True)
        ]
    name = "summary" if model.task == "summarize" else "translation"
    return [
        {"text": text, name: output}
        for text, output in zip(batch, model.predict(batch), strict=True)
    ]


if __name__ == "__main__":
    ENTRY_POINT.run(main)
