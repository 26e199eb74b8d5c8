"""The classify task end to end in-process: training, outputs, reload, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.models.model_folder import load_classifier_folder
from tfhf.tasks.classify import ClassifyConfig
from tfhf.train import run


def tiny_config(tiny_model_dir, tiny_data, tmp_path, **overrides) -> ClassifyConfig:
    values = dict(
        task="classify",
        model=str(tiny_model_dir),
        train_file=str(tiny_data["train"]),
        validation_file=str(tiny_data["validation"]),
        test_file=str(tiny_data["test"]),
        max_seq_length=16,
        batch_size=8,
        epochs=8,
        learning_rate=1e-2,
        warmup_ratio=0.1,
        seed=7,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
    )
    values.update(overrides)
    return ClassifyConfig(**values)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classify")
    config = tiny_config(tiny_model_dir, tiny_data, tmp)
    return config, run(config)


def test_training_learns_the_signal(trained):
    _, metrics = trained
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < losses[0] * 0.5
    assert metrics["test"]["accuracy"] >= 0.9
    assert metrics["test"]["examples"] == 24
    assert 0 < metrics["test"]["macro_f1"] <= 1
    assert metrics["train_examples_per_second"] > 0
    assert metrics["labels"] == ["negative", "positive"]


def test_workdir_holds_metrics_flags_and_a_reloadable_model(trained):
    config, metrics = trained
    workdir = config.workdir
    on_disk = json.loads(open(f"{workdir}/metrics.json").read())
    assert on_disk["test"] == metrics["test"]
    assert tf.io.gfile.glob(f"{workdir}/logs/train/events.out.tfevents.*")

    # transformers alone loads the saved model and tokenizer back.
    import transformers

    model = transformers.TFAutoModelForSequenceClassification.from_pretrained(f"{workdir}/model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(f"{workdir}/model")
    assert model.config.id2label == {0: "negative", 1: "positive"}
    texts = ["the film was great fun !", "a dull and boring plot"]
    hf_logits = model(dict(tokenizer(texts, padding=True, return_tensors="tf"))).logits.numpy()

    reloaded, preprocessor, names = load_classifier_folder(Path(workdir) / "model")
    ours = reloaded(preprocessor(tf.constant(texts)), training=False).logits.numpy()
    np.testing.assert_allclose(ours, hf_logits, atol=1e-5)
    assert names == ["negative", "positive"]
    # The saved model is the kept one: it scores the test split as the run reported.
    import csv

    with open(config.test_file) as f:
        rows = list(csv.DictReader(f))
    logits = reloaded(preprocessor(tf.constant([r["text"] for r in rows])), training=False).logits
    predicted = [names[i] for i in logits.numpy().argmax(-1)]
    accuracy = np.mean([p == r["label"] for p, r in zip(predicted, rows, strict=True)])
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])


def test_flags_txt_replays_the_same_config(trained):
    config, _ = trained
    from tfhf.train import parse_config

    assert parse_config(["tfhf.train", f"--flagfile={config.workdir}/flags.txt"]) == (
        config.resolved()
    )


def test_labels_unseen_in_training_stop_before_the_workdir_exists(
    tiny_model_dir, tiny_data, tmp_path
):
    bad = tmp_path / "test.csv"
    bad.write_text("text,label\ngood film,positive\nodd film,neutral\n")
    config = tiny_config(tiny_model_dir, tiny_data, tmp_path, test_file=str(bad))
    with pytest.raises(TfhfError, match=r"test\.csv:3: label 'neutral' never occurs"):
        run(config)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(batch_size=0), "--batch_size must be positive"),
        (dict(learning_rate=-1.0), "--learning_rate must be positive"),
        (dict(warmup_ratio=1.5), r"--warmup_ratio must be in \[0, 1\)"),
        (dict(max_seq_length=128), "exceeds the model's 64 positions"),
        (dict(model="no-such-model-anywhere"), "HuggingFace hub is unreachable"),
        (dict(model="./missing/model"), "^--model ./missing/model: no such folder$"),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    tiny_model_dir, tiny_data, tmp_path, overrides, message
):
    config = tiny_config(tiny_model_dir, tiny_data, tmp_path, **overrides)
    with pytest.raises(TfhfError, match=message) as info:
        run(config)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "export").exists()


def test_unreachable_hub_is_reported_as_such(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    # A hub endpoint nothing listens on: the real download path, failing fast.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        hub_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config = tiny_config(tiny_model_dir, tiny_data, tmp_path, model="bert-base-uncased")
    with pytest.raises(
        TfhfError, match="bert-base-uncased: no such folder; as a hub id it cannot be fetched"
    ):
        run(config)


def test_export_holds_the_weights_once_and_no_optimizer_state(trained):
    config, metrics = trained
    model, _, _ = load_classifier_folder(Path(config.workdir) / "model")
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    variables = Path(metrics["export"]) / "variables"
    saved_bytes = sum(p.stat().st_size for p in variables.iterdir())
    # AdamW keeps two slots per weight: saving them would make this about 3x.
    assert weight_bytes <= saved_bytes < 1.3 * weight_bytes


def test_validation_figures_are_those_of_the_kept_epoch(trained):
    config, metrics = trained
    from tfhf.data.sources import load_files

    assert metrics["validation"]["examples"] == 24
    assert 1 <= metrics["best_epoch"] <= config.epochs
    # The saved model is the kept epoch's: evaluated afresh it reproduces the reported figures.
    from tfhf.data.pipeline import classification_dataset
    from tfhf.training.evaluation import evaluate

    model, preprocessor, names = load_classifier_folder(Path(config.workdir) / "model")
    data = load_files(
        train_file=config.train_file,
        validation_file=config.validation_file,
        test_file=config.test_file,
    )
    ds = classification_dataset(
        data.validation.texts,
        data.validation.labels,
        preprocessor=preprocessor,
        batch_size=8,
        training=False,
    )
    again = evaluate(model, ds, len(names))
    assert again["accuracy"] == metrics["validation"]["accuracy"]
    assert abs(again["loss"] - metrics["validation"]["loss"]) < 1e-4


def test_a_workdir_that_cannot_be_created_is_refused(tiny_model_dir, tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = tiny_config(tiny_model_dir, tiny_data, tmp_path, workdir=str(blocker / "run"))
    with pytest.raises(TfhfError, match="cannot create workdir"):
        run(config)
    assert not (tmp_path / "export").exists()


def test_a_mixed_precision_run_learns_and_exports_a_float32_model(
    tiny_model_dir, tiny_data, tmp_path
):
    config = tiny_config(tiny_model_dir, tiny_data, tmp_path, mixed_precision="fp16")
    metrics = run(config)
    assert metrics["test"]["accuracy"] >= 0.9
    saved = tf.train.load_checkpoint(f"{metrics['export']}/variables/variables")
    dtypes = set(saved.get_variable_to_dtype_map().values())
    assert tf.float32 in dtypes and not dtypes & {tf.float16, tf.bfloat16}
    exported = tf.saved_model.load(metrics["export"])
    texts = ["the film was great fun !", "a dull and boring plot"]
    served = exported.signatures["serving_default"](text=tf.constant(texts))["probabilities"]
    reloaded, preprocessor, _ = load_classifier_folder(Path(config.workdir) / "model")
    logits = reloaded(preprocessor(tf.constant(texts)), training=False).logits
    assert reloaded.layers[0].compute_dtype == "float32"
    np.testing.assert_allclose(served.numpy(), tf.nn.softmax(logits).numpy(), atol=1e-5)


def test_the_run_holds_what_the_reference_documents(trained):
    from conftest import assert_run_is_documented, assert_signatures_are_documented

    from tfhf.tasks.classify import ClassifyTask

    config, metrics = trained
    assert_run_is_documented(Path(config.workdir), metrics)
    assert_signatures_are_documented(Path(metrics["export"]), ClassifyTask.export_signatures)
