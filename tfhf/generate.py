"""python -m tfhf.generate: continue prompts with a trained language model, XLA-compiled.

Examples:
  python -m tfhf.generate --model_dir=runs/lm --prompt="ROMEO." --max_new_tokens=80
  python -m tfhf.generate --model_dir=runs/lm --prompt="KING." --decoding=sample --top_k=40 --seed=3
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
_NO_XLA = flags.DEFINE_bool("eager", False, "Run without XLA (slow; for comparison).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    try:
        from pathlib import Path

        from tfhf.generation.generator import Generator
        from tfhf.models.loading import load_causal_lm, resolve_model
        from tfhf.tokenizers.bpe import load_bpe

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
        generator = Generator(
            load_causal_lm(folder), load_bpe(folder), jit_compile=not _NO_XLA.value
        )
        for prompt, continuations in zip(prompts, generator(prompts, settings), strict=True):
            for text in continuations:
                print(f"{prompt}{text}\n", flush=True)
    except TfhfError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
