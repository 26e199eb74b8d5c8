"""Loading a trained classifier for prediction, from a workdir or from a SavedModel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import tensorflow as tf

from tfhf.errors import TfhfError
from tfhf.models.model_folder import is_classifier_folder, load_classifier_folder

Predictor = Callable[[Sequence[str]], list[tuple[str, float]]]


def _predictor(classify_text) -> Predictor:
    """Wraps a `text -> {label, probabilities, ...}` function, the serving signature's contract."""

    def predict(texts):
        out = classify_text(text=tf.constant(list(texts), tf.string))
        labels = [v.decode("utf-8") for v in out["label"].numpy()]
        return list(zip(labels, out["probabilities"].numpy().max(-1).tolist(), strict=True))

    return predict


def _saved_model_predictor(version_dir: Path) -> Predictor:
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise TfhfError(f"{version_dir}: SavedModel has no serving_default signature")
    return _predictor(signature)


def _workdir_predictor(model_folder: Path) -> Predictor:
    from tfhf.serving.export import ClassifierServingModule

    # The very module the export saves, so a workdir and its export answer alike. The lambda
    # keeps the module alive: its tf.function method refers to it only weakly.
    module = ClassifierServingModule(*load_classifier_folder(model_folder))
    return _predictor(lambda text: module.classify_text(text))


def saved_model_version(path: Path) -> Path | None:
    """`path` if it is a SavedModel version folder, its highest version if it is an export
    root, else None."""
    if (path / "saved_model.pb").exists():
        return path
    if not path.is_dir():
        return None
    versions = sorted(
        int(p.name) for p in path.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists()
    )
    return path / str(versions[-1]) if versions else None


def load_predictor(model_dir: str | Path) -> Predictor:
    """A function from texts to `(label, probability)` pairs for the model in `model_dir`."""
    path = Path(model_dir)
    if not path.is_dir():
        raise TfhfError(f"--model_dir {model_dir}: no such folder")
    for folder in (path / "model", path):
        if is_classifier_folder(folder):
            return _workdir_predictor(folder)
    version = saved_model_version(path)
    if version is not None:
        return _saved_model_predictor(version)
    raise TfhfError(
        f"--model_dir {model_dir}: neither a training workdir (model/ inside), a SavedModel "
        "version folder (saved_model.pb inside), nor an export root (version folders inside)"
    )
