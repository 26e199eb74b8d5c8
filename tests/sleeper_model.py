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


CHATTER_CHUNK = 200_000  # characters of new text per row and chunk
CHATTER_CHUNKS = 50


class Chatter(tf.Module):
    """A streaming export in the shape tfhf.serve expects of lm exports: `stream_start`
    and `stream_continue` write CHATTER_CHUNK more characters per row each call, for
    CHATTER_CHUNKS calls, so a client that stops reading soon fills the connection."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def generate(self, prompt):
        return {"text": self._text(prompt, CHATTER_CHUNKS)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="prompt")])
    def stream_start(self, prompt):
        return self._chunk(prompt, tf.constant(1))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.bool, name="finished"),
            tf.TensorSpec([], tf.int32, name="step"),
        ]
    )
    def stream_continue(self, finished, step):
        return self._chunk(finished, step + 1)

    def _text(self, rows, steps):
        everything = tf.fill([tf.size(rows)], "x" * (CHATTER_CHUNKS * CHATTER_CHUNK))
        return tf.strings.substr(everything, 0, steps * CHATTER_CHUNK)

    def _chunk(self, rows, step):
        finished = tf.fill([tf.size(rows)], step >= CHATTER_CHUNKS)
        return {"text": self._text(rows, step), "finished": finished, "step": step}


def export_chatter(base_path: Path, version: int = 1) -> Path:
    """Saves a `Chatter` as `base_path/version` and returns that folder."""
    module = Chatter()
    folder = base_path / str(version)
    signatures = {
        "serving_default": module.generate,
        "stream_start": module.stream_start,
        "stream_continue": module.stream_continue,
    }
    tf.saved_model.save(module, str(folder), signatures=signatures)
    return folder
