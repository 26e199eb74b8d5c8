"""`--task=classify`: fine-tune a BERT-style encoder for sequence classification."""

from __future__ import annotations

import dataclasses

import numpy as np
import tf_keras

from tfhf.config import ExportConfig, setting
from tfhf.data import pipeline, sources
from tfhf.errors import TfhfError
from tfhf.models import loading
from tfhf.models.model_folder import load_classifier_folder, save_classifier_folder
from tfhf.runner import TrainingData
from tfhf.serving.export import CLASSIFIER_SIGNATURES, export_classifier
from tfhf.tasks.registry import register_task
from tfhf.tasks.task import Task
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor
from tfhf.tokenizers.wordpiece import tokenizer_files
from tfhf.training.evaluation import EvaluateEachEpoch, evaluate
from tfhf.training.flops import transformer_training_flops


@dataclasses.dataclass(frozen=True)
class ClassifyConfig(ExportConfig):
    task: str = "classify"
    model: str = setting(
        "minilm-l6",
        "'minilm-l6' (packaged pretrained encoder), a local HuggingFace-format folder (or a "
        "tfhf workdir, an mlm one included), or a hub id such as bert-base-uncased.",
        group="model",
    )
    dataset: str = setting(
        "rotten_tomatoes",
        "'rotten_tomatoes' (packaged) or a tensorflow-datasets name such as imdb_reviews or "
        "glue/sst2. Ignored when --train_file is set.",
        group="data",
    )
    test_file: str = setting("", "Test data; split off the training data if unset.", group="data")
    text_column: str = setting("text", "Column (or tfds feature) with the text.", group="data")
    label_column: str = setting("label", "Column (or tfds feature) with the label.", group="data")
    max_seq_length: int = setting(
        128, "Longest token sequence, [CLS] and [SEP] included.", group="data"
    )
    max_eval_examples: int = setting(
        0,
        "Examples of the validation and of the test split that are scored, drawn by --seed "
        "(quick runs); 0 means whole splits.",
        group="evaluation",
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.max_eval_examples < 0:
            problems.append(
                f"--max_eval_examples must be 0 (all) or positive, got {self.max_eval_examples}"
            )
        if not 3 <= self.max_seq_length <= 512:
            problems.append(f"--max_seq_length must be in [3, 512], got {self.max_seq_length}")
        return problems


def sample_split(split: sources.LabelledSplit, count: int, seed: int) -> sources.LabelledSplit:
    """`count` examples of `split` drawn by `seed`, in their order (all when it has fewer):
    a user's file could be sorted by label, so its first rows would not do."""
    if len(split) <= count:
        return split
    kept = np.sort(np.random.default_rng(seed).permutation(len(split))[:count])
    return sources.LabelledSplit([split.texts[i] for i in kept], split.labels[kept])


@register_task("classify")
class ClassifyTask(Task):
    """Sequence classification: labelled text in, a fine-tuned classifier and its export out."""

    config_class = ClassifyConfig
    monitor = "val_accuracy"
    mode = "max"
    metrics_doc = {
        **{
            f"{split}.{key}": f"{meaning} ({split} split, kept epoch)"
            for split in ("validation", "test")
            for key, meaning in (
                ("accuracy", "Share of texts labelled right"),
                ("macro_f1", "F1 per label, averaged over labels"),
                ("loss", "Mean cross-entropy"),
                ("examples", "Texts scored"),
            )
        },
        "labels": "The label names, in the order of the model's outputs.",
        "train_examples_per_second": "Training speed, after each epoch's first step.",
        "train_model_flops_per_second": "Model FLOP/s while training: 6 x weights x tokens a "
        "second, attention and the output layer included.",
    }
    model_files = {"tfhf_preprocessing.json": "How texts are tokenized: length and casing."}
    export_signatures = CLASSIFIER_SIGNATURES

    def load_inputs(self) -> str:
        config = self.config
        # The model first: a mistyped --model stops the run before the data is read.
        self.folder = loading.resolve_model(config.model)
        self.data = sources.load_classification_data(
            dataset=config.dataset,
            train_file=config.train_file,
            validation_file=config.validation_file,
            test_file=config.test_file,
            text_column=config.text_column,
            label_column=config.label_column,
            seed=config.seed,
        )
        if config.max_eval_examples:
            self.data = dataclasses.replace(
                self.data,
                validation=sample_split(
                    self.data.validation, config.max_eval_examples, config.seed
                ),
                test=sample_split(self.data.test, config.max_eval_examples, config.seed),
            )
        data = self.data
        print(
            f"tfhf: data {data.description}: train {len(data.train)}, validation "
            f"{len(data.validation)}, test {len(data.test)}; labels {data.label_names}",
            flush=True,
        )
        return data.description

    def build_model(self, runtime, scratch):
        self.vocab_file, lower_case = tokenizer_files(self.folder, scratch)
        self.preprocessor = BertPreprocessor(
            self.vocab_file, lower_case=lower_case, max_seq_length=self.config.max_seq_length
        )
        with runtime.building():
            model = loading.load_sequence_classifier(self.folder, self.data.label_names)
        limit = model.config.max_position_embeddings
        if self.config.max_seq_length > limit:
            raise TfhfError(
                f"--max_seq_length={self.config.max_seq_length} exceeds the model's "
                f"{limit} positions"
            )
        self.model_config = model.config
        return model

    def _dataset(self, split: sources.LabelledSplit, *, training: bool, fixed_length: bool = False):
        return pipeline.classification_dataset(
            split.texts,
            split.labels,
            preprocessor=self.preprocessor,
            batch_size=self.config.batch_size,
            training=training,
            seed=self.config.seed,
            fixed_length=fixed_length,
        )

    def training_data(self, runtime) -> TrainingData:
        # TPUs want static shapes: every training batch padded to --max_seq_length. Elsewhere
        # batches are bucketed by length and padded to their longest text.
        train = self._dataset(self.data.train, training=True, fixed_length=runtime.tpu)
        # Validation through `evaluate` rather than Keras' own pass: it also gives macro-F1,
        # and the best epoch's figures need no second pass at the end.
        validation = self._dataset(self.data.validation, training=False)
        self.test_ds = self._dataset(self.data.test, training=False)
        tokens = self._mean_tokens(self.data.train)
        return TrainingData(
            train,
            examples=len(self.data.train),
            whole_batches=False,
            validation=EvaluateEachEpoch(validation, len(self.data.label_names)),
            flops_per_example=tokens
            * transformer_training_flops(
                self.model_config, context=tokens, vocabulary_output=False
            ),
        )

    def _mean_tokens(self, split: sources.LabelledSplit, most: int = 20_000) -> float:
        """Tokens per text the model sees (model FLOPs count them; padding is not model
        work): over the whole split up to `most` texts, else over `most` drawn by --seed;
        tokenized a block at a time, as the pipeline does."""
        texts = sample_split(split, most, self.config.seed).texts
        lengths = [
            self.preprocessor.tokenize(texts[i : i + 1024]).row_lengths().numpy()
            for i in range(0, len(texts), 1024)
        ]
        return float(np.mean(np.concatenate(lengths)))

    def train_metrics(self) -> list:
        return [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def evaluate(self, model, workdir) -> dict:
        print("tfhf: evaluating on the test split", flush=True)
        test = evaluate(model, self.test_ds, len(self.data.label_names))
        return {"labels": self.data.label_names, "test": test}

    def save(self, model, folder):
        save_classifier_folder(model, self.preprocessor, self.vocab_file, folder)

    def load_saved(self, folder):
        return load_classifier_folder(folder)[0]

    def export(self, model, export_dir):
        return export_classifier(model, self.preprocessor, self.data.label_names, export_dir)

    def summary(self, metrics: dict) -> str:
        validation, test = metrics["validation"], metrics["test"]
        return (
            f"tfhf: validation accuracy {validation['accuracy']:.4f}, test accuracy "
            f"{test['accuracy']:.4f}, test macro-F1 {test['macro_f1']:.4f}"
        )
