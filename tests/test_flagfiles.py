"""The shipped flagfiles parse into their tasks' configs, state the real defaults, and replay."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import REPO

from tfhf.config import TrainConfig
from tfhf.errors import TfhfError
from tfhf.tasks.classify import ClassifyConfig
from tfhf.tasks.lm import LmConfig
from tfhf.tasks.mlm import MlmConfig
from tfhf.tasks.summarize import SummarizeConfig
from tfhf.tasks.translate import TranslateConfig
from tfhf.train import parse_config

FLAGFILES = sorted(p.name for p in (REPO / "flags").glob("*.flags"))


def parse_flagfile(name: str) -> TrainConfig:
    return parse_config(["tfhf.train", f"--flagfile=flags/{name}"])


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # flagfiles nest with paths relative to the working directory


def test_classify_flags_spell_out_the_defaults():
    assert parse_flagfile("classify.flags") == ClassifyConfig().resolved()


def test_sst2_example_overrides_only_what_it_names():
    config = parse_flagfile("classify_sst2.flags")
    assert (config.model, config.dataset, config.text_column) == (
        "bert-base-uncased",
        "glue/sst2",
        "sentence",
    )
    defaults = ClassifyConfig().resolved()
    changed = {
        f.name
        for f in dataclasses.fields(ClassifyConfig)
        if getattr(config, f.name) != getattr(defaults, f.name)
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
    assert parse_flagfile("lm.flags") == LmConfig().resolved()


def test_mlm_flags_spell_out_the_mlm_defaults():
    assert parse_flagfile("mlm.flags") == MlmConfig().resolved()


def test_summarize_flags_spell_out_the_summarize_defaults():
    assert parse_flagfile("summarize.flags") == SummarizeConfig().resolved()


def test_translate_flags_spell_out_the_translate_defaults():
    assert parse_flagfile("translate.flags") == TranslateConfig().resolved()


def test_lm_finetune_example_names_a_checkpoint():
    config = parse_flagfile("lm_gpt2_finetune.flags")
    assert isinstance(config, LmConfig) and config.model == "gpt2"
    assert config.workdir == "runs/lm_gpt2"


@pytest.mark.parametrize("name", FLAGFILES)
def test_every_flagfile_replays_through_the_flags_txt_it_would_write(name, tmp_path):
    config = parse_flagfile(name)
    assert config.problems() == []
    written = tmp_path / "flags.txt"
    written.write_text(config.to_flagfile())
    assert parse_config(["tfhf.train", f"--flagfile={written}"]) == config


def test_no_task_inherits_another_tasks_defaults():
    classify, lm, mlm = ClassifyConfig(), LmConfig(), MlmConfig()
    assert (classify.model, lm.model, mlm.model) == ("minilm-l6", "", "")
    assert (classify.dataset, lm.dataset) == ("rotten_tomatoes", "shakespeare")
    assert (lm.weight_decay, mlm.weight_decay) == (0.1, 0.01)
    assert not hasattr(classify, "block_size") and not hasattr(mlm, "export_dir")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task=mlm", "--export_dir=out"], "--export_dir is not a setting of --task=mlm"),
        (["--task=classify", "--block_size=64"], "--block_size is not a setting of --task=c"),
        (["--task=lm", "--strategy=gpus"], "value should be one of"),
        (["--task=lm", "--epochs=two"], "--epochs"),
    ],
)
def test_flags_of_another_task_or_of_the_wrong_type_are_refused(args, message):
    with pytest.raises(TfhfError, match=message):
        parse_config(["tfhf.train", *args])


def test_the_last_task_given_wins_and_brings_its_defaults():
    config = parse_config(["tfhf.train", "--task=classify", "--flagfile=flags/lm.flags"])
    assert config == LmConfig().resolved()
