"""`--task=classify`: fine-tune a BERT-style encoder for sequence classification."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import tf_keras

from tfhf.config import TrainConfig
from tfhf.data import pipeline, sources
from tfhf.data.bert_preprocessor import BertPreprocessor
from tfhf.errors import TfhfError
from tfhf.files import open_workdir, replace_folder, write_text_atomically
from tfhf.models import loading
from tfhf.serving.export import export_classifier
from tfhf.tasks.registry import register_task
from tfhf.training import runtime as runtimes
from tfhf.training.evaluation import EvaluateEachEpoch, evaluate
from tfhf.training.fit import compile_for_training, fit, weights_digest

PREPROCESSING_FILE = "tfhf_preprocessing.json"


def _check_numbers(config: TrainConfig) -> None:
    problems = config.training_problems()
    if not 3 <= config.max_seq_length <= 512:
        problems.append(f"--max_seq_length must be in [3, 512], got {config.max_seq_length}")
    if problems:
        raise TfhfError("; ".join(problems))


def save_model_folder(
    model, preprocessor: BertPreprocessor, vocab_file: Path, folder: Path
) -> None:
    """`save_pretrained` model and tokenizer into `folder`, replacing it whole."""
    from transformers import BertTokenizerFast

    def fill(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer = BertTokenizerFast(
            vocab_file=str(vocab_file), do_lower_case=preprocessor.lower_case
        )
        tokenizer.save_pretrained(staging)
        settings = {
            "max_seq_length": preprocessor.max_seq_length,
            "lower_case": preprocessor.lower_case,
        }
        (staging / PREPROCESSING_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    replace_folder(folder, fill)


def load_model_folder(folder: Path):
    """(model, preprocessor, label names) from a folder written by `save_model_folder`."""
    import transformers

    settings = json.loads((folder / PREPROCESSING_FILE).read_text())
    model = transformers.TFAutoModelForSequenceClassification.from_pretrained(folder)
    preprocessor = BertPreprocessor(
        folder / "vocab.txt",
        lower_case=settings["lower_case"],
        max_seq_length=settings["max_seq_length"],
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, preprocessor, names


@register_task("classify")
class ClassifyTask:
    """Sequence classification: labelled text in, a fine-tuned classifier and its export out."""

    name = "classify"
    defaults: dict = {}  # TrainConfig's own defaults are classify's

    def build_datasets(
        self,
        config: TrainConfig,
        data: sources.ClassificationData,
        preprocessor: BertPreprocessor,
        *,
        fixed_length: bool = False,
    ):
        """(train, validation, test) `tf.data` pipelines sharing one preprocessor.

        `fixed_length` pads every batch to `--max_seq_length` (TPUs want static shapes);
        otherwise batches are bucketed by length and padded to their longest text.
        """

        def make(split, training):
            return pipeline.classification_dataset(
                split.texts,
                split.labels,
                preprocessor=preprocessor,
                batch_size=config.batch_size,
                training=training,
                seed=config.seed,
                fixed_length=fixed_length and training,
            )

        return make(data.train, True), make(data.validation, False), make(data.test, False)

    def build_model(self, folder: Path, label_names: list[str]):
        """The transformers TF classifier for the model folder, with a head for `label_names`."""
        return loading.load_sequence_classifier(folder, label_names)

    def compile(self, model, *, config: TrainConfig, total_steps: int) -> None:
        """AdamW with warmup/decay, cross-entropy on logits, accuracy; the config's
        scale options (see `compile_for_training`)."""
        compile_for_training(
            model,
            config,
            total_steps=total_steps,
            metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )

    def run(self, config: TrainConfig) -> dict:
        """Trains, evaluates, saves and exports; returns the metrics written to metrics.json.

        Every input is checked and loaded before the workdir is touched; metrics.json,
        written last, marks a complete run.

        Example:
          >>> metrics = ClassifyTask().run(TrainConfig(train_file="reviews.csv"))  # doctest: +SKIP
          >>> metrics["test"]["accuracy"]  # doctest: +SKIP
          0.83
        """
        config = config.resolved()
        _check_numbers(config)
        started = time.perf_counter()
        tf_keras.utils.set_random_seed(config.seed)

        data = sources.load_classification_data(
            dataset=config.dataset,
            train_file=config.train_file,
            validation_file=config.validation_file,
            test_file=config.test_file,
            text_column=config.text_column,
            label_column=config.label_column,
            seed=config.seed,
        )
        print(
            f"tfhf: data {data.description}: train {len(data.train)}, validation "
            f"{len(data.validation)}, test {len(data.test)}; labels {data.label_names}",
            flush=True,
        )
        folder = loading.resolve_model(config.model)
        runtime = runtimes.start(config)
        workdir = runtime.placement.workdir
        scratch = Path(tempfile.mkdtemp(prefix="tfhf-"))
        try:
            vocab_file, lower_case = loading.tokenizer_files(folder, scratch)
            preprocessor = BertPreprocessor(
                vocab_file, lower_case=lower_case, max_seq_length=config.max_seq_length
            )
            with runtime.building():
                model = self.build_model(folder, data.label_names)
            limit = model.config.max_position_embeddings
            if config.max_seq_length > limit:
                raise TfhfError(
                    f"--max_seq_length={config.max_seq_length} exceeds the model's "
                    f"{limit} positions"
                )

            open_workdir(workdir, config.to_flagfile())

            train_ds, val_ds, test_ds = self.build_datasets(
                config, data, preprocessor, fixed_length=runtime.tpu
            )
            steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
            if config.max_steps_per_epoch:
                steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
            with runtime.building():
                self.compile(model, config=config, total_steps=steps_per_epoch * config.epochs)
            print(
                f"tfhf: training {config.epochs} epoch(s) x {steps_per_epoch} steps, batch "
                f"{config.batch_size}, {model.count_params():,} parameters",
                flush=True,
            )

            # Validation through `evaluate` rather than Keras' own pass: it also gives macro-F1,
            # and the best epoch's figures need no second pass at the end.
            validating = EvaluateEachEpoch(val_ds, len(data.label_names))
            trained = fit(
                model,
                train_ds,
                epochs=config.epochs,
                steps_per_epoch=steps_per_epoch,
                batch_size=config.batch_size,
                validation=validating,
                monitor="val_accuracy",
                mode="max",
                workdir=workdir,
                checkpoint_every_steps=config.checkpoint_every_steps,
            )

            print("tfhf: evaluating on the test split", flush=True)
            validation = validating.results[trained.best_epoch]
            test = evaluate(model, test_ds, len(data.label_names))
            save_model_folder(model, preprocessor, vocab_file, workdir / "model")
            if runtime.mixed:
                # The export computes in float32 whatever the training precision was.
                model = load_model_folder(workdir / "model")[0]
            version_dir = export_classifier(
                model, preprocessor, data.label_names, runtime.placement.export_dir
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            runtime.placement.cleanup()

        metrics = {
            "task": self.name,
            "model": config.model,
            "data": data.description,
            "labels": data.label_names,
            "validation": validation,
            "test": test,
            "train_examples_per_second": round(
                trained.steps * config.batch_size / max(trained.seconds, 1e-9), 2
            ),
            "train_loss_per_epoch": trained.losses,
            "best_epoch": trained.best_epoch + 1,
            "optimizer_steps": trained.optimizer_steps,
            "export": str(version_dir),
            "weights_sha256": weights_digest(model),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "config": dataclasses.asdict(config),
        }
        if runtime.placement.chief:
            write_text_atomically(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print(
            f"tfhf: validation accuracy {validation['accuracy']:.4f}, test accuracy "
            f"{test['accuracy']:.4f}, test macro-F1 {test['macro_f1']:.4f}",
            flush=True,
        )
        print(f"tfhf: workdir {workdir}; SavedModel {version_dir}", flush=True)
        return metrics
