"""A task defined outside tfhf, registered through TFHF_TASK_MODULES and run end to end by
`python -m tfhf.train`: its flags, the runner's lifecycle, its metrics and its export."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_module

from tfhf.tasks import registry

# The whole of a new task: its settings, its data, its model, its export.
TOY_TASK = textwrap.dedent(
    '''
    """Which side of a hidden plane a point lies on, learned by a two-layer network."""

    import dataclasses

    import numpy as np
    import tensorflow as tf
    import tf_keras

    from tfhf.config import ExportConfig, setting
    from tfhf.runner import TrainingData
    from tfhf.serving.export import save_version
    from tfhf.tasks import Task, register_task


    @dataclasses.dataclass(frozen=True)
    class ToyConfig(ExportConfig):
        task: str = "toy"
        model: str = "mlp"
        dataset: str = "plane"
        batch_size: int = 16
        epochs: int = 3
        learning_rate: float = 0.05
        warmup_ratio: float = 0.0
        features: int = setting(4, "Coordinates per point.")
        points: int = setting(320, "Training points.")

        def problems(self):
            problems = super().problems()
            if self.features < 1:
                problems.append(f"--features must be positive, got {self.features}")
            return problems


    def points(config, n, seed):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, config.features)).astype(np.float32)
        plane = np.random.default_rng(config.seed).normal(size=config.features)
        return x, (x @ plane > 0).astype(np.int32)


    def new_model(config):
        model = tf_keras.Sequential(
            [tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(2)]
        )
        model.build([None, config.features])
        return model


    class Validate(tf_keras.callbacks.Callback):
        def __init__(self, x, y):
            super().__init__()
            self.x, self.y, self.results = x, y, []

        def on_epoch_end(self, epoch, logs=None):
            predicted = self.model(self.x, training=False).numpy().argmax(-1)
            self.results.append({"accuracy": float(np.mean(predicted == self.y))})
            logs["val_accuracy"] = self.results[-1]["accuracy"]


    @register_task("toy")
    class ToyTask(Task):
        config_class = ToyConfig
        monitor, mode = "val_accuracy", "max"

        def load_inputs(self):
            self.train = points(self.config, self.config.points, seed=1)
            self.validation = points(self.config, 200, seed=2)
            return f"plane in {self.config.features} dimensions"

        def build_model(self, runtime, scratch):
            with runtime.building():
                return new_model(self.config)

        def training_data(self, runtime):
            train = tf.data.Dataset.from_tensor_slices(self.train)
            train = train.shuffle(1000, seed=self.config.seed).repeat()
            return TrainingData(
                train.batch(self.config.batch_size, drop_remainder=True),
                examples=self.config.points,
                whole_batches=True,
                validation=Validate(*self.validation),
            )

        def save(self, model, folder):
            folder.mkdir(parents=True, exist_ok=True)
            model.save_weights(str(folder / "weights.h5"))

        def load_saved(self, folder):
            model = new_model(self.config)
            model.load_weights(str(folder / "weights.h5"))
            return model

        def export(self, model, export_dir):
            module = tf.Module()
            module.weights = model.weights
            spec = tf.TensorSpec([None, self.config.features], tf.float32, name="x")
            module.serve = tf.function(
                lambda x: {"probabilities": tf.nn.softmax(model(x, training=False))},
                input_signature=[spec],
            )
            return save_version(module, {"serving_default": module.serve}, export_dir)

        def summary(self, metrics):
            return f"toy: validation accuracy {metrics['validation']['accuracy']:.3f}"
    '''
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(the folder holding toy_task.py, the environment that registers it)."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "toy_task.py").write_text(TOY_TASK)
    return folder, {"TFHF_TASK_MODULES": "toy_task", "PYTHONPATH": str(folder)}


@pytest.fixture(scope="module")
def toy_run(toy):
    folder, env = toy
    proc = run_module("tfhf.train", "--task=toy", "--features=3", cwd=folder, env=env)
    return folder, proc


def test_helpshort_lists_the_new_tasks_settings_with_its_defaults(toy):
    folder, env = toy
    proc = run_module("tfhf.train", "--task=toy", "--helpshort", cwd=folder, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = proc.stdout
    # The toy's own setting, under the group its declaration names by default ("task").
    assert "\ntask:\n  --features  (integer; default: 4)\n      Coordinates per point." in shown
    assert "  --learning_rate  (float; default: 0.05)\n      Peak AdamW learning rate." in shown
    assert "(one of classify|lm|mlm|summarize|toy|translate; default: toy)" in shown
    assert "--block_size" not in shown  # lm's setting, not the toy's


def test_the_runner_trains_saves_exports_and_records_the_new_task(toy_run):
    folder, proc = toy_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 3/3 done" in proc.stdout and "toy: validation accuracy" in proc.stdout
    workdir = folder / "runs" / "toy"
    metrics = json.loads((workdir / "metrics.json").read_text())
    for key in ("task", "model", "data", "optimizer_steps", "weights_sha256", "wall_seconds"):
        assert key in metrics
    assert (metrics["task"], metrics["model"], metrics["data"]) == (
        "toy",
        "mlp",
        "plane in 3 dimensions",
    )
    assert metrics["optimizer_steps"] == 3 * (320 // 16)
    assert metrics["config"]["features"] == 3 and metrics["config"]["learning_rate"] == 0.05
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["validation"]["accuracy"] >= 0.9
    assert metrics["export"] == "savedmodels/toy/1"  # the default, under the working directory
    assert (folder / metrics["export"] / "saved_model.pb").is_file()
    assert not (workdir / "checkpoints").exists()
    assert "--features=3" in (workdir / "flags.txt").read_text().splitlines()


def test_the_export_answers_as_the_saved_model_does(toy_run, monkeypatch):
    folder, proc = toy_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.syspath_prepend(str(folder))
    try:
        toy_task = importlib.import_module("toy_task")
        metrics = json.loads((folder / "runs" / "toy" / "metrics.json").read_text())
        config = toy_task.ToyConfig(**metrics["config"])
        model = toy_task.ToyTask(config).load_saved(folder / "runs" / "toy" / "model")
        x, _ = toy_task.points(config, 50, seed=3)
        served = tf.saved_model.load(str(folder / metrics["export"])).signatures["serving_default"]
        np.testing.assert_allclose(
            served(x=tf.constant(x))["probabilities"].numpy(),
            tf.nn.softmax(model(x)).numpy(),
            atol=1e-6,
        )
        from tfhf.train import parse_config

        replayed = parse_config(["tfhf.train", f"--flagfile={folder}/runs/toy/flags.txt"])
        assert dataclasses.asdict(replayed) == metrics["config"]
    finally:  # the registration is this test's alone
        registry.TASKS.pop("toy", None)
        sys.modules.pop("toy_task", None)


def test_a_bad_setting_of_the_new_task_stops_before_anything_is_written(toy, tmp_path):
    _, env = toy
    proc = run_module("tfhf.train", "--task=toy", "--features=0", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: --features must be positive, got 0"
    assert not (tmp_path / "runs").exists()
