"""`--task=mlm`: pretrain a BERT from scratch, or continue pretraining one, as a masked LM."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import tf_keras

from tfhf.config import TrainConfig
from tfhf.data import corpus, pipeline, wordpiece
from tfhf.data.masking import MaskingRule
from tfhf.errors import TfhfError
from tfhf.files import open_workdir, write_text_atomically
from tfhf.models import loading
from tfhf.tasks.registry import register_task
from tfhf.training import runtime as runtimes
from tfhf.training.fit import compile_for_training, fit_token_model, weights_digest

DEFAULT_CORPUS = "shakespeare+rotten_tomatoes"
MLM_CORPORA = ("shakespeare", "rotten_tomatoes", DEFAULT_CORPUS)


def load_mlm_corpus(config: TrainConfig) -> corpus.Corpus:
    """The user's files, or the packaged corpora named by `--dataset` (joined by '+')."""
    if config.train_file or config.validation_file:
        return corpus.load_corpus(
            dataset="",
            train_file=config.train_file,
            validation_file=config.validation_file,
            text_column=config.text_column,
            seed=config.seed,
        )
    if config.dataset not in MLM_CORPORA:
        raise TfhfError(
            f"unknown corpus '{config.dataset}' for mlm (packaged: {', '.join(MLM_CORPORA)}; "
            "or give --train_file)"
        )
    train, validation, parts = [], [], []
    for name in config.dataset.split("+"):
        if name == "shakespeare":
            plays = corpus.load_shakespeare()
            train += plays.train
            validation += plays.validation
            parts.append(plays.description)
        else:
            from tfhf.data import assets, rotten_tomatoes

            raw = rotten_tomatoes.read_raw(assets.fetch(assets.ROTTEN_TOMATOES))
            reviews, held_out = rotten_tomatoes.pretraining_texts(raw)
            train += reviews
            validation += held_out
            parts.append(
                f"rotten_tomatoes ({len(reviews)} train snippets and plots, "
                f"{len(held_out)} validation snippets; test snippets unused)"
            )
    return corpus.Corpus(train, validation, " + ".join(parts))


def masking_rule(config: TrainConfig, tokenizer) -> MaskingRule:
    """The masking rule for `tokenizer`'s vocabulary and the config's flags."""
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    continues = None
    if config.whole_word_masking:
        flags = [False] * size
        for token, i in vocab.items():
            flags[i] = token.startswith("##")
        continues = tuple(flags)
    return MaskingRule(
        probability=config.mlm_probability,
        mask_id=tokenizer.mask_token_id,
        special_ids=tuple(sorted(set(tokenizer.all_special_ids))),
        vocab_size=size,
        continues_word=continues,
    )


def new_bert(config: TrainConfig, tokenizer):
    """A randomly initialised `TFBertForMaskedLM` sized by the config's model flags."""
    import transformers

    bert_config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        intermediate_size=4 * config.n_embd,
        max_position_embeddings=config.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.TFBertForMaskedLM(bert_config)
    model(model.dummy_inputs, training=False)
    return model


def _check_numbers(config: TrainConfig) -> None:
    problems = config.training_problems()
    if not 0 < config.mlm_probability < 1:
        problems.append(f"--mlm_probability must be in (0, 1), got {config.mlm_probability}")
    if config.max_seq_length < 8:
        problems.append(f"--max_seq_length must be at least 8, got {config.max_seq_length}")
    if not config.model:
        problems += config.model_size_problems()
    if problems:
        raise TfhfError("; ".join(problems))


