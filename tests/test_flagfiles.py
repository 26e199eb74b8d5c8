"""The shipped flagfiles parse into configs, and classify.flags states the real defaults."""

from __future__ import annotations

import dataclasses

import pytest
from absl import flags
from conftest import REPO

from tfhf.config import TrainConfig
from tfhf.train import config_from_flags


def parse_flagfile(name: str) -> TrainConfig:
    try:
        flags.FLAGS(["tfhf.train", f"--flagfile=flags/{name}"])
        return config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # flagfiles nest with paths relative to the working directory


def test_classify_flags_spell_out_the_defaults():
    assert parse_flagfile("classify.flags") == TrainConfig().resolved()


def test_sst2_example_overrides_only_what_it_names():
    config = parse_flagfile("classify_sst2.flags")
    assert (config.model, config.dataset, config.text_column) == (
        "bert-base-uncased",
        "glue/sst2",
        "sentence",
    )
    changed = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if getattr(config, f.name) != getattr(TrainConfig().resolved(), f.name)
    }
    assert changed == {
        "model",
        "dataset",
        "text_column",
        "epochs",
        "learning_rate",
        "workdir",
        "export_dir",
    }


def test_lm_flags_spell_out_the_lm_defaults():
    assert parse_flagfile("lm.flags") == TrainConfig.for_task("lm").resolved()


def test_mlm_flags_spell_out_the_mlm_defaults():
    assert parse_flagfile("mlm.flags") == TrainConfig.for_task("mlm").resolved()


def test_lm_finetune_example_names_a_checkpoint():
    config = parse_flagfile("lm_gpt2_finetune.flags")
    assert config.task == "lm" and config.model == "gpt2"
    assert config.workdir == "runs/lm_gpt2"
