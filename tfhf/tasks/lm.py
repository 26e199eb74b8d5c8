"""`--task=lm`: train a GPT-2 from scratch, or fine-tune one, as a causal language model."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import tf_keras

from tfhf.config import TrainConfig
from tfhf.data import bpe, corpus, pipeline
from tfhf.errors import TfhfError
from tfhf.files import open_workdir, write_text_atomically
from tfhf.generation.generator import GenerationSettings, Generator
from tfhf.models import loading
from tfhf.serving.lm_export import export_language_model
from tfhf.tasks.registry import register_task
from tfhf.training import runtime as runtimes
from tfhf.training.fit import compile_for_training, fit_token_model, weights_digest

SAMPLE_PROMPTS = ("KING.\n", "ROMEO.\n", "Enter")


def _check_numbers(config: TrainConfig) -> None:
    problems = config.training_problems()
    if config.block_size < 2:
        problems.append(f"--block_size must be at least 2, got {config.block_size}")
    if not config.model:
        problems += config.model_size_problems()
    if problems:
        raise TfhfError("; ".join(problems))


def new_gpt2(config: TrainConfig, tokenizer):
    """A randomly initialised `TFGPT2LMHeadModel` sized by the config's model flags."""
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
class LanguageModelTask:
    """Causal language modelling: a corpus in, a GPT-2 and printed samples out."""

    name = "lm"
    defaults: dict = {
        "model": "",
        "dataset": "shakespeare",
        "batch_size": 16,
        "epochs": 1,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.05,
        "weight_decay": 0.1,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 192,
        "vocab_size": 4096,
        "block_size": 128,
    }

    def run(self, config: TrainConfig) -> dict:
        """Trains, evaluates and saves a language model; returns the metrics in metrics.json.

        Example:
          >>> metrics = LanguageModelTask().run(TrainConfig.for_task("lm"))  # doctest: +SKIP
          >>> metrics["validation"]["perplexity"]  # doctest: +SKIP
        """
        config = config.resolved()
        _check_numbers(config)
        started = time.perf_counter()
        tf_keras.utils.set_random_seed(config.seed)
        text = corpus.load_corpus(
            dataset=config.dataset,
            train_file=config.train_file,
            validation_file=config.validation_file,
            text_column=config.text_column,
            seed=config.seed,
        )
        runtime = runtimes.start(config)
        workdir = runtime.placement.workdir
        scratch = Path(tempfile.mkdtemp(prefix="tfhf-"))
        try:
            if config.model:
                folder = loading.resolve_model(config.model)
                tokenizer = bpe.load_bpe(folder)
                with runtime.building():
                    model = loading.load_causal_lm(folder)
                print(f"tfhf: fine-tuning the language model from {folder}", flush=True)
                if config.block_size > model.config.n_positions:
                    raise TfhfError(
                        f"--block_size={config.block_size} exceeds the model's "
                        f"{model.config.n_positions} positions"
                    )
            else:
                print(
                    f"tfhf: training a byte-level BPE tokenizer (vocab {config.vocab_size}) "
                    "on the training text",
                    flush=True,
                )
                tokenizer = bpe.train_bpe(
                    text.train, vocab_size=config.vocab_size, folder=scratch / "tokenizer"
                )
                with runtime.building():
                    model = new_gpt2(config, tokenizer)
            train_ids = corpus.encode_documents(
                tokenizer, text.train, separator_id=tokenizer.eos_token_id
            )
            val_ids = corpus.encode_documents(
                tokenizer, text.validation, separator_id=tokenizer.eos_token_id
            )
            if len(train_ids) <= config.block_size:
                raise TfhfError(
                    f"{text.description}: the training text is {len(train_ids)} "
                    f"tokens, shorter than one block of {config.block_size + 1}"
                )
            print(
                f"tfhf: corpus {text.description}: {len(train_ids):,} training tokens, "
                f"{len(val_ids):,} validation tokens",
                flush=True,
            )

            open_workdir(workdir, config.to_flagfile())

            pad_id = tokenizer.eos_token_id
            train_ds = pipeline.lm_dataset(
                train_ids,
                block_size=config.block_size,
                batch_size=config.batch_size,
                pad_id=pad_id,
                training=True,
                seed=config.seed,
            )
            val_ds = pipeline.lm_dataset(
                val_ids,
                block_size=config.block_size,
                batch_size=config.batch_size,
                pad_id=pad_id,
                training=False,
            )
            blocks = len(train_ids) // (config.block_size + 1)
            steps_per_epoch = max(1, blocks // config.batch_size)
            if config.max_steps_per_epoch:
                steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
            with runtime.building():
                compile_for_training(model, config, total_steps=steps_per_epoch * config.epochs)
            trained, validation = fit_token_model(
                model,
                train_ds,
                val_ds,
                config=config,
                steps_per_epoch=steps_per_epoch,
                tokens_per_example=config.block_size,
                workdir=workdir,
            )
            loading.save_pretrained_folder(model, tokenizer, workdir / "model")
            if runtime.mixed:
                # Export and samples compute in float32 whatever the training precision was.
                model = loading.load_causal_lm(workdir / "model")
            export_dir = runtime.placement.export_dir
            print(f"tfhf: exporting the SavedModel to {export_dir}", flush=True)
            version_dir = export_language_model(model, tokenizer, export_dir)

            generator = Generator(model, tokenizer)
            max_new = min(80, model.config.n_positions - 8)
            samples = generator(
                list(SAMPLE_PROMPTS),
                GenerationSettings(
                    max_new_tokens=max_new,
                    decoding="sample",
                    temperature=0.8,
                    top_k=40,
                    seed=config.seed,
                ),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            runtime.placement.cleanup()

        metrics = {
            "task": self.name,
            "model": config.model or "gpt2 from scratch",
            "data": text.description,
            "parameters": int(model.count_params()),
            "validation": validation,
            "train_tokens_per_second": round(
                trained.steps * config.batch_size * config.block_size / max(trained.seconds, 1e-9),
                1,
            ),
            "train_loss_per_epoch": trained.losses,
            "best_epoch": trained.best_epoch + 1,
            "optimizer_steps": trained.optimizer_steps,
            "samples": {p: s[0] for p, s in zip(SAMPLE_PROMPTS, samples, strict=True)},
            "export": str(version_dir),
            "weights_sha256": weights_digest(model),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "config": dataclasses.asdict(config),
        }
        if runtime.placement.chief:
            write_text_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        for prompt, continuation in metrics["samples"].items():
            print(f"--- sample ---\n{prompt}{continuation}\n", flush=True)
        print(
            f"tfhf: validation loss {validation['loss']:.4f}, perplexity "
            f"{validation['perplexity']:.2f}; workdir {workdir}; SavedModel {version_dir}",
            flush=True,
        )
        return metrics
