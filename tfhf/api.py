"""tfhf from Python: train a task and get its model back; load a trained model and use it.

The command-line programs are thin layers over these functions: `python -m tfhf.train`
calls `run`, `tfhf.predict` calls `load(...).predict` and `tfhf.generate` calls
`load(...).generate`, so a notebook and the command line behave alike.

Example:
  >>> from tfhf.api import make_config
  >>> config = make_config("classify", epochs=2, learning_rate=3e-4)
  >>> config.epochs, config.batch_size, config.model
  (2, 32, 'minilm-l6')
  >>> make_config("classify", epoch=2)
  Traceback (most recent call last):
  ...
  tfhf.errors.TfhfError: classify has no setting 'epoch' (did you mean 'epochs'?)
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from tfhf.config import DEFAULT_SEED, TrainConfig
from tfhf.errors import TfhfError
from tfhf.runner import RunResult
from tfhf.serving.lm_export import DEFAULT_MAX_NEW_TOKENS


def make_config(task: str = "classify", /, **settings) -> TrainConfig:
    """The config of `task` with its defaults and `settings` (the flag names of
    `python -m tfhf.train`, as keywords).

    Raises:
      TfhfError: for a task or setting that does not exist, or a value of the wrong type.
    """
    from tfhf.tasks import get_task

    config_class = get_task(task).config_class
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for name, value in settings.items():
        if name not in fields:
            guess = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{guess[0]}'?)" if guess else ""
            raise TfhfError(f"{task} has no setting '{name}'{hint}")
        default = fields[name].default
        expected = (int, float) if type(default) is float else type(default)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise TfhfError(f"setting '{name}' takes a {type(default).__name__}, got {value!r}")
    if settings.get("task", task) != task:
        raise TfhfError(f"setting 'task' is '{settings['task']}' in a config of {task}")
    return config_class(**{**settings, "task": task})


def run(
    task: str | TrainConfig = "classify",
    /,
    *,
    callbacks: Sequence = (),
    **settings,
) -> RunResult:
    """Trains, evaluates, saves and exports one task, as `python -m tfhf.train` does.

    Args:
      task: A task name (its defaults, with `settings` on top) or a config from
        `make_config` (with `settings` replacing some of its values).
      callbacks: Keras callbacks added to the training `fit`; their `on_epoch_end` logs
        hold the epoch's `val_*` figures.
      **settings: Settings by their flag names (`epochs=2`, `train_file="data.csv"`).

    Returns:
      A `RunResult`: `metrics` (as in metrics.json), the trained `model`, the `workdir`
      and the `export` version folder (None with `export=False`).

    Raises:
      TfhfError: for bad settings or inputs (before anything is written), and for a
        training loss that stops being finite.
    """
    from tfhf import runner
    from tfhf.tasks import get_task

    if isinstance(task, TrainConfig):
        values = {k: v for k, v in dataclasses.asdict(task).items() if k != "task"}
        config = make_config(task.task, **{**values, **settings})
    else:
        config = make_config(task, **settings)
    return runner.run(get_task(config.task)(config), callbacks=callbacks)


def read_inputs(texts: Sequence[str], input_file: str, text_column: str, what: str) -> list[str]:
    """`iter_inputs` as a list: at least one text, or a `TfhfError` saying what to give."""
    found = list(iter_inputs(texts, input_file, text_column))
    if not found:
        raise TfhfError(f"nothing to {what}: give --text (repeatable) or --input_file")
    return found


def iter_inputs(texts: Sequence[str], input_file: str, text_column: str) -> Iterator[str]:
    """The texts given one by one, then those of the files `input_file` names (.txt: one per
    line; .csv, .tsv, .jsonl, TFRecord: `text_column`), read as they are needed: memory
    does not grow with the files' size."""
    from tfhf.data import records

    yield from texts
    if input_file:
        found = records.iter_texts(input_file, text_column=text_column, keep_blank=True)
        yield from (t.text for t in found)


class Prediction(NamedTuple):
    """A classifier's answer for one text: the likeliest label and its probability."""

    label: str
    probability: float


