"""The warmup/decay learning-rate schedule and AdamW's weight-decay exclusions."""

import tfhf  # noqa: F401, I001  (selects the legacy Keras before TensorFlow loads)

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfhf.training.optimizer import LinearWarmupDecay, adamw

_PEAK = 1e-3


def _rates(schedule, last_step):
    return np.array([float(schedule(step)) for step in range(last_step + 1)])


@pytest.mark.parametrize("warmup_steps, total_steps", [(10, 100), (1, 7), (30, 40)])
def test_schedule_rises_to_peak_then_falls_to_zero(warmup_steps, total_steps):
    rates = _rates(LinearWarmupDecay(_PEAK, warmup_steps, total_steps), total_steps + 5)

    assert rates[0] == 0.0
    assert rates[warmup_steps] == pytest.approx(_PEAK)
    assert rates.max() == pytest.approx(_PEAK)
    assert int(np.argmax(rates)) == warmup_steps
    rising, falling = np.diff(rates[: warmup_steps + 1]), np.diff(rates[warmup_steps:])
    assert (rising > 0).all()
    assert (falling <= 0).all() and (falling[: total_steps - warmup_steps] < 0).all()
    assert rates[total_steps] == pytest.approx(0.0, abs=1e-12)
    # Past the end it stays at 0 rather than going negative.
    assert (rates[total_steps:] == 0.0).all()


def test_schedule_is_linear_in_both_phases():
    schedule = LinearWarmupDecay(_PEAK, 10, 110)

    assert float(schedule(5)) == pytest.approx(_PEAK / 2)
    assert float(schedule(60)) == pytest.approx(_PEAK / 2)


def test_schedule_without_warmup_starts_at_peak():
    rates = _rates(LinearWarmupDecay(_PEAK, 0, 50), 50)

    assert rates[0] == pytest.approx(_PEAK)
    assert (np.diff(rates) < 0).all()
    assert rates[50] == pytest.approx(0.0, abs=1e-12)


def test_schedule_accepts_tensor_steps():
    schedule = LinearWarmupDecay(_PEAK, 4, 20)

    assert float(schedule(tf.constant(2, tf.int64))) == pytest.approx(float(schedule(2)))


def test_schedule_round_trips_through_keras_serialization():
    schedule = LinearWarmupDecay(_PEAK, 10, 100)

    restored = tf_keras.optimizers.schedules.deserialize(
        tf_keras.optimizers.schedules.serialize(schedule)
    )

    assert isinstance(restored, LinearWarmupDecay)
    np.testing.assert_allclose(_rates(restored, 110), _rates(schedule, 110))


def test_adamw_warms_up_over_the_given_ratio():
    optimizer = adamw(learning_rate=_PEAK, total_steps=100, warmup_ratio=0.2, weight_decay=0.01)
    variable = tf.Variable([1.0, -2.0])

    rates = []
    for _ in range(3):
        optimizer.apply_gradients([(tf.constant([0.5, 0.5]), variable)])
        rates.append(float(optimizer.learning_rate))

    # apply_gradients reads the rate at steps 0, 1, 2 of a 20-step warmup.
    np.testing.assert_allclose(rates, [0.0, _PEAK / 20, 2 * _PEAK / 20], rtol=1e-5)


def test_adamw_decays_kernels_but_not_biases_or_layer_norms():
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input(shape=(3,))
    hidden = tf_keras.layers.Dense(4, name="dense")(inputs)
    # HF BERT names its layer norms "LayerNorm"; Keras' default is "layer_normalization".
    hidden = tf_keras.layers.LayerNormalization(name="LayerNorm")(hidden)
    outputs = tf_keras.layers.LayerNormalization()(hidden)
    model = tf_keras.Model(inputs, outputs)
    # Biases and betas start at 0, where decay would be invisible.
    for variable in model.trainable_variables:
        variable.assign(tf.random.uniform(variable.shape, 0.5, 1.5))
    before = {v.name: v.numpy() for v in model.trainable_variables}
    learning_rate, weight_decay = 0.1, 0.5

    optimizer = adamw(
        learning_rate=learning_rate, total_steps=10, warmup_ratio=0.0, weight_decay=weight_decay
    )
    # Zero gradients make Adam's own step zero, so only weight decay can move a variable.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])

    after = {v.name: v.numpy() for v in model.trainable_variables}
    decayed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert decayed == {name for name in before if "kernel" in name}
    for name in decayed:
        np.testing.assert_allclose(
            after[name], before[name] * (1 - learning_rate * weight_decay), rtol=1e-6
        )
    assert len(before) == 6
