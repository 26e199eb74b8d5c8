"""How tfhf's input scales with the size of a user's corpus: for each task and corpus size,
the time from `python -m tfhf.train` to its first training steps and the run's peak RSS.

  python benchmarks/data_scale.py --sizes_mb=10,100,1000 --tasks=classify,lm,mlm,summarize
  python benchmarks/data_scale.py --train_file=my_corpus.jsonl --tasks=lm
  python benchmarks/data_scale.py --repo=../tfhf-before --nowarm   # another checkout

Corpora are synthesized (seeded) into a temporary folder as JSONL: classify rows of ~150
bytes (a review-like text and a label), lm and mlm documents of ~4 KB, summarize pairs of a
~2 KB article and its first sentence as headline; every run trains 2 steps of a small
model (`--max_steps_per_epoch=2`, one epoch, no export) and is stopped at its first step
line, so what grows with the corpus is the input work alone. `--train_file` measures a user's file
instead (for the tasks given, with --text_column / --label_column as the defaults).
Peak RSS is the run's own high-water mark (VmHWM), read while it runs. lm and mlm run twice
on each corpus with a fresh `--token_cache`: cold (the tokenizer trained and the corpus
tokenized) and warm (both read from the cache), and the cold run's tokenizing rate is shown.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from absl import app, flags

_SIZES = flags.DEFINE_list("sizes_mb", ["10", "100"], "Corpus sizes to synthesize, in MB.")
_TASKS = flags.DEFINE_list("tasks", ["classify", "lm", "mlm", "summarize"], "Tasks to run.")
_TRAIN_FILE = flags.DEFINE_string("train_file", "", "A corpus of your own, instead.")
_REPO_FLAG = flags.DEFINE_string("repo", "", "The tfhf checkout to run; default this one.")
_WARM = flags.DEFINE_bool(
    "warm", True, "lm and mlm: a second run on the cache the first wrote (--token_cache)."
)

_REPO = Path(__file__).resolve().parents[1]
_WORDS = (
    "the a film story actor scene moving slow witty dull bright plot ending music long short "
    "heart cast director script camera light dark funny sad brave quiet loud old new city sea"
).split()

# Small models: the cost measured is the input's, not the model's.
_SMALL = ["--vocab_size=2048", "--n_layer=1", "--n_head=2", "--n_embd=64"]
_TASK_FLAGS = {
    "classify": ["--model=minilm-l6", "--max_seq_length=64", "--max_eval_examples=64"],
    "lm": [*_SMALL, "--block_size=64"],
    "mlm": [*_SMALL, "--max_seq_length=64"],
    "summarize": [
        "--source_column=article",
        "--target_column=headline",
        "--max_source_length=128",
        "--max_target_length=32",
        "--max_eval_examples=16",
        "--num_beams=1",
    ],
}


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def _synthesize(task: str, megabytes: float, folder: Path) -> Path:
    path = folder / f"{task}_{megabytes:g}mb.jsonl"
    if path.exists():
        return path
    rng = random.Random(0)
    target, written = megabytes * 1e6, 0
    with path.open("w") as f:
        while written < target:
            if task == "classify":
                row = {"text": _sentence(rng, 24), "label": rng.choice(["pos", "neg"])}
            elif task == "summarize":
                sentences = [_sentence(rng, 20) for _ in range(18)]
                row = {"article": " ".join(sentences), "headline": sentences[0]}
            else:
                row = {"text": "\n".join(_sentence(rng, 20) for _ in range(36))}
            line = json.dumps(row) + "\n"
            f.write(line)
            written += len(line)
    return path


class Measured(NamedTuple):
    first_step: float | None  # seconds to the first step line
    peak_gib: float
    failure: str  # the last line of a failed run's log
    rate: str  # the tokenizing rate a cold lm or mlm run printed
    vocabulary: str  # how long a cold lm or mlm run took to train its tokenizer


def _run(task: str, train_file: Path, workdir: Path, extra: list[str]) -> Measured:
    command = [
        sys.executable,
        "-m",
        "tfhf.train",
        f"--task={task}",
        f"--train_file={train_file}",
        "--epochs=1",
        "--max_steps_per_epoch=2",
        "--batch_size=8",
        f"--workdir={workdir}",
        *([] if task == "mlm" else ["--noexport"]),  # mlm runs export nothing
        *_TASK_FLAGS.get(task, []),
        *extra,
    ]
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=_REPO_FLAG.value or _REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0]

    def watch() -> None:  # the kernel's high-water mark, read until the process ends
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    first_step, last, rate, vocabulary = None, "", "", ""
    for line in proc.stdout:
        if first_step is None and " step " in line and line.startswith("epoch "):
            first_step = time.monotonic() - start
            proc.terminate()  # what follows (validation, saving) does not grow with the corpus
        if line.startswith("tfhf: tokenized ") and "(" in line:
            rate = line.split("(", 1)[1].split(")", 1)[0]
        if line.startswith("tfhf: trained on "):
            vocabulary = line.rsplit(" in ", 1)[1].strip()
        if line.strip():
            last = line.strip()
    proc.wait()
    watcher.join()
    failed = first_step is None and proc.returncode
    return Measured(first_step, peak[0] / 2**20, last if failed else "", rate, vocabulary)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    folder = Path(tempfile.mkdtemp(prefix="tfhf-data-scale-"))
    print(
        f"{'task':<10}{'corpus':>14}{'run':>6}{'first step':>12}{'peak RSS':>11}"
        f"{'vocabulary':>12}  tokenizing"
    )
    for task in _TASKS.value:
        corpora = (
            [Path(_TRAIN_FILE.value)]
            if _TRAIN_FILE.value
            else [_synthesize(task, float(mb), folder) for mb in _SIZES.value]
        )
        for corpus in corpora:
            size = sum(p.stat().st_size for p in [corpus] if p.is_file()) / 1e6
            cached = task in ("lm", "mlm") and _WARM.value
            cache = ["--token_cache", str(folder / f"cache_{task}_{size:.0f}")] if cached else []
            for run in ("cold", "warm") if cached else ("-",):
                found = _run(task, corpus, folder / f"run_{task}_{size:.0f}_{run}", cache)
                shown = f"{found.first_step:.0f} s" if found.first_step is not None else "none"
                print(
                    f"{task:<10}{size:>11.0f} MB{run:>6}{shown:>12}{found.peak_gib:>8.2f} GiB"
                    f"{found.vocabulary:>12}  "
                    + (f"failed: {found.failure}" if found.failure else found.rate),
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
