"""tfhf: fine-tune HuggingFace language models with TensorFlow/Keras and export them for TF Serving.

transformers' TensorFlow classes are written against Keras 2, so the legacy Keras
(`tf-keras`) must be selected before TensorFlow is first imported.

TensorFlow's C++ start-up lines (oneDNN and CUDA notices, "All log messages before
absl::InitializeLog()", oneDNN's int64 fallback) would bury tfhf's own output. Unless
`TF_CPP_MIN_LOG_LEVEL` is set, tfhf sets it to 3 and drops the log lines TensorFlow's
libraries print while they load; `TF_CPP_MIN_LOG_LEVEL=0` brings all of them back.

The Python API (see `tfhf.api`): `tfhf.run(task, **settings)` trains, evaluates and exports
a task and returns its metrics and model; `tfhf.load(path)` loads a workdir or an export to
use on Python strings; `tfhf.make_config(task, **settings)` builds a run's config.
"""

import os
import re
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# A line of TensorFlow's C++ logging ("I0000 00:00:1795946095.102276    2646 port.cc:153] ..."),
# or absl's note that such lines precede its initialisation.
_CPP_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] |WARNING: All log messages before "
    r"absl::InitializeLog\(\) is called)"
)


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its load-time C++ log lines dropped from stderr.

    Those lines are written before TensorFlow reads `TF_CPP_MIN_LOG_LEVEL`, so the only
    way to hold them back is to catch the process's stderr while the libraries load.
    Anything else written meanwhile is passed on.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _CPP_LOG_LINE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


if "TF_CPP_MIN_LOG_LEVEL" not in os.environ and "tensorflow" not in sys.modules:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    _import_tensorflow_quietly()

from tfhf.errors import TfhfError  # noqa: E402

# The Python API (tfhf.api), loaded on first use: `import tfhf` stays light.
_API = (
    "run",
    "load",
    "make_config",
    "RunResult",
    "Classifier",
    "LanguageModel",
    "MaskedLanguageModel",
    "Summarizer",
    "Translator",
    "Prediction",
)
__all__ = ["TfhfError", *_API]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        from tfhf import api

        return getattr(api, name)
    raise AttributeError(f"module 'tfhf' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
