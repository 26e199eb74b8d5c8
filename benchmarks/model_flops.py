"""How close to the machine training runs: model FLOP/s of short classify, lm and mlm runs
of the defaults, beside an fp32 matmul timed in the same process before and after each.

  python benchmarks/model_flops.py                      # about 6 minutes on 2 cores
  python benchmarks/model_flops.py --steps=200 --tasks=lm

Each run is the task's default (`flags/<task>.flags`) cut to --steps training steps,
without an export, with a small evaluation. Its model FLOP/s is what `metrics.json`
reports as `train_model_flops_per_second`: training tokens per second (after the first
step) times `tfhf.training.flops.transformer_training_flops` per token (6 x the weights
a token multiplies, attention and the output layer included; classify counts each text's
own tokens, not padding). The matmul figure is the best of repeated 2048 x 2048 float32
matmuls over 2 s (`matmul_flops_per_second`); the share is the run's figure over the
mean of the matmul figures before and after it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_STEPS = flags.DEFINE_integer("steps", 120, "Training steps per run.")
_TASKS = flags.DEFINE_list("tasks", ["classify", "lm", "mlm"], "Tasks to run.")

_REPO = Path(__file__).resolve().parents[1]


def _config(task: str, folder: Path):
    from tfhf.train import parse_config

    config = parse_config(["tfhf.train", f"--flagfile={_REPO / 'flags' / f'{task}.flags'}"])
    changes = dict(
        epochs=1,
        max_steps_per_epoch=_STEPS.value,
        workdir=str(folder / task),
        checkpoint_every_steps=0,
    )
    if hasattr(config, "export"):
        changes["export"] = False
    if hasattr(config, "max_eval_examples"):
        changes["max_eval_examples"] = 64
    return dataclasses.replace(config, **changes)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import os

    from tfhf.train import run
    from tfhf.training.flops import matmul_flops_per_second

    os.chdir(_REPO)  # flagfiles name the packaged data relative to the checkout
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in _TASKS.value:
            config = _config(task, Path(scratch))
            before = matmul_flops_per_second()
            metrics = run(config)
            after = matmul_flops_per_second()
            rows.append((task, metrics, before, after))
    print(
        f"\n{'task':10s}{'parameters':>12s}{'training speed':>22s}{'model GFLOP/s':>15s}"
        f"{'matmul GFLOP/s before, after':>30s}{'share':>8s}"
    )
    for task, metrics, before, after in rows:
        model = metrics["train_model_flops_per_second"]
        unit, speed = next(
            (key[len("train_") : -len("_per_second")], value)
            for key, value in metrics.items()
            if key.startswith("train_") and key.endswith("_per_second") and "flops" not in key
        )
        print(
            f"{task:10s}{metrics['parameters']:>12,d}{f'{speed:,.0f} {unit}/s':>22s}"
            f"{model / 1e9:>15.1f}{f'{before / 1e9:.1f}, {after / 1e9:.1f}':>30s}"
            f"{model / ((before + after) / 2):>8.1%}"
        )


if __name__ == "__main__":
    app.run(main)
