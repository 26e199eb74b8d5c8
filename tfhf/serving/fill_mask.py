"""Filling in [MASK] tokens with a masked language model (a tfhf mlm workdir)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfhf.errors import TfhfError


def is_masked_lm_folder(folder: Path) -> bool:
    """Whether `folder` (or its `model/`) holds a HuggingFace masked-LM checkpoint."""
    for candidate in (folder / "config.json", folder / "model" / "config.json"):
        if candidate.is_file():
            architectures = json.loads(candidate.read_text()).get("architectures") or []
            return any(a.endswith("ForMaskedLM") for a in architectures)
    return False


class FillMask:
    """Top-k fillers for each `[MASK]` in a text."""

    def __init__(self, folder: Path):
        from tfhf.models import loading
        from tfhf.tokenizers.wordpiece import load_wordpiece_tokenizer

        folder = loading.resolve_model(str(folder))
        self.tokenizer = load_wordpiece_tokenizer(folder)
        self.model = loading.load_masked_lm(folder)
        self.max_length = int(self.model.config.max_position_embeddings)

    def __call__(self, texts: list[str], *, top_k: int) -> list[list[list[tuple[str, float]]]]:
        """For each text, for each of its masks in order, the `top_k` (token, probability)."""
        import tensorflow as tf

        if top_k < 1:
            raise TfhfError(f"--top_k must be positive, got {top_k}")
        mask = self.tokenizer.mask_token
        for text in texts:
            if mask not in text:
                raise TfhfError(f"no {mask} in {text[:60]!r}: nothing to fill in")
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        logits = self.model(
            {k: tf.constant(v) for k, v in encoded.items()}, training=False
        ).logits.numpy()
        probabilities = tf.nn.softmax(logits, axis=-1).numpy()
        results = []
        for row, ids in enumerate(encoded["input_ids"]):
            positions = np.flatnonzero(ids == self.tokenizer.mask_token_id)
            if not len(positions):
                raise TfhfError(f"the {mask} in {texts[row][:60]!r} was cut off at the context")
            fills = []
            for position in positions:
                best = np.argsort(-probabilities[row, position])[:top_k]
                fills.append(
                    [
                        (
                            self.tokenizer.convert_ids_to_tokens(int(i)),
                            float(probabilities[row, position, i]),
                        )
                        for i in best
                    ]
                )
            results.append(fills)
        return results
