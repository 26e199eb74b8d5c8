"""python -m tfhf.generate: continue prompts with a language model, or write the summary or
translation of each text with a summarize or translate model, XLA-compiled.

Decoding follows the exports' controls: `--temperature` 0 decodes greedily, or by beam
search with `--num_beams` above 1; above 0 it samples (`--top_k`, `--top_p`, `--seed`).
Settings not given are the model's: for an lm, greedy decoding of 64 new tokens at most
(what its export does by default); for a summarize or translate model, the decoding its
run's test split was scored with. One output per text is printed (an lm's prompt and
continuation, then a blank line).

Examples:
  python -m tfhf.generate --model=runs/lm --text="ROMEO." --max_new_tokens=80
  python -m tfhf.generate --model=runs/lm --text="KING." --temperature=0.8 --top_k=40 --seed=3
  python -m tfhf.generate --model=runs/summarize --input_file=descriptions.txt --num_beams=6
  python -m tfhf.generate --model=runs/translate --text="Insert Page Break" --num_beams=1
"""

from __future__ import annotations

from absl import flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.cli import Deprecated, EntryPoint, inverted, renamed
from tfhf.errors import TfhfError

_THE_MODELS = "unset: the model's"

_MODEL = flags.DEFINE_string(
    "model",
    None,
    "A tfhf lm, summarize or translate workdir or export, a HuggingFace GPT-2 folder, or a "
    "hub id (required).",
)
_JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", True, "Decode with XLA (--nojit_compile: without it, slower; to compare)."
)
_TEXT = flags.DEFINE_multi_string("text", [], "A prompt, or a text to summarize or translate.")
_INPUT_FILE = flags.DEFINE_string(
    "input_file",
    "",
    "Texts: .txt (one per line), or .csv/.tsv/.jsonl/TFRecord rows with --text_column; a "
    "glob, a comma-separated list or a folder of them, each optionally .gz.",
)
_TEXT_COLUMN = flags.DEFINE_string("text_column", "text", "Text column of --input_file.")
_MAX_NEW = flags.DEFINE_integer(
    "max_new_tokens", None, f"Most tokens to add ({_THE_MODELS}: an lm's 64, else its run's)."
)
_TEMPERATURE = flags.DEFINE_float(
    "temperature", None, f"0: greedy or beam search; above 0: sampling ({_THE_MODELS})."
)
_TOP_K = flags.DEFINE_integer(
    "top_k", None, f"Sampling: draw from the k likeliest tokens; 0: all ({_THE_MODELS})."
)
_TOP_P = flags.DEFINE_float(
    "top_p", None, f"Sampling: nucleus probability mass; 1.0: off ({_THE_MODELS})."
)
_SEED = flags.DEFINE_integer(
    "seed", None, f"Sampling seed: the same seed, the same text ({_THE_MODELS}, 42)."
)
_NUM_BEAMS = flags.DEFINE_integer(
    "num_beams", None, f"Beam width; 1: no beam search ({_THE_MODELS})."
)
_NUM_RETURN = flags.DEFINE_integer(
    "num_return_sequences", 1, "lm, sampling or beam search: continuations per prompt."
)
_LENGTH_PENALTY = flags.DEFINE_float(
    "length_penalty",
    None,
    f"Summarize and translate, beam search: > 0 favours longer outputs ({_THE_MODELS}).",
)
_MIN_NEW = flags.DEFINE_integer(
    "min_new_tokens",
    None,
    f"Summarize and translate: the end token is blocked before this many ({_THE_MODELS}).",
)
_NO_REPEAT = flags.DEFINE_integer(
    "no_repeat_ngram_size",
    None,
    f"Summarize and translate: no n-gram of this size repeats; 0: off ({_THE_MODELS}).",
)
_SEQ2SEQ_ONLY = (_LENGTH_PENALTY, _MIN_NEW, _NO_REPEAT)
_DECODING = (_MAX_NEW, _TEMPERATURE, _TOP_K, _TOP_P, _SEED, _NUM_BEAMS, *_SEQ2SEQ_ONLY)


def _decoding_was(value: str) -> list[str]:
    """What the old `--decoding` stands for, in today's flags."""
    # The old defaults: sampling at temperature 1, beam search with 4 beams.
    return {
        "greedy": ["--temperature=0", "--num_beams=1"],
        "sample": ["--temperature=1.0", "--num_beams=1"],
        "beam": ["--temperature=0", "--num_beams=4"],
    }.get(value) or _unknown_decoding(value)


def _unknown_decoding(value: str):
    raise TfhfError(f"unknown --decoding '{value}' (greedy, sample or beam)")


ENTRY_POINT = EntryPoint(
    program="tfhf.generate",
    doc=__doc__,
    groups=(
        ("model", ("model", "jit_compile")),
        ("input", ("text", "input_file", "text_column")),
        ("decoding", (*(flag.name for flag in _DECODING), "num_return_sequences")),
    ),
    deprecated=(
        renamed("model_dir", "model"),
        renamed("prompt", "text"),
        inverted("eager", "jit_compile"),
        Deprecated(
            "decoding",
            "--temperature (0: greedy, above 0: sampling) and --num_beams (above 1: beam search)",
            boolean=False,
            replace=_decoding_was,
            first=True,
        ),
    ),
)


def main(argv: list[str]) -> None:
    from absl import logging

    from tfhf import api

    logging.set_verbosity(logging.WARNING)
    if not _MODEL.value:
        raise TfhfError("--model is required")
    texts = api.read_inputs(_TEXT.value, _INPUT_FILE.value, _TEXT_COLUMN.value, "generate")
    model = api.load(_MODEL.value, jit_compile=_JIT_COMPILE.value)
    controls = {flag.name: flag.value for flag in _DECODING if flag.value is not None}
    if isinstance(model, api.LanguageModel):
        given = [flag.name for flag in _SEQ2SEQ_ONLY if flag.value is not None]
        if given:
            raise TfhfError(f"--{given[0]} applies to summarize and translate models only")
        outputs = model.generate(texts, num_return_sequences=_NUM_RETURN.value, **controls)
        for text, continuations in zip(texts, outputs, strict=True):
            for continuation in [continuations] if _NUM_RETURN.value == 1 else continuations:
                print(f"{text}{continuation}\n", flush=True)
        return
    if not isinstance(model, api.TextToTextModel):
        raise TfhfError(
            f"--model {_MODEL.value}: a {model.task} model; tfhf.generate takes lm, summarize "
            "and translate models (tfhf.predict takes every kind)"
        )
    if _NUM_RETURN.value != 1:
        raise TfhfError(
            "summarize and translate models write one summary or translation per text: "
            "--num_return_sequences=1"
        )
    for output in model.generate(texts, **controls):
        print(output, flush=True)


if __name__ == "__main__":
    ENTRY_POINT.run(main)
