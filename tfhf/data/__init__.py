"""Data sources (packaged assets, tfds, user files) and tf.data pipelines."""
