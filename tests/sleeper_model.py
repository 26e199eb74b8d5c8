"""A SavedModel whose signature keeps a core busy for as long as a request asks: the
stand-in for a slow model in tests of requests in flight (shutdown, clients that leave)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf


class Sleeper(tf.Module):
    """`serving_default`: `seconds` (float32 [batch]) -> `seconds` doubled, after spinning
    for the largest of them (wall-clock time, read with `tf.timestamp`)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="seconds")])
    def spin(self, seconds):
        end = tf.timestamp() + tf.cast(tf.reduce_max(seconds), tf.float64)
        spun = tf.while_loop(lambda i: tf.timestamp() < end, lambda i: [i + 1], [0])
        with tf.control_dependencies(spun):
            return {"doubled": 2.0 * seconds}


def export_sleeper(base_path: Path, version: int = 1) -> Path:
    """Saves a `Sleeper` as `base_path/version` and returns that folder."""
    module = Sleeper()
    folder = base_path / str(version)
    tf.saved_model.save(module, str(folder), signatures=module.spin)
    return folder