@register_task("mlm")
class MaskedLanguageModelTask:
    """Masked language modelling: unlabelled text in, a pretrained BERT encoder out."""

    name = "mlm"
    defaults: dict = {
        "model": "",
        "dataset": DEFAULT_CORPUS,
        "max_seq_length": 128,
        "batch_size": 32,
        "epochs": 1,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.05,
        "weight_decay": 0.01,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 192,
        "vocab_size": 8192,
    }

    def run(self, config: TrainConfig) -> dict:
        """Pretrains, evaluates and saves a masked LM; returns the metrics in metrics.json.

        Example:
          >>> metrics = MaskedLanguageModelTask().run(TrainConfig.for_task("mlm"))  # doctest: +SKIP
          >>> metrics["validation"]["accuracy"]  # doctest: +SKIP
        """
        config = config.resolved()
        _check_numbers(config)
        started = time.perf_counter()
        tf_keras.utils.set_random_seed(config.seed)
        text = load_mlm_corpus(config)
        runtime = runtimes.start(config)
        workdir = runtime.placement.workdir
        scratch = Path(tempfile.mkdtemp(prefix="tfhf-"))
        try:
            if config.model:
                folder = loading.resolve_model(config.model)
                tokenizer = loading.load_wordpiece_tokenizer(folder)
                with runtime.building():
                    model = loading.load_masked_lm(folder)
                if config.max_seq_length > model.config.max_position_embeddings:
                    raise TfhfError(
                        f"--max_seq_length={config.max_seq_length} exceeds the model's "
                        f"{model.config.max_position_embeddings} positions"
                    )
            else:
                print(
                    f"tfhf: training a WordPiece vocabulary ({config.vocab_size}) on the "
                    "training text",
                    flush=True,
                )
                tokenizer = wordpiece.train_wordpiece(
                    text.train, vocab_size=config.vocab_size, folder=scratch / "tokenizer"
                )
                with runtime.building():
                    model = new_bert(config, tokenizer)
            train_ids = corpus.encode_documents(
                tokenizer, text.train, separator_id=tokenizer.sep_token_id
            )
            val_ids = corpus.encode_documents(
                tokenizer, text.validation, separator_id=tokenizer.sep_token_id
            )
            window = config.max_seq_length - 2
            if len(train_ids) < window:
                raise TfhfError(
                    f"{text.description}: the training text is {len(train_ids)} tokens, "
                    f"shorter than one sequence of {config.max_seq_length}"
                )
            if not len(val_ids):
                raise TfhfError(f"{text.description}: the validation text is empty")
            print(
                f"tfhf: corpus {text.description}: {len(train_ids):,} training tokens, "
                f"{len(val_ids):,} validation tokens",
                flush=True,
            )

            open_workdir(workdir, config.to_flagfile())

            rule = masking_rule(config, tokenizer)
            ids = dict(
                max_seq_length=config.max_seq_length,
                batch_size=config.batch_size,
                cls_id=tokenizer.cls_token_id,
                sep_id=tokenizer.sep_token_id,
                pad_id=tokenizer.pad_token_id,
                rule=rule,
            )
            train_ds = pipeline.mlm_dataset(train_ids, training=True, seed=config.seed, **ids)
            val_ds = pipeline.mlm_dataset(val_ids, training=False, seed=config.seed + 1, **ids)
            windows = len(train_ids) // window
            steps_per_epoch = max(1, windows // config.batch_size)
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
                tokens_per_example=config.max_seq_length,
                detail=(
                    f"masking {config.mlm_probability:.0%} of "
                    f"{'words' if config.whole_word_masking else 'tokens'}, "
                ),
                workdir=workdir,
            )
            loading.save_pretrained_folder(model, tokenizer, workdir / "model")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            runtime.placement.cleanup()

        metrics = {
            "task": self.name,
            "model": config.model or "bert from scratch",
            "data": text.description,
            "parameters": int(model.count_params()),
            "validation": validation,
            "train_tokens_per_second": round(
                trained.steps
                * config.batch_size
                * config.max_seq_length
                / max(trained.seconds, 1e-9),
                1,
            ),
            "train_loss_per_epoch": trained.losses,
            "best_epoch": trained.best_epoch + 1,
            "optimizer_steps": trained.optimizer_steps,
            "weights_sha256": weights_digest(model),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "config": dataclasses.asdict(config),
        }
        if runtime.placement.chief:
            write_text_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print(
            f"tfhf: validation masked-token accuracy {validation['accuracy']:.4f}, loss "
            f"{validation['loss']:.4f}, perplexity {validation['perplexity']:.2f}; "
            f"workdir {workdir}",
            flush=True,
        )
        return metrics
