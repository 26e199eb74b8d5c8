"""AdamW with linear warmup then linear decay, the schedule BERT fine-tuning uses."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="tfhf")
class LinearWarmupDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak` in `warmup_steps`, then falls to 0 at `total_steps`.

    Example:
      >>> schedule = LinearWarmupDecay(peak=1e-4, warmup_steps=10, total_steps=100)
      >>> round(float(schedule(5)), 8), round(float(schedule(55)), 8)
      (5e-05, 5e-05)
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(max(self.warmup_steps, 1), tf.float32)
        total = tf.cast(self.total_steps, tf.float32)
        rising = step / warmup
        falling = (total - step) / tf.maximum(total - warmup, 1.0)
        scale = tf.where(step < warmup, rising, falling)
        if self.warmup_steps == 0:
            scale = (total - step) / total
        return self.peak * tf.clip_by_value(scale, 0.0, 1.0)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def adamw(
    *,
    learning_rate: float,
    total_steps: int,
    warmup_ratio: float,
    weight_decay: float,
    clip_norm: float = 0.0,
) -> tf_keras.optimizers.Optimizer:
    """AdamW on the warmup/decay schedule; LayerNorm and bias weights are not decayed.

    Args:
      learning_rate: Peak learning rate, reached at the end of warmup.
      total_steps: Optimizer steps in the whole run; the rate reaches 0 there.
      warmup_ratio: Fraction of `total_steps` spent warming up.
      weight_decay: Decoupled weight decay coefficient.
      clip_norm: When positive, gradients are scaled down so that their global norm (over
        all variables, after the replicas' gradients are summed) is at most this.

    Example:
      >>> opt = adamw(learning_rate=5e-5, total_steps=1000, warmup_ratio=0.1, weight_decay=0.01)
    """
    schedule = LinearWarmupDecay(learning_rate, int(round(total_steps * warmup_ratio)), total_steps)
    optimizer = tf_keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        epsilon=1e-6,
        global_clipnorm=clip_norm or None,
    )
    optimizer.exclude_from_weight_decay(var_names=["LayerNorm", "layer_norm", "bias"])
    return optimizer
