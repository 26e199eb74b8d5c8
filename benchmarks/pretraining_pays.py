"""Does MLM pretraining pay? Rotten Tomatoes test accuracy with and without it, side by side.

  python benchmarks/pretraining_pays.py                 # all four comparisons, ~1 hour on 2 cores
  python benchmarks/pretraining_pays.py --skip_minilm   # only the small-BERT pair

(a) a small BERT fine-tuned from random initialisation, against (b) the same config
fine-tuned from tfhf's from-scratch MLM checkpoint (same WordPiece vocabulary, same
classify budget); (c) minilm-l6 fine-tuned as it is, against minilm-l6 after
continued MLM on the review texts (train-split snippets and plots; test snippets
are never seen). Every run is an ordinary `tfhf.train` run in `--workdir`.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_WORKDIR = flags.DEFINE_string("workdir", "runs/pretraining_pays", "Where the runs go.")
_PRETRAIN_STEPS = flags.DEFINE_integer(
    "pretrain_steps",
    600,
    "Steps of from-scratch MLM (batches of the mlm defaults: 16 x 128 tokens).",
)
_SMALL_EPOCHS = flags.DEFINE_integer("small_epochs", 3, "Classify epochs for the small BERT.")
_SMALL_LR = flags.DEFINE_float("small_learning_rate", 3e-4, "Classify peak LR, small BERT.")
_SKIP_MINILM = flags.DEFINE_bool("skip_minilm", False, "Only run the small-BERT pair.")


def _run(**overrides) -> dict:
    from tfhf.config import ExportConfig
    from tfhf.tasks import get_task
    from tfhf.train import run

    name = overrides.pop("name")
    task = overrides.pop("task")
    root = Path(_WORKDIR.value)
    config_class = get_task(task).config_class
    if issubclass(config_class, ExportConfig):
        overrides["export_dir"] = str(root / "export" / name)
    config = config_class(workdir=str(root / name), **overrides)
    metrics_file = root / name / "metrics.json"
    if metrics_file.exists():  # finished earlier: reuse, so an interrupted study resumes
        print(f"== {name}: reusing {metrics_file}", flush=True)
        return json.loads(metrics_file.read_text())
    print(f"== {name}: {task} {overrides}", flush=True)
    return run(config)


def _random_init_copy(pretrained: Path, folder: Path) -> Path:
    """A randomly initialised model of `pretrained`'s config and vocabulary, saved to `folder`."""
    import tf_keras
    import transformers

    from tfhf.models.model_folder import save_pretrained_folder

    if not (folder / "config.json").exists():
        tf_keras.utils.set_random_seed(0)
        config = transformers.AutoConfig.from_pretrained(pretrained)
        model = transformers.TFAutoModelForMaskedLM.from_config(config)
        model(model.dummy_inputs, training=False)
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained)
        save_pretrained_folder(model, tokenizer, folder)
    return folder


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    root = Path(_WORKDIR.value)
    results = {}
    scratch = _run(name="mlm_scratch", task="mlm", max_steps_per_epoch=_PRETRAIN_STEPS.value)
    random_init = _random_init_copy(root / "mlm_scratch" / "model", root / "random_init")
    small = dict(epochs=_SMALL_EPOCHS.value, learning_rate=_SMALL_LR.value)
    results["(a) small BERT, random init"] = _run(
        name="classify_random_init", task="classify", model=str(random_init), **small
    )
    results["(b) small BERT, from-scratch MLM"] = _run(
        name="classify_mlm_scratch", task="classify", model=str(root / "mlm_scratch"), **small
    )
    if not _SKIP_MINILM.value:
        continued = _run(
            name="mlm_minilm",
            task="mlm",
            model="minilm-l6",
            dataset="rotten_tomatoes",
            learning_rate=5e-5,
            warmup_ratio=0.1,
        )
        results["(c) minilm-l6 as packaged"] = _run(
            name="classify_minilm", task="classify", model="minilm-l6"
        )
        results["(c) minilm-l6 + MLM on reviews"] = _run(
            name="classify_minilm_mlm", task="classify", model=str(root / "mlm_minilm")
        )
    print(
        "\n== from-scratch MLM: validation masked-token accuracy "
        f"{scratch['validation']['accuracy']:.4f}, perplexity "
        f"{scratch['validation']['perplexity']:.1f}, {scratch['wall_seconds']:.0f} s"
    )
    if not _SKIP_MINILM.value:
        print(
            f"== minilm continued MLM: validation masked-token accuracy "
            f"{continued['validation']['accuracy']:.4f}, perplexity "
            f"{continued['validation']['perplexity']:.1f}, {continued['wall_seconds']:.0f} s"
        )
    print(f"\n{'run':40s} {'test acc':>9s} {'macro-F1':>9s} {'val acc':>8s} {'seconds':>8s}")
    for name, metrics in results.items():
        print(
            f"{name:40s} {metrics['test']['accuracy']:9.4f} {metrics['test']['macro_f1']:9.4f} "
            f"{metrics['validation']['accuracy']:8.4f} {metrics['wall_seconds']:8.0f}"
        )


if __name__ == "__main__":
    app.run(main)
