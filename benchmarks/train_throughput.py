"""Training throughput: tfhf's classify pipeline against a tutorial-style Keras loop.

  python benchmarks/train_throughput.py                            # 5-7 minutes on 2 cores
  python benchmarks/train_throughput.py --compare_precision        # on a GPU: + fp16 and XLA

Both sides fine-tune the packaged minilm-l6 (same weights, same seeded head) on the
packaged Rotten Tomatoes train split, with the same batch size, peak learning rate and
number of steps:

  tfhf      in-graph WordPiece in `tf.data`, length buckets padded to their longest text,
            AdamW with warmup/decay and tfhf's train step (`ClassifyTask.compile`);
            --mixed_precision, --jit_compile and --steps_per_execution apply here.
  baseline  the way tutorials write it: the HuggingFace tokenizer called per example in
            a Python generator, every text padded to --max_seq_length,
            `Dataset.from_generator(...).batch()`, plain Adam and `model.fit`.

The clock starts after --warmup_steps (graph tracing, pipeline start-up) and stops at
the end of training; padding is the share of attention-mask zeros in the batches trained
on. With --jit_compile, each new bucket length compiles once, and compiles that fall
after the warm-up are counted: that is what a short run pays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)
from tfhf.config import MIXED_PRECISION

_STEPS = flags.DEFINE_integer("steps", 30, "Timed training steps per run.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 5, "Steps run before the clock starts.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Examples per step, both sides.")
_MAX_SEQ = flags.DEFINE_integer("max_seq_length", 128, "Longest sequence; the baseline pads to it.")
_PRECISION = flags.DEFINE_enum(
    "mixed_precision", "none", MIXED_PRECISION, "tfhf's compute precision."
)
_JIT = flags.DEFINE_bool("jit_compile", False, "XLA-compile tfhf's train step.")
_SPE = flags.DEFINE_integer("steps_per_execution", 1, "tfhf's steps per call into the graph.")
_COMPARE = flags.DEFINE_bool(
    "compare_precision",
    False,
    "Also time tfhf with --mixed_precision=fp16 --jit_compile against tfhf without (GPU).",
)
_OUTPUT = flags.DEFINE_string("output_json", "", "Also write the figures here as JSON.")

_FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def _meter(warmup: int):
    from tfhf.training.callbacks import Throughput

    class AfterWarmup(Throughput):
        """`Throughput` whose clock starts at the end of step `warmup`, not of step 1."""

        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 >= warmup:
                super().on_train_batch_end(batch, logs)

    return AfterWarmup()


def _timed_fit(model, ds, *, total_steps: int) -> dict:
    meter = _meter(_WARMUP.value)
    model.fit(ds, epochs=1, steps_per_epoch=total_steps, callbacks=[meter], verbose=0)
    return {
        "examples_per_second": meter.steps * _BATCH.value / max(meter.seconds, 1e-9),
        "steps_timed": meter.steps,
        "seconds_timed": meter.seconds,
    }


def _run_tfhf(config, scratch: Path) -> dict:
    """The classify task's own model, pipeline and compiled training step, timed."""
    import tf_keras

    from tfhf.data import pipeline
    from tfhf.tasks.classify import ClassifyTask
    from tfhf.training import runtime as runtimes
    from tfhf.training.fit import compile_for_training

    total = config.max_steps_per_epoch
    task = ClassifyTask(config)
    task.load_inputs()
    runtime = runtimes.start(config)
    tf_keras.utils.set_random_seed(config.seed)
    model = task.build_model(runtime, scratch)
    train_ds = task.training_data(runtime).train
    with runtime.building():
        compile_for_training(model, config, total_steps=total, metrics=task.train_metrics())
    figures = _timed_fit(model, train_ds, total_steps=total)
    # A second build with the same seed yields the same batches the model trained on.
    again = task.training_data(runtime).train
    figures["padding_fraction"] = pipeline.padding_fraction(again, steps=total)
    return figures


def _tutorial_dataset(texts, labels, tokenizer, *, max_seq_length: int, batch_size: int, seed):
    import tensorflow as tf

    def examples():
        for text, label in zip(texts, labels, strict=True):
            encoded = tokenizer(
                text, padding="max_length", truncation=True, max_length=max_seq_length
            )
            yield {key: encoded[key] for key in _FEATURES}, label

    spec = tf.TensorSpec([max_seq_length], tf.int32)
    ds = tf.data.Dataset.from_generator(
        examples,
        output_signature=({key: spec for key in _FEATURES}, tf.TensorSpec([], tf.int32)),
    )
    return ds.shuffle(1000, seed=seed).repeat().batch(batch_size)