class Model:
    """A trained model loaded by `load`: a workdir (or a HuggingFace folder) or an export.

    Attributes:
      path: What was loaded: the model folder or the SavedModel version folder.
      task: What it does: classify, lm, mlm, summarize or translate.
    """

    task = ""

    def __init__(self, path: Path):
        self.path = path

    def predict(self, texts: Sequence[str]) -> list:
        """What `python -m tfhf.predict` prints for each text, with the run's settings."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<tfhf {self.task} model from {self.path}>"


def _in_batches(call, texts: list[str], batch_size: int) -> list:
    """`call` on `batch_size` texts at a time, its results joined."""
    out: list = []
    for start in range(0, len(texts), batch_size):
        out += call(texts[start : start + batch_size])
    return out


def _texts(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        raise TfhfError("give a list of texts, not a single string")
    texts = list(texts)
    if not texts:
        raise TfhfError("no texts given")
    for text in texts:
        if not isinstance(text, str):
            raise TfhfError(f"texts must be strings, got {type(text).__name__}")
    return texts


class Classifier(Model):
    """A classify model: `predict` gives each text's label and its probability."""

    task = "classify"

    def __init__(self, path: Path, batch_size: int):
        from tfhf.serving.predictor import load_predictor

        super().__init__(path)
        self._predict = load_predictor(path)
        self.batch_size = batch_size

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """The likeliest label of each text, with its probability."""
        predicted = _in_batches(self._predict, _texts(texts), self.batch_size)
        return [Prediction(*p) for p in predicted]


class MaskedLanguageModel(Model):
    """An mlm model: `fill_mask` gives the likeliest fillers of each [MASK]."""

    task = "mlm"

    def __init__(self, path: Path, batch_size: int):
        from tfhf.serving.fill_mask import FillMask

        super().__init__(path)
        self._fill = FillMask(path)
        self.batch_size = batch_size

    def fill_mask(
        self, texts: Sequence[str], *, num_fillers: int = 5
    ) -> list[list[list[tuple[str, float]]]]:
        """For each text, for each of its [MASK]s in order, the `num_fillers` likeliest
        (token, probability)."""
        return _in_batches(
            lambda batch: self._fill(batch, top_k=num_fillers), _texts(texts), self.batch_size
        )

    def predict(self, texts: Sequence[str]) -> list[list[list[tuple[str, float]]]]:
        return self.fill_mask(texts)


# The decoding controls of a summarize or translate model's `generate`, by name.
_CONTROLS = (
    "max_new_tokens",
    "temperature",
    "top_k",
    "top_p",
    "seed",
    "num_beams",
    "length_penalty",
    "min_new_tokens",
    "no_repeat_ngram_size",
)


