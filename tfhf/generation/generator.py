"""XLA-compiled generation whose compiled programs are reused across prompt lengths."""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from transformers.generation.tf_logits_process import TFLogitsProcessorList

from tfhf.config import DEFAULT_SEED
from tfhf.errors import TfhfError
from tfhf.generation.sampling import SeededSampling

DECODINGS = ("greedy", "sample", "beam")
PROMPT_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024)


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How to continue a prompt.

    Attributes:
      max_new_tokens: Tokens to add after the prompt.
      decoding: 'greedy', 'sample' or 'beam'.
      temperature, top_k, top_p: Sampling controls ('sample' only; top_k 0 and
        top_p 1.0 switch the filter off).
      num_beams: Beam width ('beam' only).
      num_return_sequences: Continuations per prompt ('sample' and 'beam').
      seed: Sampling seed; the same seed gives the same text.
    """

    max_new_tokens: int = 64
    decoding: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_beams: int = 4
    num_return_sequences: int = 1
    seed: int = DEFAULT_SEED

    def check(self) -> None:
        """Raises `TfhfError` naming the first setting that makes no sense."""
        if self.decoding not in DECODINGS:
            raise TfhfError(f"unknown decoding '{self.decoding}' (use {', '.join(DECODINGS)})")
        if self.max_new_tokens < 1:
            raise TfhfError(f"--max_new_tokens must be positive, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise TfhfError(f"--temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            raise TfhfError(f"--top_k must be 0 (off) or positive, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise TfhfError(f"--top_p must be in (0, 1], got {self.top_p}")
        if self.num_beams < 1:
            raise TfhfError(f"--num_beams must be positive, got {self.num_beams}")
        if self.num_return_sequences < 1:
            raise TfhfError(
                f"--num_return_sequences must be positive, got {self.num_return_sequences}"
            )
        if self.decoding == "greedy" and self.num_return_sequences > 1:
            raise TfhfError(
                "greedy decoding gives one sequence; use --decoding=sample or beam "
                "for --num_return_sequences > 1"
            )
        if self.decoding == "beam" and self.num_return_sequences > self.num_beams:
            raise TfhfError(
                f"--num_return_sequences ({self.num_return_sequences}) cannot "
                f"exceed --num_beams ({self.num_beams})"
            )


def bucket_length(n: int, context: int) -> int:
    """The smallest prompt bucket holding `n` tokens (the context length at most)."""
    for bucket in PROMPT_BUCKETS:
        if bucket >= n:
            return min(bucket, context)
    return context


class Generator:
    """Continues prompts with a transformers TF causal LM.

    Prompts are left-padded to a length bucket, so prompts of different lengths
    share one compiled program per (bucket, batch size, settings) instead of
    compiling once per length.

    Args:
      model: A transformers TF causal LM (e.g. `TFGPT2LMHeadModel`).
      tokenizer: Its tokenizer.
      jit_compile: Compile generation with XLA (else run eagerly).
    """

    def __init__(self, model, tokenizer, *, jit_compile: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.context = int(
            model.config.n_positions
            if hasattr(model.config, "n_positions")
            else model.config.max_position_embeddings
        )
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.jit_compile = jit_compile
        self._sampling = SeededSampling()
        self._compiled = tf.function(self._generate, jit_compile=True)

    def _generate(self, input_ids, attention_mask, sample: bool, **kwargs):
        processors = TFLogitsProcessorList([self._sampling]) if sample else None
        return self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            logits_processor=processors,
            **kwargs,
        )

    @property
    def compilations(self) -> int:
        """Programs traced (hence compiled) so far."""
        return self._compiled.experimental_get_tracing_count()

    def encode(self, prompts: list[str]) -> tuple[tf.Tensor, tf.Tensor]:
        """Left-padded `(input_ids, attention_mask)` at the bucket of the longest prompt."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        for prompt, ids in zip(prompts, encoded, strict=True):
            if not ids:
                raise TfhfError("empty prompt: give at least one character")
            if len(ids) >= self.context:
                raise TfhfError(
                    f"prompt of {len(ids)} tokens does not fit the model's context "
                    f"of {self.context}: {prompt[:40]!r}"
                )
        width = bucket_length(max(len(ids) for ids in encoded), self.context)
        input_ids = [[self.pad_id] * (width - len(ids)) + ids for ids in encoded]
        mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded]
        return tf.constant(input_ids, tf.int32), tf.constant(mask, tf.int32)

    def generate_ids(
        self, prompts: list[str], settings: GenerationSettings
    ) -> tuple[tf.Tensor, int]:
        """(token ids [len(prompts) * sequences, bucket + new tokens], the bucket width)."""
        settings.check()
        input_ids, attention_mask = self.encode(prompts)
        if input_ids.shape[1] + settings.max_new_tokens > self.context:
            raise TfhfError(
                f"--max_new_tokens={settings.max_new_tokens} after a prompt padded to "
                f"{input_ids.shape[1]} tokens exceeds the model's context of {self.context}"
            )
        kwargs = dict(
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
            do_sample=False,
        )
        sample = settings.decoding == "sample"
        if sample:
            # Each prompt repeated once per sequence; the noise differs row by row.
            input_ids = tf.repeat(input_ids, settings.num_return_sequences, axis=0)
            attention_mask = tf.repeat(attention_mask, settings.num_return_sequences, axis=0)
            self._sampling.set(
                seed=settings.seed,
                temperature=settings.temperature,
                top_k=settings.top_k,
                top_p=settings.top_p,
            )
            kwargs.update(num_beams=1)
        elif settings.decoding == "beam":
            kwargs.update(
                num_beams=settings.num_beams, num_return_sequences=settings.num_return_sequences
            )
        else:
            kwargs.update(num_beams=1)
        run = self._compiled if self.jit_compile else self._generate
        ids = run(input_ids, attention_mask, sample, **kwargs)
        return ids, int(input_ids.shape[1])

    def __call__(self, prompts: list[str], settings: GenerationSettings) -> list[list[str]]:
        """For each prompt, its `num_return_sequences` continuations (prompt not repeated)."""
        ids, width = self.generate_ids(prompts, settings)
        ids = ids.numpy()
        n = settings.num_return_sequences if settings.decoding != "greedy" else 1
        texts = []
        for row in ids[:, width:]:
            row = row.tolist()
            if self.tokenizer.eos_token_id in row:
                row = row[: row.index(self.tokenizer.eos_token_id)]
            # No clean-up of spaces before punctuation: the text is what the model wrote,
            # and the SavedModel's in-graph detokenizer gives the same.
            texts.append(
                self.tokenizer.decode(
                    row, skip_special_tokens=False, clean_up_tokenization_spaces=False
                )
            )
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]