def _run_baseline(config, data, folder: Path) -> dict:
    import tf_keras
    import transformers

    from tfhf.data import pipeline
    from tfhf.models import loading

    total = config.max_steps_per_epoch
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    tf_keras.utils.set_random_seed(config.seed)
    model = loading.load_sequence_classifier(folder, data.label_names)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    def dataset():
        return _tutorial_dataset(
            data.train.texts,
            [int(y) for y in data.train.labels],
            tokenizer,
            max_seq_length=config.max_seq_length,
            batch_size=config.batch_size,
            seed=config.seed,
        )

    figures = _timed_fit(model, dataset(), total_steps=total)
    figures["padding_fraction"] = pipeline.padding_fraction(dataset(), steps=total)
    return figures


def _label(config) -> str:
    extras = []
    if config.mixed_precision != "none":
        extras.append(config.mixed_precision)
    if config.jit_compile:
        extras.append("XLA")
    if config.steps_per_execution > 1:
        extras.append(f"{config.steps_per_execution} steps/exec")
    return "tfhf" + (f" ({', '.join(extras)})" if extras else "")


def main(argv):
    del argv
    import tf_keras

    from tfhf.data import sources
    from tfhf.models import loading
    from tfhf.tasks.classify import ClassifyConfig

    if _STEPS.value < 1 or _WARMUP.value < 1:
        raise app.UsageError("--steps and --warmup_steps must be at least 1")
    total = _WARMUP.value + _STEPS.value
    config = ClassifyConfig(
        batch_size=_BATCH.value,
        max_seq_length=_MAX_SEQ.value,
        max_steps_per_epoch=total,
        mixed_precision=_PRECISION.value,
        jit_compile=_JIT.value,
        steps_per_execution=_SPE.value,
    )
    problems = config.problems()
    if problems:
        raise app.UsageError("; ".join(problems))

    load_before = os.getloadavg()[0]
    data = sources.load_classification_data(
        dataset=config.dataset,
        train_file="",
        validation_file="",
        test_file="",
        text_column="text",
        label_column="label",
        seed=config.seed,
    )
    folder = loading.resolve_model(config.model)
    plain = dataclasses.replace(config, mixed_precision="none", jit_compile=False)
    fast = dataclasses.replace(config, mixed_precision="fp16", jit_compile=True)
    tfhf_configs = list(dict.fromkeys([config, plain, fast])) if _COMPARE.value else [config]

    runs = {}
    scratch = Path(tempfile.mkdtemp(prefix="tfhf-bench-"))
    try:
        for each in tfhf_configs:
            print(f"== {_label(each)}: {total} steps, batch {each.batch_size}", flush=True)
            runs[_label(each)] = _run_tfhf(each, scratch)
            tf_keras.backend.clear_session()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"== baseline: {total} steps, batch {config.batch_size}", flush=True)
    runs["baseline"] = _run_baseline(config, data, folder)

    ratios = {
        f"{_label(config)} / baseline": runs[_label(config)]["examples_per_second"]
        / runs["baseline"]["examples_per_second"]
    }
    if _COMPARE.value:
        ratios[f"{_label(fast)} / {_label(plain)}"] = (
            runs[_label(fast)]["examples_per_second"] / runs[_label(plain)]["examples_per_second"]
        )

    print(
        f"\n{config.model} on {data.description}, batch {config.batch_size}, max_seq_length "
        f"{config.max_seq_length}; {_STEPS.value} timed steps after {_WARMUP.value} warm-up; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before the runs"
    )
    print(f"\n{'run':32s} {'examples/s':>11s} {'padding':>8s} {'steps':>6s} {'seconds':>8s}")
    for name, figures in runs.items():
        print(
            f"{name:32s} {figures['examples_per_second']:11.1f} "
            f"{figures['padding_fraction']:8.1%} {figures['steps_timed']:6d} "
            f"{figures['seconds_timed']:8.1f}"
        )
    print()
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x")

    if _OUTPUT.value:
        report = {
            "model": config.model,
            "data": data.description,
            "batch_size": config.batch_size,
            "max_seq_length": config.max_seq_length,
            "steps": _STEPS.value,
            "warmup_steps": _WARMUP.value,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "runs": runs,
            "ratios": ratios,
        }
        Path(_OUTPUT.value).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
