"""tfhf: fine-tune HuggingFace language models with TensorFlow/Keras and export them for TF Serving.

transformers' TensorFlow classes are written against Keras 2, so the legacy Keras
(`tf-keras`) must be selected before TensorFlow is first imported.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) buries the progress output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tfhf.errors import TfhfError  # noqa: E402

__all__ = ["TfhfError"]
__version__ = "0.1.0"
