"""The summarize task end to end in-process on a tiny BERT: training, ROUGE against the lead
baseline, the examples file, the saved model, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import NEGATIVE, POSITIVE, make_texts

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import TextToText
from tfhf.models.model_folder import load_text_to_text_folder
from tfhf.tasks.summarize import EXAMPLES_FILE, SummarizeConfig
from tfhf.train import run

CUES = set(POSITIVE + NEGATIVE)


def pairs_file(path: Path, n: int, seed: int) -> Path:
    """Texts and, as their summary, the words in them that carry their tone."""
    rows = []
    for text, _ in make_texts(n, seed):
        cues = [w for w in text.split() if w in CUES]
        rows.append({"text": text, "summary": " ".join(cues)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_config(tiny_model_dir, tmp_path, **overrides) -> SummarizeConfig:
    values = dict(
        model=str(tiny_model_dir),
        train_file=str(pairs_file(tmp_path / "train.jsonl", 160, seed=1)),
        validation_file=str(pairs_file(tmp_path / "validation.jsonl", 16, seed=2)),
        test_file=str(pairs_file(tmp_path / "test.jsonl", 24, seed=3)),
        source_column="text",
        target_column="summary",
        max_source_length=16,
        max_target_length=6,
        batch_size=8,
        epochs=12,
        max_steps_per_epoch=0,
        learning_rate=5e-3,
        warmup_ratio=0.1,
        seed=11,
        workdir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return SummarizeConfig(**values)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    config = tiny_config(tiny_model_dir, tmp_path_factory.mktemp("summarize"))
    return config, run(config)


def test_training_learns_to_pick_the_words_that_matter(trained):
    _, metrics = trained
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < 0.6 * losses[0]
    test, lead = metrics["test"], metrics["lead_baseline"]
    assert test["examples"] == 24
    assert test["rougeL"] > lead["rougeL"] + 0.15  # the cue words are rarely the first ones
    assert test["rouge1"] >= test["rouge2"]
    assert metrics["decoding"]["num_beams"] == 4


def test_the_examples_file_shows_sources_references_and_summaries(trained):
    config, _ = trained
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    assert len(blocks) == 20
    first = blocks[0].splitlines()
    assert [line.split()[0] for line in first] == ["SOURCE", "REFERENCE", "GENERATED"]


def test_the_saved_model_writes_the_summaries_the_run_reported(trained):
    config, _ = trained
    model, source, target, settings = load_text_to_text_folder(Path(config.workdir) / "model")
    assert (settings["max_source_length"], settings["max_target_length"]) == (16, 6)
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    sources = [b.splitlines()[0].split(None, 1)[1] for b in blocks]
    reported = [(b.splitlines()[2].split(None, 1) + [""])[1] for b in blocks]
    again = TextToText(model, source, target, jit_compile=False)(sources, config.decoding())
    assert again == reported


def test_targets_longer_than_the_limit_are_cut_and_counted(tiny_model_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir, tmp_path, max_target_length=2, epochs=1, max_steps_per_epoch=2
    )
    metrics = run(config)
    cut = metrics["targets_cut"]
    expected = sum(
        len(json.loads(line)["summary"].split()) > 1
        for line in Path(config.train_file).read_text().splitlines()
    )
    assert cut["train"] == expected > 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(target_column="headline"), "no column 'headline'"),
        (dict(max_target_length=1), r"--max_target_length must be in \[2, 511\]"),
        (dict(max_source_length=128), "--max_source_length=128 exceeds the model's 64 positions"),
        (dict(num_beams=0), "--num_beams must be positive"),
        (dict(label_smoothing=1.0), r"--label_smoothing must be in \[0, 1\)"),
        (dict(cross_attention_init="zeros"), "--cross_attention_init must be one of"),
    ],
)
def test_bad_settings_stop_before_the_workdir_exists(tiny_model_dir, tmp_path, overrides, message):
    with pytest.raises(TfhfError, match=message) as info:
        run(tiny_config(tiny_model_dir, tmp_path, **overrides))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_cross_attention_can_start_as_a_copy_of_self_attention(tiny_model_dir):
    from tfhf.models.seq2seq import warm_started_bert2bert

    model = warm_started_bert2bert(
        tiny_model_dir, start_id=2, end_id=3, pad_id=0, cross_from_self=True
    )
    weights = {w.name: w.numpy() for w in model.decoder.weights}
    copies = [n for n in weights if "/crossattention/" in n]
    assert copies
    for name in copies:
        np.testing.assert_array_equal(
            weights[name], weights[name.replace("/crossattention/", "/attention/")]
        )
