"""tfhf's default lm beside nanoGPT's CPU recipe for character-level Shakespeare, on tfhf's
split of the packaged corpus, at the same training time, in one invocation.

  python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy
  python benchmarks/nanogpt_side_by_side.py --nanogpt=<a nanoGPT checkout> \\
      --torch_python=/tmp/torch/bin/python

1. Writes tfhf's packaged Shakespeare (train: the 38 works; validation: hamlet,
   twelfth_night, julius_caesar, sonnets), documents joined by a blank line, in nanoGPT's
   character format: `data/tfhf_shakespeare_char/{train,val}.bin, meta.pkl` in the checkout.
2. Runs nanoGPT's `train.py` with the CPU recipe of its README (4 layers, 4 heads, width
   128, block 64, batch 12, dropout 0, LR 1e-3 decayed to 1e-4 over `--nanogpt_iters`,
   `--device=cpu --compile=False`); its training time is the sum of the iteration times it
   prints. Its validation loss is then estimated on `--nanogpt_eval_iters` batches,
   resuming its checkpoint; bits per character = loss / ln 2.
3. Runs tfhf's default lm (`flags/lm.flags`, no export) for as many steps as take that
   long at the tokens/s of a 40-step calibration run, and reads its validation bits per
   character (the whole validation split); its training time is steps x tokens per step
   over the training tokens/s it reports.
4. Prints both, with the fp32 2048x2048 matmul GFLOP/s measured before and after.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from absl import app, flags

import tfhf  # noqa: F401  (selects Keras 2 before TensorFlow loads)

_NANOGPT = flags.DEFINE_string("nanogpt", None, "A nanoGPT checkout.", required=True)
_TORCH_PYTHON = flags.DEFINE_string("torch_python", None, "A python with torch.", required=True)
_ITERS = flags.DEFINE_integer("nanogpt_iters", 2000, "nanoGPT's max_iters (its recipe: 2000).")
_EVAL_ITERS = flags.DEFINE_integer("nanogpt_eval_iters", 200, "Batches of its final estimate.")

_REPO = Path(__file__).resolve().parents[1]
DATASET = "tfhf_shakespeare_char"
STEPS_PER_EPOCH = 700
RECIPE = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
    "--always_save_checkpoint=True",  # so that the last iteration is the one resumed
    f"--dataset={DATASET}",
]


def write_characters(folder: Path) -> int:
    """tfhf's split in nanoGPT's character format; returns the validation characters."""
    from tfhf.data.corpus import load_corpus

    train_works, validation_works = load_corpus(dataset="shakespeare").gathered()
    train, validation = "\n\n".join(train_works), "\n\n".join(validation_works)
    characters = sorted(set(train + validation))
    index = {c: i for i, c in enumerate(characters)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("val", validation)):
        np.array([index[c] for c in text], np.uint16).tofile(folder / f"{name}.bin")
    meta = {"vocab_size": len(characters), "itos": dict(enumerate(characters)), "stoi": index}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return len(validation)


def nanogpt(out_dir: Path) -> tuple[float, float]:
    """(training seconds, validation bits per character) of the recipe."""
    iters = _ITERS.value
    common = [*RECIPE, f"--out_dir={out_dir}", f"--max_iters={iters}", f"--lr_decay_iters={iters}"]
    log = _python(common)
    seconds = sum(float(ms) for ms in re.findall(r"^iter \d+: .*time ([\d.]+)ms", log, re.M))
    # Resumed at its last iteration, it evaluates first (eval_only stops only at iteration 0,
    # so it then takes one more step, after the figure is printed).
    log = _python([*common, "--init_from=resume", f"--eval_iters={_EVAL_ITERS.value}"])
    loss = float(re.findall(r"val loss ([\d.]+)", log)[-1])
    return seconds / 1000, loss / math.log(2)


def _python(args: list[str]) -> str:
    done = subprocess.run(
        [_TORCH_PYTHON.value, "train.py", *args],
        cwd=_NANOGPT.value,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise app.UsageError(f"nanoGPT failed:\n{done.stderr[-2000:]}")
    return done.stdout


def tfhf_lm(seconds: float, scratch: Path) -> tuple[int, dict]:
    """(steps, metrics) of the default lm trained for about `seconds`."""
    from tfhf.train import parse_config, run

    config = parse_config(["tfhf.train", f"--flagfile={_REPO / 'flags' / 'lm.flags'}"])

    def cut(steps: int, name: str):
        # An epoch of the packaged corpus is 720 steps: longer runs take several, of at most
        # 700 steps each (the schedule spans them all).
        epochs = math.ceil(steps / STEPS_PER_EPOCH)
        return dataclasses.replace(
            config,
            epochs=epochs,
            max_steps_per_epoch=math.ceil(steps / epochs),
            export=False,
            checkpoint_every_steps=0,
            workdir=str(scratch / name),
        )

    rate = run(cut(40, "calibration"))["train_tokens_per_second"]
    tokens_per_step = config.batch_size * config.block_size
    steps = max(1, round(seconds * rate / tokens_per_step))
    metrics = run(cut(steps, "timed"))
    return metrics["optimizer_steps"], metrics


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfhf.training.flops import matmul_flops_per_second

    os.chdir(_REPO)  # flagfiles name the packaged data relative to the checkout
    before = matmul_flops_per_second()
    characters = write_characters(Path(_NANOGPT.value) / "data" / DATASET)
    with tempfile.TemporaryDirectory() as scratch:
        seconds, theirs = nanogpt(Path(scratch) / "nanogpt")
        steps, metrics = tfhf_lm(seconds, Path(scratch))
    after = matmul_flops_per_second()
    ours = metrics["validation"]["bits_per_character"]
    tokens = steps * metrics["config"]["batch_size"] * metrics["config"]["block_size"]
    trained = tokens / metrics["train_tokens_per_second"]
    print(
        f"\nvalidation: {characters:,} characters (hamlet, twelfth_night, julius_caesar, sonnets)"
    )
    print(
        f"nanoGPT CPU recipe: {_ITERS.value} iterations, {seconds:.0f} s of training, "
        f"{theirs:.4f} bits/char"
    )
    print(
        f"tfhf default lm: {steps} steps, {trained:.0f} s of training, {ours:.4f} bits/char "
        f"({ours / theirs - 1:+.1%})"
    )
    print(f"fp32 2048x2048 matmul: {before / 1e9:.0f} GFLOP/s before, {after / 1e9:.0f} after")


if __name__ == "__main__":
    app.run(main)
