"""`--task=lm`: train a GPT-2 from scratch, or fine-tune one, as a causal language model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from tfhf.config import CorpusConfig, ExportConfig, setting
from tfhf.data import pipeline, token_cache
from tfhf.errors import TfhfError
from tfhf.generation.generator import GenerationSettings, Generator
from tfhf.models import loading
from tfhf.models.model_folder import save_pretrained_folder
from tfhf.runner import TrainingData
from tfhf.serving.lm_export import LM_SIGNATURES, export_language_model
from tfhf.tasks.corpus_task import CorpusTask
from tfhf.tasks.registry import register_task
from tfhf.tokenizers import bpe
from tfhf.training.evaluation import EvaluateTokensEachEpoch
from tfhf.training.flops import transformer_training_flops

SAMPLE_PROMPTS = ("KING.\n", "ROMEO.\n", "Enter")


@dataclasses.dataclass(frozen=True)
class LmConfig(CorpusConfig, ExportConfig):
    task: str = "lm"
    model: str = setting(
        "",
        "Empty: a new GPT-2 trained from scratch. Or a local HuggingFace-format GPT-2 "
        "folder (a tfhf lm workdir works too), or a hub id such as gpt2, to fine-tune.",
        group="model",
    )
    dataset: str = setting(
        "shakespeare", "'shakespeare' (packaged). Ignored when --train_file is set.", group="data"
    )
    batch_size: int = 16
    # A narrower model sees more tokens in the same time, and takes a higher rate: validation
    # bits per character after ~165 s of training, 2.52 at width 192 and LR 1e-3, 2.39 here.
    # Four epochs fit in 10 minutes on 2 cores (README): 2.21 after two, 2.08 after four.
    epochs: int = 4
    learning_rate: float = 2e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.1
    vocab_size: int = setting(
        4096,
        "From scratch: size of the byte-level BPE trained on the training text.",
        group="model",
    )
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = setting(
        128, "Tokens per training block; from scratch, the context.", group="data"
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.block_size < 2:
            problems.append(f"--block_size must be at least 2, got {self.block_size}")
        return problems


def predicted_characters(
    tokenizer, source: np.ndarray | Sequence[token_cache.Shard], block_size: int
) -> int:
    """How many characters the tokens that `lm_dataset` predicts in an id stream (an array
    or shards) spell: every token but the first of each block of `block_size + 1`. Special
    tokens spell none; a token holding part of a multi-byte character counts as one."""
    lengths = np.array(
        [len(tokenizer.decode([i], skip_special_tokens=True)) for i in range(len(tokenizer))]
    )
    total = 0
    for ids in token_cache.chunks(source, block_size + 1):
        predicted = np.arange(len(ids)) % (block_size + 1) != 0
        total += int(lengths[ids[predicted]].sum())
    return total


def new_gpt2(config: LmConfig, tokenizer):
    """A randomly initialised `TFGPT2LMHeadModel` sized by the config's model settings."""
    import transformers

    gpt2_config = transformers.GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = transformers.TFGPT2LMHeadModel(gpt2_config)
    model(model.dummy_inputs, training=False)
    return model


@register_task("lm")
class LanguageModelTask(CorpusTask):
    """Causal language modelling: a corpus in, a GPT-2, its export and printed samples out."""

    config_class = LmConfig
    metrics_doc = {
        "validation.loss": "Mean cross-entropy per predicted token, in nats (kept epoch).",
        "validation.perplexity": "exp(validation.loss).",
        "validation.accuracy": "Share of predicted tokens that were the likeliest.",
        "validation.tokens": "Tokens predicted.",
        "validation.bits_per_character": "The validation loss over the characters the "
        "predicted tokens spell, in bits: comparable across tokenizers.",
        "samples": "The continuation of each sample prompt (sampled: temperature 0.8, top-k "
        "40, --seed), by prompt.",
        "train_tokens_per_second": "Training speed, after each epoch's first step.",
        "train_model_flops_per_second": "Model FLOP/s while training: 6 x weights x tokens "
        "a second, attention and the output layer included.",
    }
    export_signatures = LM_SIGNATURES

    def model_description(self) -> str:
        return self.config.model or "gpt2 from scratch"

    def build_model(self, runtime, scratch):
        config = self.config
        if self.folder:
            self.tokenizer = bpe.load_bpe(self.folder)
            with runtime.building():
                model = loading.load_causal_lm(self.folder)
            print(f"tfhf: fine-tuning the language model from {self.folder}", flush=True)
            if config.block_size > model.config.n_positions:
                raise TfhfError(
                    f"--block_size={config.block_size} exceeds the model's "
                    f"{model.config.n_positions} positions"
                )
        else:
            self.tokenizer = self.new_tokenizer(
                runtime, scratch, kind="byte-level BPE", train=bpe.train_bpe, load=bpe.load_bpe
            )
            with runtime.building():
                model = new_gpt2(config, self.tokenizer)
        self.streams = self.tokenized(runtime, self.tokenizer.eos_token_id)
        if self.streams.train_tokens <= config.block_size:
            raise TfhfError(
                f"{self.text.description}: the training text is {self.streams.train_tokens} "
                f"tokens, shorter than one block of {config.block_size + 1}"
            )
        self.model_config = model.config
        return model

    def training_data(self, runtime) -> TrainingData:
        config = self.config
        blocks = dict(
            block_size=config.block_size,
            batch_size=config.batch_size,
            pad_id=self.tokenizer.eos_token_id,
            shuffle_buffer=config.shuffle_buffer,
        )
        streams = self.streams
        train = pipeline.lm_dataset(streams.train, training=True, seed=config.seed, **blocks)
        validation = pipeline.lm_dataset(streams.validation, training=False, **blocks)
        return TrainingData(
            train,
            examples=streams.train_tokens // (config.block_size + 1),
            whole_batches=True,
            validation=EvaluateTokensEachEpoch(
                validation,
                characters=predicted_characters(
                    self.tokenizer, streams.validation, config.block_size
                ),
            ),
            unit="tokens",
            units_per_example=config.block_size,
            detail=f" x {config.block_size} tokens",
            flops_per_example=config.block_size
            * transformer_training_flops(self.model_config, context=config.block_size),
        )

    def save(self, model, folder):
        save_pretrained_folder(model, self.tokenizer, folder)

    def load_saved(self, folder):
        return loading.load_causal_lm(folder)

    def export(self, model, export_dir):
        return export_language_model(model, self.tokenizer, export_dir)

    def after_export(self, model) -> dict:
        samples = Generator(model, self.tokenizer)(
            list(SAMPLE_PROMPTS),
            GenerationSettings(
                max_new_tokens=min(80, model.config.n_positions - 8),
                decoding="sample",
                temperature=0.8,
                top_k=40,
                seed=self.config.seed,
            ),
        )
        return {"samples": {p: s[0] for p, s in zip(SAMPLE_PROMPTS, samples, strict=True)}}

    def summary(self, metrics: dict) -> str:
        shown = [f"--- sample ---\n{p}{text}\n" for p, text in metrics.get("samples", {}).items()]
        validation = metrics["validation"]
        bits = validation.get("bits_per_character")
        per_character = f", {bits:.4f} bits per character" if bits is not None else ""
        return "\n".join(shown) + (
            f"\ntfhf: validation loss {validation['loss']:.4f}, perplexity "
            f"{validation['perplexity']:.2f}{per_character}"
        )
