"""Resolving `--model` and loading weights from each folder format tfhf accepts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tfhf.errors import TfhfError
from tfhf.models.loading import load_sequence_classifier, resolve_model
from tfhf.tokenizers.wordpiece import tokenizer_files


def _encoder_weights(model) -> dict[str, np.ndarray]:
    prefix = model.base_model_prefix + "/"
    return {w.name.split(prefix, 1)[1]: w.numpy() for w in model.weights if prefix in w.name}


def test_tf_h5_folder_keeps_the_encoder_and_adds_a_head(tiny_model_dir):
    from transformers import TFBertModel

    base = TFBertModel.from_pretrained(tiny_model_dir)
    model = load_sequence_classifier(tiny_model_dir, ["a", "b", "c"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    ours, theirs = _encoder_weights(model), _encoder_weights(base)
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_safetensors_folder_written_by_tf_loads_the_same_weights(tiny_model_dir, tmp_path):
    from transformers import TFBertModel

    base = TFBertModel.from_pretrained(tiny_model_dir)
    folder = tmp_path / "st"
    base.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tiny_model_dir / "vocab.txt", folder)
    assert (folder / "model.safetensors").exists() and not (folder / "tf_model.h5").exists()
    model = load_sequence_classifier(resolve_model(str(folder)), ["neg", "pos"])
    ours, theirs = _encoder_weights(model), _encoder_weights(base)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_a_tfhf_workdir_resolves_to_its_model_folder(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "run" / "model")
    assert resolve_model(str(tmp_path / "run")) == tmp_path / "run" / "model"


def test_tokenizer_json_alone_yields_the_same_vocabulary(tiny_model_dir, tmp_path):
    folder = tmp_path / "tj"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "tokenizer.json", folder)
    vocab_file, lower_case = tokenizer_files(folder, tmp_path / "work")
    assert vocab_file.read_text() == (tiny_model_dir / "vocab.txt").read_text()
    assert lower_case is True


def test_non_wordpiece_tokenizer_is_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {}}}))
    with pytest.raises(TfhfError, match="tokenizer is BPE, but classify needs a WordPiece"):
        tokenizer_files(tmp_path, tmp_path / "work")


@pytest.mark.parametrize(
    "remove, message",
    [
        ("config.json", "no config.json"),
        ("tf_model.h5", "no weights"),
        ("vocab.txt", "no tokenizer"),
    ],
)
def test_incomplete_folders_are_refused(tiny_model_dir, tmp_path, remove, message):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    (folder / remove).unlink()
    if remove == "vocab.txt":
        (folder / "tokenizer.json").unlink()
    with pytest.raises(TfhfError, match=message):
        resolve_model(str(folder))


def test_weights_that_do_not_fit_the_config_are_refused(tiny_model_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 3  # the checkpoint has 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TfhfError, match="weights do not match the config"):
        load_sequence_classifier(folder, ["neg", "pos"])
