"""Distribution on this CPU: MirroredStrategy over two logical CPUs against the default
strategy, and a two-process MultiWorkerMirroredStrategy job on 127.0.0.1.

Each runs in fresh processes: logical devices and cluster membership must be set before
TensorFlow starts, which it already has in the test process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from conftest import REPO, free_ports

from tfhf.train import run  # noqa: F401  (the workers run the same entry point)

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tfhf
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np, tf_keras, transformers
    from tfhf.config import TrainConfig
    from tfhf.training import runtime
    from tfhf.training.fit import compile_for_training

    class Losses(tf_keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seen = []
        def on_train_batch_end(self, batch, logs=None):
            self.seen.append(float(logs["loss"]))

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (8, 13)).astype(np.int32)
    weights = (rng.random((8, 12)) > 0.2).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((ids[:, :-1], ids[:, 1:], weights)).repeat(6)
    out = {}
    for name in ("default", "mirrored"):
        config = TrainConfig(strategy=name, batch_size=8, learning_rate=1e-2,
                             warmup_ratio=0.0, seed=3)
        run = runtime.start(config)
        tf_keras.utils.set_random_seed(3)
        with run.building():
            model = transformers.TFGPT2LMHeadModel(transformers.GPT2Config(
                vocab_size=50, n_positions=12, n_embd=16, n_layer=1, n_head=2,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
            model(model.dummy_inputs, training=False)
            compile_for_training(model, config, total_steps=6)
        losses = Losses()
        model.fit(ds, epochs=1, callbacks=[losses], verbose=0)
        out[name] = {"replicas": run.strategy.num_replicas_in_sync, "losses": losses.seen,
                     "weights": [w.tolist() for w in model.get_weights()[:3]]}
    print("RESULT " + json.dumps(out))
    """
)


def test_mirrored_over_two_cpus_follows_the_default_strategy():
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert result["default"]["replicas"] == 1
    assert result["mirrored"]["replicas"] == 2
    assert "MirroredStrategy, 2 replica(s); global batch 8 = 4 per replica" in done.stdout
    default, mirrored = (np.array(result[k]["losses"]) for k in ("default", "mirrored"))
    assert len(default) == len(mirrored) == 6
    assert default[-1] < default[0] - 0.1  # the trajectory compared is a moving one
    np.testing.assert_allclose(mirrored, default, rtol=1e-4)
    for a, b in zip(result["default"]["weights"], result["mirrored"]["weights"], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), atol=1e-5)


WORKER = textwrap.dedent(
    """
    import json, sys
    from tfhf.tasks.lm import LmConfig
    from tfhf.train import run
    metrics = run(LmConfig(**json.loads(sys.argv[1])))
    print("RESULT " + json.dumps(
        {k: metrics[k] for k in ("weights_sha256", "optimizer_steps", "validation")}))
    """
)


def test_two_workers_finish_with_identical_weights_and_only_the_chief_writes(tmp_path):
    corpus = tmp_path / "verse.txt"
    corpus.write_text(
        "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n" * 60
    )
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    overrides = dict(
        strategy="multi_worker",
        train_file=str(corpus),
        vocab_size=300,
        block_size=16,
        n_layer=1,
        n_head=2,
        n_embd=16,
        batch_size=8,
        epochs=1,
        max_steps_per_epoch=6,
        checkpoint_every_steps=3,
        learning_rate=3e-3,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
        token_cache=str(tmp_path / "tokens"),
    )
    procs = []
    try:
        for index in range(2):
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, json.dumps(overrides)],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 400
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            assert proc.returncode == 0, err[-3000:]
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    results = [
        json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
        for out in outputs
    ]
    assert (
        "MultiWorkerMirroredStrategy, 2 replica(s); global batch 8 = 4 per replica" in (outputs[0])
    )
    assert results[0]["optimizer_steps"] == results[1]["optimizer_steps"] == 6
    assert results[0]["weights_sha256"] == results[1]["weights_sha256"]
    # Only the chief's outputs exist: one workdir, one export version, no worker leftovers.
    run_dir = tmp_path / "run"
    assert (run_dir / "metrics.json").exists() and (run_dir / "model").is_dir()
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["1"]
    assert not (run_dir / "checkpoints").exists()
    assert not list(tmp_path.rglob("workertemp*"))
    assert "not the chief: outputs go to a temporary folder" in outputs[1]
    # The chief alone trains the tokenizer and tokenizes the corpus; the other reads its cache.
    assert "trained on" in outputs[0] and "tfhf: kept in " in outputs[0]
    assert "trained on" not in outputs[1] and "tfhf: kept in " not in outputs[1]
    assert "tokenizer from the cache" in outputs[1] or "waiting for the chief" in outputs[1]
