"""Crash and resume for real: a training process killed with SIGKILL after a checkpoint,
then the same command again, against a run that was never interrupted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import REPO, run_module

STEPS_PER_EPOCH = 150
EPOCHS = 2


def command(corpus, workdir, export_dir) -> list[str]:
    return [
        "--task=lm",
        f"--train_file={corpus}",
        "--vocab_size=300",
        "--block_size=16",
        "--n_layer=1",
        "--n_head=2",
        "--n_embd=16",
        "--batch_size=4",
        f"--epochs={EPOCHS}",
        f"--max_steps_per_epoch={STEPS_PER_EPOCH}",
        "--checkpoint_every_steps=20",
        "--learning_rate=3e-3",
        "--seed=11",
        f"--workdir={workdir}",
        f"--export_dir={export_dir}",
        "--noexport",  # the resume is the point; exports are tested elsewhere
    ]


def test_a_killed_run_resumes_where_it_stopped_and_ends_like_an_uninterrupted_one(tmp_path):
    corpus = tmp_path / "verse.txt"
    corpus.write_text(
        "".join(
            f"Line {i}: when in disgrace with fortune and men's eyes, I all alone beweep.\n"
            for i in range(400)
        )
    )
    workdir = tmp_path / "run"
    args = command(corpus, workdir, tmp_path / "export")
    index = workdir / "checkpoints" / "chief" / "checkpoint"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfhf.train", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not index.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert index.exists(), "no checkpoint appeared before the run ended or timed out"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (workdir / "metrics.json").exists()

    resumed = run_module("tfhf.train", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = re.search(
        r"resuming from the checkpoint in .*: epoch (\d+), step (\d+) of (\d+) "
        r"\((\d+) steps done\)",
        resumed.stdout,
    )
    assert found, resumed.stdout[-2000:]
    done, per_epoch = int(found.group(4)), int(found.group(3))
    assert 0 < done < EPOCHS * per_epoch
    metrics = json.loads((workdir / "metrics.json").read_text())
    # Every step ran exactly once: none repeated after the resume, none skipped.
    assert metrics["optimizer_steps"] == EPOCHS * per_epoch
    assert len(metrics["train_loss_per_epoch"]) == EPOCHS
    assert not (workdir / "checkpoints").exists()  # removed once training completed
    assert "export" not in metrics and not (tmp_path / "export").exists()  # --noexport

    whole = tmp_path / "whole"
    straight = run_module("tfhf.train", *command(corpus, whole, tmp_path / "export2"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    reference = json.loads((whole / "metrics.json").read_text())
    assert reference["optimizer_steps"] == metrics["optimizer_steps"]
    # Same data order and schedule; only dropout's random draws differ after the resume.
    assert (
        abs(metrics["validation"]["loss"] - reference["validation"]["loss"])
        < 0.05 * (reference["validation"]["loss"])
    )
