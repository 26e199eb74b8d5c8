"""Does MLM pretraining pay? Rotten Tomatoes accuracy with and without it, side by side.

  python benchmarks/pretraining_pays.py --skip_minilm   # the small pair, 3 seeds: ~40 min
  python benchmarks/pretraining_pays.py                 # and the MiniLM pair

(a) the small encoder of the mlm defaults (a RoFormer) fine-tuned from random
initialisation, against (b) the same config fine-tuned from tfhf's default from-scratch
MLM run (same WordPiece vocabulary, same classify budget), each for `--seeds` seeds (the
classify seed, and the random init's); the table gives each pair's mean and spread.
(c) minilm-l6 fine-tuned as it is, against minilm-l6 after continued MLM on the review
texts (train-split snippets and plots; test snippets are never seen), one seed. Every run
is an ordinary `tfhf.train` run in `--workdir`; a finished run is reused, so an
interrupted study resumes.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from absl import app, flags, logging

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_WORKDIR = flags.DEFINE_string("workdir", "runs/pretraining_pays", "Where the runs go.")
_PRETRAIN_STEPS = flags.DEFINE_integer(
    "pretrain_steps",
    0,
    "Steps per epoch of the from-scratch MLM; 0: the mlm defaults as they are (whole epochs).",
)
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds of each small-encoder classify run.")
_SMALL_EPOCHS = flags.DEFINE_integer("small_epochs", 3, "Classify epochs, small encoder.")
_SMALL_LR = flags.DEFINE_float("small_learning_rate", 3e-4, "Classify peak LR, small encoder.")
_SKIP_MINILM = flags.DEFINE_bool("skip_minilm", False, "Only run the small pair.")

FIRST_SEED = 42  # the classify default's


def _run(**overrides) -> dict:
    from tfhf.config import ExportConfig
    from tfhf.tasks import get_task
    from tfhf.train import run

    name = overrides.pop("name")
    root = Path(_WORKDIR.value)
    config_class = get_task(task := overrides.pop("task")).config_class
    if issubclass(config_class, ExportConfig):
        overrides["export"] = False  # the study reads metrics only
    config = config_class(workdir=str(root / name), **overrides)
    metrics_file = root / name / "metrics.json"
    if metrics_file.exists():
        print(f"== {name}: reusing {metrics_file}", flush=True)
        return json.loads(metrics_file.read_text())
    print(f"== {name}: {task} {overrides}", flush=True)
    return run(config)


def _random_init_copy(pretrained: Path, folder: Path, seed: int) -> Path:
    """A randomly initialised model of `pretrained`'s config and vocabulary, saved to `folder`."""
    import tf_keras
    import transformers

    from tfhf.models.model_folder import save_pretrained_folder

    if not (folder / "config.json").exists():
        tf_keras.utils.set_random_seed(seed)
        config = transformers.AutoConfig.from_pretrained(pretrained)
        model = transformers.TFAutoModelForMaskedLM.from_config(config)
        model(model.dummy_inputs, training=False)
        tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained)
        save_pretrained_folder(model, tokenizer, folder)
    return folder


def _spread(runs: list[dict], split: str) -> str:
    values = [r[split]["accuracy"] for r in runs]
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    root = Path(_WORKDIR.value)
    scratch = _run(name="mlm_scratch", task="mlm", max_steps_per_epoch=_PRETRAIN_STEPS.value)
    small = dict(epochs=_SMALL_EPOCHS.value, learning_rate=_SMALL_LR.value)
    rows = {"(a) small encoder, random init": [], "(b) small encoder, from-scratch MLM": []}
    for seed in range(FIRST_SEED, FIRST_SEED + _SEEDS.value):
        random_init = _random_init_copy(
            root / "mlm_scratch" / "model", root / f"random_init_{seed}", seed
        )
        rows["(a) small encoder, random init"].append(
            _run(
                name=f"classify_random_init_{seed}",
                task="classify",
                model=str(random_init),
                seed=seed,
                **small,
            )
        )
        rows["(b) small encoder, from-scratch MLM"].append(
            _run(
                name=f"classify_mlm_scratch_{seed}",
                task="classify",
                model=str(root / "mlm_scratch"),
                seed=seed,
                **small,
            )
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
        rows["(c) minilm-l6 as packaged"] = [
            _run(name="classify_minilm", task="classify", model="minilm-l6")
        ]
        rows["(c) minilm-l6 + MLM on reviews"] = [
            _run(name="classify_minilm_mlm", task="classify", model=str(root / "mlm_minilm"))
        ]
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
    print(f"\n{'run':38s} {'seeds':>5s} {'test acc':>17s} {'val acc':>17s} {'s each':>7s}")
    for name, runs in rows.items():
        seconds = statistics.mean(r["wall_seconds"] for r in runs)
        print(
            f"{name:38s} {len(runs):5d} {_spread(runs, 'test'):>17s} "
            f"{_spread(runs, 'validation'):>17s} {seconds:7.0f}"
        )
    a, b = rows["(a) small encoder, random init"], rows["(b) small encoder, from-scratch MLM"]
    for split in ("test", "validation"):
        gain = statistics.mean(r[split]["accuracy"] for r in b) - statistics.mean(
            r[split]["accuracy"] for r in a
        )
        print(f"(b) - (a), mean {split} accuracy: {100 * gain:+.2f} points")


if __name__ == "__main__":
    app.run(main)