class LanguageModel(Model):
    """An lm model (a tfhf lm workdir, a HuggingFace GPT-2 folder or an lm export):
    `generate` continues prompts.

    Its decoding defaults are the export's: greedy (`temperature` 0), 64 new tokens at most
    (half the context, if less), `seed` 42 when sampling.
    """

    task = "lm"

    def __init__(self, path: Path, *, jit_compile: bool, export=None):
        super().__init__(path)
        self._export = export
        if export is None:
            from tfhf.generation.generator import Generator
            from tfhf.models.loading import load_causal_lm
            from tfhf.tokenizers.bpe import load_bpe

            model = load_causal_lm(path)
            self._generator = Generator(model, load_bpe(path), jit_compile=jit_compile)

    def generate(
        self,
        texts: Sequence[str],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = DEFAULT_SEED,
        num_beams: int = 1,
        num_return_sequences: int = 1,
    ) -> list[str] | list[list[str]]:
        """The continuation of each prompt (the prompt not repeated).

        `temperature` 0 decodes greedily (or by beam search, with `num_beams` > 1); above 0
        it samples, filtered by `top_k` (0: off) and `top_p` (1.0: off), with noise drawn
        from `seed`. `max_new_tokens` defaults to 64, or half the context if less. With
        `num_return_sequences` > 1 (sampling or beam search) each prompt gets a list of
        that many continuations.
        """
        from tfhf.generation.generator import GenerationSettings

        texts = _texts(texts)
        if temperature < 0:
            raise TfhfError(f"--temperature must be 0 (greedy) or positive, got {temperature}")
        if temperature > 0 and num_beams > 1:
            raise TfhfError("sampling (--temperature > 0) needs --num_beams=1")
        controls = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        if self._export is not None:
            if num_beams != 1 or num_return_sequences != 1:
                raise TfhfError(
                    "an lm export decodes greedily or samples, one continuation per prompt: "
                    "--num_beams and --num_return_sequences need a workdir"
                )
            if max_new_tokens is not None:
                controls["max_new_tokens"] = max_new_tokens
            return self._export(texts, controls)
        if max_new_tokens is None:  # as the export's default
            max_new_tokens = min(DEFAULT_MAX_NEW_TOKENS, self._generator.context // 2)
        settings = GenerationSettings(
            max_new_tokens=max_new_tokens,
            decoding="sample" if temperature > 0 else "beam" if num_beams > 1 else "greedy",
            num_beams=num_beams,
            num_return_sequences=num_return_sequences,
            **{**controls, "temperature": temperature or 1.0},
        )
        out = self._generator(texts, settings)
        return [c[0] for c in out] if num_return_sequences == 1 else out

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.generate(texts)


class TextToTextModel(Model):
    """A summarize or translate model (workdir or export): `generate` writes each text's
    summary or translation, by default decoded as the run's test split was."""

    def __init__(self, path: Path, *, task: str, jit_compile: bool, batch_size: int, export=None):
        super().__init__(path)
        self.task = task
        self._export = export
        if export is None:
            from tfhf.generation.seq2seq import TextToText
            from tfhf.models.model_folder import load_text_to_text_folder

            model, source, target, saved = load_text_to_text_folder(path)
            self.defaults = {**saved["decoding"], "max_new_tokens": saved["max_target_length"]}
            self._decoder = TextToText(
                model, source, target, batch_size=batch_size, jit_compile=jit_compile
            )

    def generate(self, texts: Sequence[str], **controls) -> list[str]:
        """The summary or translation of each text. Keyword controls (`num_beams`,
        `temperature`, `top_k`, `top_p`, `seed`, `max_new_tokens`, `length_penalty`, and on
        a workdir `min_new_tokens` and `no_repeat_ngram_size`) replace the run's."""
        from tfhf.generation.seq2seq import DecodingSettings

        texts = _texts(texts)
        unknown = sorted(set(controls) - set(_CONTROLS))
        if unknown:
            raise TfhfError(f"unknown decoding setting '{unknown[0]}' ({', '.join(_CONTROLS)})")
        controls = {k: v for k, v in controls.items() if v is not None}
        # Sampling and beam search do not combine: asking for one leaves the other out,
        # whatever the run's decoding was.
        if controls.get("temperature", 0) > 0:
            controls.setdefault("num_beams", 1)
        if controls.get("num_beams", 1) > 1:
            controls.setdefault("temperature", 0.0)
        if self._export is not None:
            fixed = {"min_new_tokens", "no_repeat_ngram_size"} & set(controls)
            if fixed:
                raise TfhfError(
                    f"--{sorted(fixed)[0]} is fixed in an export (the run's); load the workdir "
                    "to change it"
                )
            return self._export(texts, controls)
        settings = DecodingSettings(**{**self.defaults, **controls})
        settings.check()
        return self._decoder(texts, settings)

    def predict(self, texts: Sequence[str]) -> list[str]:
        return self.generate(texts)


class Summarizer(TextToTextModel):
    """A summarize model: `summarize` (or `generate`) writes each text's summary."""

    def summarize(self, texts: Sequence[str], **controls) -> list[str]:
        return self.generate(texts, **controls)


class Translator(TextToTextModel):
    """A translate model: `translate` (or `generate`) writes each text's translation."""

    def translate(self, texts: Sequence[str], **controls) -> list[str]:
        return self.generate(texts, **controls)


_TEXT_TO_TEXT = {"summarize": Summarizer, "translate": Translator}
# The output of a text-to-text export's signature, by task.
_OUTPUT_TASK = {"summary": "summarize", "translation": "translate"}


def _export_call(loaded, output: str, text_input: str, *, jit_compile: bool, batch_size: int):
    """Calls the export's module function (which fills in the controls' defaults; its XLA
    twin with `jit_compile`, as tfhf.serve answers) with the controls given, each as a
    one-value tensor, `batch_size` texts at a time."""
    import tensorflow as tf

    name = "generate_xla" if jit_compile and hasattr(loaded, "generate_xla") else "generate"
    specs = {spec.name: spec for spec in getattr(loaded, name).input_signature}

    def call(texts: list[str], controls: dict) -> list[str]:
        unknown = sorted(set(controls) - set(specs))
        if unknown:
            raise TfhfError(f"this export takes no '{unknown[0]}' control")
        tensors = {k: tf.constant([v], specs[k].dtype) for k, v in controls.items()}
        # Looked up on `loaded` at each call: the closure keeps the SavedModel (and so the
        # variables its functions refer to) alive.
        function = getattr(loaded, name)

        def one_call(batch: list[str]) -> list[str]:
            try:
                out = function(**{text_input: tf.constant(batch)}, **tensors)[output]
            except tf.errors.InvalidArgumentError as e:
                raise TfhfError(
                    f"the export refused the request: {e.message.splitlines()[0]}"
                ) from None
            return [t.decode("utf-8") for t in out.numpy()]

        return _in_batches(one_call, texts, batch_size)

    return call


def _load_export(version: Path, *, jit_compile: bool, batch_size: int) -> Model:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graph uses)

    from tfhf.serving.export import read_signature_defs

    signature = read_signature_defs(version).get("serving_default")
    if signature is None:
        raise TfhfError(f"{version}: the SavedModel has no serving_default signature")
    inputs, outputs = set(signature.inputs), set(signature.outputs)
    if "label" in outputs:
        return Classifier(version, batch_size)
    if "prompt" in inputs and "text" in outputs:
        loaded = tf.saved_model.load(str(version))
        call = _export_call(
            loaded, "text", "prompt", jit_compile=jit_compile, batch_size=batch_size
        )
        return LanguageModel(version, jit_compile=jit_compile, export=call)
    for output, task in _OUTPUT_TASK.items():
        if output in outputs:
            loaded = tf.saved_model.load(str(version))
            call = _export_call(
                loaded, output, "text", jit_compile=jit_compile, batch_size=batch_size
            )
            return _TEXT_TO_TEXT[task](
                version, task=task, jit_compile=jit_compile, batch_size=batch_size, export=call
            )
    raise TfhfError(f"{version}: not a tfhf export (serving_default outputs {sorted(outputs)})")


