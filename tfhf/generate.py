"""python -m tfhf.generate: continue prompts with a trained language model, or write the
summary or translation of each text with a summarize or translate model, XLA-compiled.

For a text-to-text model (summarize, translate) the decoding settings not given are the ones
its run was evaluated with (beam search, no repeated n-grams); one output per text is
printed, a line each.

Examples:
  python -m tfhf.generate --model_dir=runs/lm --prompt="ROMEO." --max_new_tokens=80
  python -m tfhf.generate --model_dir=runs/lm --prompt="KING." --decoding=sample --top_k=40 --seed=3
  python -m tfhf.generate --model_dir=runs/summarize --input_file=descriptions.txt --num_beams=6
  python -m tfhf.generate --model_dir=runs/translate --prompt="Insert Page Break" --num_beams=1
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.errors import TfhfError
from tfhf.generation.generator import DECODINGS, GenerationSettings

_DEFAULTS = GenerationSettings()
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "A tfhf lm workdir or a HuggingFace folder.")
_PROMPT = flags.DEFINE_multi_string("prompt", [], "A prompt to continue; repeatable.")
_INPUT_FILE = flags.DEFINE_string("input_file", "", "Prompts, one per line.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", _DEFAULTS.max_new_tokens, "Tokens to add.")
# A plain string, not an enum flag, so a bad value gets tfhf's one-line error.
_DECODING = flags.DEFINE_string("decoding", _DEFAULTS.decoding, "|".join(DECODINGS))
_TEMPERATURE = flags.DEFINE_float("temperature", _DEFAULTS.temperature, "Sampling temperature.")
_TOP_K = flags.DEFINE_integer("top_k", _DEFAULTS.top_k, "Sample from the k likeliest (0: all).")
_TOP_P = flags.DEFINE_float("top_p", _DEFAULTS.top_p, "Nucleus sampling mass (1.0: off).")
_NUM_BEAMS = flags.DEFINE_integer("num_beams", _DEFAULTS.num_beams, "Beam width.")
_NUM_RETURN = flags.DEFINE_integer(
    "num_return_sequences", _DEFAULTS.num_return_sequences, "Continuations per prompt."
)
_SEED = flags.DEFINE_integer("seed", _DEFAULTS.seed, "Sampling seed.")
_LENGTH_PENALTY = flags.DEFINE_float(
    "length_penalty", 1.0, "Text-to-text models, beam search: > 0 favours longer outputs."
)
_MIN_NEW = flags.DEFINE_integer(
    "min_new_tokens", 0, "Text-to-text models: the end token is blocked before this many tokens."
)
_NO_REPEAT = flags.DEFINE_integer(
    "no_repeat_ngram_size", 0, "Text-to-text models: no n-gram of this size repeats (0: off)."
)
_SEQ2SEQ_ONLY = ("length_penalty", "min_new_tokens", "no_repeat_ngram_size")
_NO_XLA = flags.DEFINE_bool("eager", False, "Run without XLA (slow; for comparison).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
        from pathlib import Path

        from tfhf.generation.generator import Generator
        from tfhf.models.loading import load_causal_lm, resolve_model
        from tfhf.models.model_folder import is_text_to_text_folder
        from tfhf.tokenizers.bpe import load_bpe

        if not _MODEL_DIR.value:
            raise TfhfError("--model_dir is required")
        prompts = list(_PROMPT.value)
        if _INPUT_FILE.value:
            path = Path(_INPUT_FILE.value)
            if not path.is_file():
                raise TfhfError(f"{path}: file not found")
            prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        if not prompts:
            raise TfhfError("nothing to generate: give --prompt (repeatable) or --input_file")
        folder = resolve_model(_MODEL_DIR.value)
        if is_text_to_text_folder(folder):
            _text_to_text(folder, prompts)
            return
        given = [name for name in _SEQ2SEQ_ONLY if flags.FLAGS[name].present]
        if given:
            raise TfhfError(f"--{given[0]} applies to summarize and translate models only")
        settings = GenerationSettings(
            max_new_tokens=_MAX_NEW.value,
            decoding=_DECODING.value,
            temperature=_TEMPERATURE.value,
            top_k=_TOP_K.value,
            top_p=_TOP_P.value,
            num_beams=_NUM_BEAMS.value,
            num_return_sequences=_NUM_RETURN.value,
            seed=_SEED.value,
        )
        settings.check()
        generator = Generator(
            load_causal_lm(folder), load_bpe(folder), jit_compile=not _NO_XLA.value
        )
        for prompt, continuations in zip(prompts, generator(prompts, settings), strict=True):
            for text in continuations:
                print(f"{prompt}{text}\n", flush=True)
    except TfhfError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _text_to_text(folder, texts: list[str]) -> None:
    """Prints the summary or translation of each text, with the settings the model was
    evaluated with for those the command line leaves out."""
    from tfhf.generation.seq2seq import DecodingSettings, TextToText
    from tfhf.models.model_folder import load_text_to_text_folder

    model, source, target, saved = load_text_to_text_folder(folder)
    if _NUM_RETURN.value != 1:
        raise TfhfError(
            "summarize and translate models write one summary or translation per text: "
            "--num_return_sequences=1"
        )
    if _DECODING.value not in DECODINGS:
        raise TfhfError(f"unknown decoding '{_DECODING.value}' (use {', '.join(DECODINGS)})")
    values = {**saved["decoding"], "max_new_tokens": saved["max_target_length"]}
    for name in ("max_new_tokens", "seed", *_SEQ2SEQ_ONLY):
        if flags.FLAGS[name].present:
            values[name] = flags.FLAGS[name].value
    if flags.FLAGS["decoding"].present or flags.FLAGS["num_beams"].present:
        decoding = _DECODING.value if flags.FLAGS["decoding"].present else "beam"
        values["num_beams"] = _NUM_BEAMS.value if decoding == "beam" else 1
        values["temperature"] = _TEMPERATURE.value if decoding == "sample" else 0.0
        values.update(top_k=_TOP_K.value, top_p=_TOP_P.value)
    settings = DecodingSettings(**values)
    outputs = TextToText(model, source, target, jit_compile=not _NO_XLA.value)(texts, settings)
    for output in outputs:
        print(output, flush=True)


if __name__ == "__main__":
    app.run(main)
