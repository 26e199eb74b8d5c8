"""The training step's scale options in-process: gradient accumulation, mixed precision,
steps per execution, a stop on a non-finite loss, and the checks on their flags."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfhf.config import TrainConfig
from tfhf.errors import TfhfError
from tfhf.training import runtime as runtimes
from tfhf.training.evaluation import EvaluateTokensEachEpoch
from tfhf.training.fit import compile_for_training, fit

VOCAB = 50
LENGTH = 12


def tiny_gpt2(n_embd: int = 16):
    import transformers

    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=LENGTH,
        n_embd=n_embd,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.TFGPT2LMHeadModel(config)
    model(model.dummy_inputs, training=False)
    return model


def token_batches(n: int, batch: int, seed: int = 0, *, nan_at: int | None = None):
    """`n` batches of (ids, next ids, weights); some weights are 0, as padding has."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, VOCAB, (n, batch, LENGTH + 1)).astype(np.int32)
    weights = (rng.random((n, batch, LENGTH)) > 0.2).astype(np.float32)
    if nan_at is not None:
        weights[nan_at - 1, 0, 0] = np.nan
    return tf.data.Dataset.from_tensor_slices((ids[..., :-1], ids[..., 1:], weights))


def config(**overrides) -> TrainConfig:
    values = dict(batch_size=8, learning_rate=1e-2, warmup_ratio=0.0, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def build(cfg: TrainConfig, total_steps: int, n_embd: int = 16):
    runtime = runtimes.start(cfg)
    tf_keras.utils.set_random_seed(cfg.seed)
    with runtime.building():
        model = tiny_gpt2(n_embd)
        compile_for_training(model, cfg, total_steps=total_steps)
    return model


def train(model, ds, cfg: TrainConfig, tmp_path, *, steps: int, epochs: int = 1):
    val = token_batches(2, cfg.batch_size, seed=9)
    return fit(
        model,
        ds.repeat(),
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=cfg.batch_size,
        validation=EvaluateTokensEachEpoch(val),
        monitor="val_loss",
        mode="min",
        workdir=tmp_path,
        checkpoint_every_steps=cfg.checkpoint_every_steps,
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_accumulation_makes_the_same_updates_as_the_whole_batch(jit_compile, tmp_path):
    weights = {}
    for accum in (1, 4):
        cfg = config(grad_accum_steps=accum, jit_compile=jit_compile)
        model = build(cfg, total_steps=5)
        train(model, token_batches(5, 8), cfg, tmp_path / str(accum), steps=5)
        weights[accum] = model.get_weights()
    moved = max(
        float(np.abs(a - b).max())
        for a, b in zip(weights[1], build(config(), 5).get_weights(), strict=True)
    )
    assert moved > 1e-2  # the weights did train
    for a, b in zip(weights[1], weights[4], strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)


@pytest.mark.parametrize("precision, compute", [("fp16", "float16"), ("bf16", "bfloat16")])
def test_mixed_precision_computes_low_and_learns_in_float32(precision, compute, tmp_path):
    cfg = config(mixed_precision=precision)
    model = build(cfg, total_steps=30)
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert model.transformer.h[0].attn.c_attn.compute_dtype == compute
    assert all(v.dtype == tf.float32 for v in model.trainable_variables)
    is_scaled = isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    assert is_scaled == (precision == "fp16")
    one_batch = token_batches(1, 8)
    trained = train(model, one_batch, cfg, tmp_path, steps=10, epochs=3)
    assert np.all(np.isfinite(trained.losses))
    assert trained.losses[-1] < trained.losses[0] * 0.8


def test_steps_per_execution_counts_every_step(tmp_path, capsys):
    cfg = config(steps_per_execution=4)
    model = build(cfg, total_steps=12)
    trained = train(model, token_batches(12, 8), cfg, tmp_path, steps=12)
    assert trained.optimizer_steps == 12
    assert trained.steps == 8  # the first call (4 steps, with tracing) is not timed
    lines = [line for line in capsys.readouterr().out.splitlines() if " step " in line]
    assert lines and lines[-1].startswith("epoch 1/1 step 12/12")


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_keeps_a_good_checkpoint(tmp_path):
    cfg = config(checkpoint_every_steps=3)
    model = build(cfg, total_steps=10)
    with pytest.raises(TfhfError, match=r"training stopped at step 8: the loss became nan") as e:
        train(model, token_batches(10, 8, nan_at=8), cfg, tmp_path, steps=10)
    assert "the last good checkpoint (step 6) is kept" in str(e.value)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "chief"))
    reader = tf.train.load_checkpoint(latest)
    saved = [
        reader.get_tensor(name)
        for name, _ in tf.train.list_variables(latest)
        if name.startswith("model/") and "VARIABLE_VALUE" in name
    ]
    assert saved and all(np.all(np.isfinite(v)) for v in saved)
    assert reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE") == 5

    # The same workdir with a different model: the kept checkpoint cannot be resumed.
    other = build(cfg, total_steps=10, n_embd=32)
    with pytest.raises(TfhfError, match="does not fit this model"):
        train(other, token_batches(10, 8), cfg, tmp_path, steps=10)


def test_clip_norm_bounds_the_global_gradient_norm():
    model = build(config(clip_norm=0.5), total_steps=1)
    grads = [tf.fill(v.shape, 3.0) for v in model.trainable_variables]
    clipped = model.optimizer._clip_gradients(grads)
    assert float(tf.linalg.global_norm(clipped)) == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(grad_accum_steps=0), "--grad_accum_steps must be positive"),
        (dict(batch_size=8, grad_accum_steps=3), "must be a multiple of --grad_accum_steps"),
        (dict(steps_per_execution=0), "--steps_per_execution must be positive"),
        (dict(clip_norm=-1.0), "--clip_norm must be 0"),
        (dict(mixed_precision="fp8"), "--mixed_precision must be one of none, fp16, bf16"),
        (dict(strategy="gpus"), "--strategy must be one of auto"),
        (dict(checkpoint_every_steps=-5), "--checkpoint_every_steps must be 0"),
    ],
)
def test_bad_scale_flags_are_refused_in_one_line(overrides, message):
    problems = "; ".join(config(**overrides).problems())
    assert message in problems


def test_strategies_that_need_hardware_or_a_cluster_say_what_is_missing(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TfhfError, match="needs TF_CONFIG"):
        runtimes.start(config(strategy="multi_worker"))
    with pytest.raises(TfhfError, match="--strategy=tpu: no TPU found"):
        runtimes.start(config(strategy="tpu"))