def load(path: str | Path, *, jit_compile: bool = True, batch_size: int = 64) -> Model:
    """A trained model, ready to use on Python strings.

    Args:
      path: A training workdir (its `model/`), a HuggingFace-format folder, an exported
        SavedModel version folder, or an export root (its highest version); for an lm,
        also a hub id.
      jit_compile: Decode with XLA: a workdir of an lm, summarize or translate run in
        XLA, an export through its `serving_default_xla` twin (as tfhf.serve answers).
      batch_size: Texts per model call.

    Returns:
      A `Classifier` (`predict`), `LanguageModel` (`generate`), `MaskedLanguageModel`
      (`fill_mask`), `Summarizer` (`summarize`) or `Translator` (`translate`); each also
      has `predict`, what `python -m tfhf.predict` prints.

    Raises:
      TfhfError: when `path` holds no model tfhf can use.
    """
    from tfhf.models.loading import not_a_folder, resolve_model
    from tfhf.models.model_folder import (
        TEXT_TO_TEXT_FILE,
        is_classifier_folder,
        is_text_to_text_folder,
    )
    from tfhf.serving.predictor import saved_model_version

    if batch_size < 1:
        raise TfhfError(f"--batch_size must be positive, got {batch_size}")
    spec = str(path)
    given = Path(spec).expanduser()
    version = saved_model_version(given)
    if version is not None:
        return _load_export(version, jit_compile=jit_compile, batch_size=batch_size)
    if given.is_dir() and not (given / "config.json").exists() and not (given / "model").is_dir():
        raise TfhfError(
            f"--model {spec}: neither a training workdir (model/ inside), a model folder "
            "(config.json inside), a SavedModel version folder (saved_model.pb inside), nor "
            "an export root (version folders inside)"
        )
    if not given.exists() and ("/" in spec or spec.startswith((".", "~"))):
        raise not_a_folder(spec)
    folder = resolve_model(spec)
    if is_text_to_text_folder(folder):
        task = json.loads((folder / TEXT_TO_TEXT_FILE).read_text()).get("task", "summarize")
        return _TEXT_TO_TEXT[task](
            folder, task=task, jit_compile=jit_compile, batch_size=batch_size
        )
    if is_classifier_folder(folder):
        return Classifier(folder, batch_size)
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForMaskedLM") for a in architectures):
        return MaskedLanguageModel(folder, batch_size)
    if any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in architectures):
        return LanguageModel(folder, jit_compile=jit_compile)
    raise TfhfError(
        f"--model {spec}: a {', '.join(architectures) or 'model'} checkpoint, not one tfhf "
        "trained (classify, lm, mlm, summarize or translate)"
    )
