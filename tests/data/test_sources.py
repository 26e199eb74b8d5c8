"""Labelled text from user files, tfds (mocked, offline) and the packaged Rotten Tomatoes data."""

import tfhf  # noqa: F401, I001  (selects the legacy Keras before TensorFlow loads)

import csv
import json
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfhf.data import rotten_tomatoes, sources
from tfhf.errors import TfhfError


def _write_table(path, rows, *, header=("text", "label")):
    """Writes `rows` (tuples matching `header`) as CSV, TSV or JSONL, chosen by `path`'s suffix."""
    if path.suffix == ".jsonl":
        path.write_text(
            "".join(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in rows),
            encoding="utf-8",
        )
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writerow(header)
            writer.writerows(rows)
    return path


def _numbered_rows(n, labels=("neg", "pos")):
    """`n` rows with unique texts, labels cycling through `labels`."""
    return [(f"review number {i}", labels[i % len(labels)]) for i in range(n)]


def _pairs(split, label_names):
    return [(text, label_names[i]) for text, i in zip(split.texts, split.labels, strict=True)]


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(TfhfError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, f"not a one-line message: {message!r}"
    return message


# --- reading files ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_reads_each_format_by_extension(tmp_path, suffix):
    rows = [("a fine, funny film", "pos"), ("dull; too long", "neg"), ("Café crème", "pos")]
    path = _write_table(tmp_path / f"train{suffix}", rows)

    texts, labels, lines = sources.read_text_label_file(
        path, text_column="text", label_column="label"
    )

    assert texts == [t for t, _ in rows]
    assert labels == [y for _, y in rows]
    first_data_line = 1 if suffix == ".jsonl" else 2
    assert lines == [f"{path}:{n}" for n in range(first_data_line, first_data_line + len(rows))]


def test_a_split_may_be_many_files_gzipped_or_not_named_by_a_glob_a_list_or_a_folder(tmp_path):
    import gzip
    import json

    parts = tmp_path / "train"
    parts.mkdir()
    rows = _numbered_rows(30)
    for i in range(3):
        data = "".join(
            json.dumps({"text": t, "label": y}) + "\n" for t, y in rows[i * 10 : i * 10 + 10]
        ).encode()
        (parts / f"part-{i}.jsonl.gz").write_bytes(gzip.compress(data))
    by_folder = sources.read_text_label_file(parts, text_column="text", label_column="label")
    glob = str(parts / "part-*.jsonl.gz")
    by_glob = sources.read_text_label_file(glob, text_column="text", label_column="label")
    listed = ",".join(str(parts / f"part-{i}.jsonl.gz") for i in range(3))
    by_list = sources.read_text_label_file(listed, text_column="text", label_column="label")
    assert by_folder == by_glob == by_list
    assert list(zip(by_folder[0], by_folder[1], strict=True)) == rows
    assert by_folder[2][10] == f"{parts / 'part-1.jsonl.gz'}:1"
    data = sources.load_files(train_file=glob, seed=0)
    assert len(data.train.texts) + len(data.validation.texts) + len(data.test.texts) == 30


def test_csv_quoted_field_with_delimiter_and_quotes_is_one_text(tmp_path):
    rows = [('he said "wow", twice', "pos"), ("plain", "neg")]
    path = _write_table(tmp_path / "train.csv", rows)

    texts, labels, _ = sources.read_text_label_file(path, text_column="text", label_column="label")

    assert texts == [t for t, _ in rows]
    assert labels == ["pos", "neg"]


def test_custom_column_names(tmp_path):
    path = _write_table(
        tmp_path / "train.jsonl", [("x", "a"), ("y", "b")], header=("sentence", "sentiment")
    )

    texts, labels, _ = sources.read_text_label_file(
        path, text_column="sentence", label_column="sentiment"
    )

    assert (texts, labels) == (["x", "y"], ["a", "b"])


def test_string_labels_are_sorted_and_ids_match_names(tmp_path):
    rows = _numbered_rows(30, labels=("positive", "negative", "neutral"))
    path = _write_table(tmp_path / "train.csv", rows)

    data = sources.load_files(train_file=str(path), seed=0)

    assert data.label_names == ["negative", "neutral", "positive"]
    expected = dict(rows)
    for split in (data.train, data.validation, data.test):
        assert split.labels.dtype == np.int32
        for text, name in _pairs(split, data.label_names):
            assert expected[text] == name


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_integer_labels_sort_numerically(tmp_path, suffix):
    # JSONL carries JSON integers, CSV the same labels as digit strings.
    raw = [2, 10, 1]
    rows = [(f"text {i}", raw[i % 3]) for i in range(30)]
    path = _write_table(tmp_path / f"train{suffix}", rows)

    data = sources.load_files(train_file=str(path), seed=0)

    assert data.label_names == ["1", "2", "10"]
    expected = {text: str(label) for text, label in rows}
    for split in (data.train, data.validation, data.test):
        for text, name in _pairs(split, data.label_names):
            assert expected[text] == name


def test_held_out_file_labels_use_the_training_ids(tmp_path):
    train = _write_table(tmp_path / "train.csv", _numbered_rows(20, labels=("b", "a", "c")))
    validation = _write_table(tmp_path / "validation.jsonl", [("v1", "c"), ("v2", "a")])

    data = sources.load_files(train_file=str(train), validation_file=str(validation))

    assert data.validation.texts == ["v1", "v2"]
    assert [data.label_names[i] for i in data.validation.labels] == ["c", "a"]


# --- splitting off held-out data --------------------------------------------------------------


def test_missing_splits_are_a_disjoint_cover_of_train(tmp_path):
    rows = _numbered_rows(50)
    path = _write_table(tmp_path / "train.csv", rows)

    data = sources.load_files(train_file=str(path), seed=0)

    parts = [_pairs(s, data.label_names) for s in (data.train, data.validation, data.test)]
    assert all(len(p) > 0 for p in parts)
    assert len(parts[0]) > len(parts[1])
    combined = parts[0] + parts[1] + parts[2]
    assert Counter(combined) == Counter(rows)


def test_split_is_deterministic_by_seed(tmp_path):
    path = str(_write_table(tmp_path / "train.csv", _numbered_rows(50)))

    def splits(seed):
        data = sources.load_files(train_file=path, seed=seed)
        return [s.texts for s in (data.train, data.validation, data.test)]

    assert splits(3) == splits(3)
    assert splits(3) != splits(4)


def test_given_validation_file_is_kept_and_only_test_is_split_off(tmp_path):
    rows = _numbered_rows(40)
    train = _write_table(tmp_path / "train.csv", rows)
    validation = _write_table(tmp_path / "dev.csv", [("held out one", "neg"), ("two", "pos")])

    data = sources.load_files(train_file=str(train), validation_file=str(validation), seed=0)

    assert data.validation.texts == ["held out one", "two"]
    assert Counter(
        _pairs(data.train, data.label_names) + _pairs(data.test, data.label_names)
    ) == Counter(rows)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.csv", b"", ["empty"]),
        ("blank.jsonl", b"\n  \n", ["empty"]),
        ("header_only.csv", b"text,label\n", ["no rows"]),
        ("no_text.csv", b"review,label\nnice,pos\n", ["'text'", "label, review"]),
        ("no_label.tsv", b"text\tstars\nnice\t5\n", ["'label'", "stars, text"]),
        ("no_label.jsonl", b'{"text": "nice", "y": 1}\n', ["'label'", "text, y"]),
        ("bad_utf8.csv", b"text,label\ncaf\xe9,pos\n", ["UTF-8"]),
        ("table.xlsx", b"text,label\nnice,pos\n", ["unsupported extension", ".xlsx"]),
    ],
)
def test_bad_file_raises_one_line_error_naming_it(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)

    message = _error(
        sources.read_text_label_file, str(path), text_column="text", label_column="label"
    )

    assert str(path) in message
    for part in expected:
        assert part in message


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.csv"

    message = _error(sources.load_files, train_file=str(path))

    assert str(path) in message and "not found" in message


def test_invalid_json_line_is_located(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "ok", "label": 1}\n{"text": "broken", "label": \n')

    message = _error(sources.read_text_label_file, path, text_column="text", label_column="label")

    assert f"{path}:2:" in message and "invalid JSON" in message


def test_missing_column_on_a_later_row_is_located(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c"}\n')

    message = _error(sources.read_text_label_file, path, text_column="text", label_column="label")

    assert f"{path}:3:" in message and "'label'" in message


@pytest.mark.parametrize(
    "name, content, line",
    [
        ("dev.csv", "text,label\nfine,pos\nhmm,maybe\n", 3),
        # The blank line still counts: the number is the file's own line number.
        ("dev.jsonl", '{"text": "fine", "label": "pos"}\n\n{"text": "hmm", "label": "maybe"}\n', 3),
    ],
)
def test_unseen_label_in_held_out_file_names_file_line_and_label(tmp_path, name, content, line):
    train = _write_table(tmp_path / "train.csv", _numbered_rows(10))
    held_out = tmp_path / name
    held_out.write_text(content)

    for kwargs in ({"validation_file": str(held_out)}, {"test_file": str(held_out)}):
        message = _error(sources.load_files, train_file=str(train), **kwargs)
        assert f"{held_out}:{line}:" in message
        assert "'maybe'" in message


def test_single_label_training_file(tmp_path):
    path = _write_table(tmp_path / "train.csv", _numbered_rows(10, labels=("pos",)))

    message = _error(sources.load_files, train_file=str(path))

    assert str(path) in message and "two distinct labels" in message


def test_validation_file_without_train_file(tmp_path):
    validation = _write_table(tmp_path / "dev.csv", _numbered_rows(4))

    message = _error(
        sources.load_classification_data, dataset="imdb_reviews", validation_file=str(validation)
    )

    assert "--train_file" in message


def test_load_classification_data_prefers_train_file_over_dataset(tmp_path):
    path = _write_table(tmp_path / "train.csv", _numbered_rows(20))

    data = sources.load_classification_data(dataset="no_such_dataset", train_file=str(path))

    assert data.label_names == ["neg", "pos"]
    assert str(path) in data.description


@pytest.mark.parametrize(
    "name, text",
    [
        ("train.csv", "line one\nline two"),
        ("train.csv", "one\u2028two"),
        ("train.jsonl", "one\u2028two"),
    ],
)
def test_line_breaks_inside_a_text_are_kept(tmp_path, name, text):
    path = tmp_path / name
    if path.suffix == ".jsonl":
        # ensure_ascii=False writes U+2028 raw, as JSON allows and many exporters do.
        path.write_text(
            json.dumps({"text": text, "label": "pos"}, ensure_ascii=False)
            + "\n"
            + json.dumps({"text": "b", "label": "neg"})
            + "\n",
            encoding="utf-8",
        )
    else:
        _write_table(path, [(text, "pos"), ("b", "neg")])

    texts, labels, _ = sources.read_text_label_file(path, text_column="text", label_column="label")

    assert (texts, labels) == ([text, "b"], ["pos", "neg"])


def test_tsv_text_with_leading_quote_is_read_verbatim(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\n"Bad" movie\tneg\n"awful, I said\tneg\nfine film\tpos\n')

    texts, labels, _ = sources.read_text_label_file(path, text_column="text", label_column="label")

    assert texts == ['"Bad" movie', '"awful, I said', "fine film"]
    assert labels == ["neg", "neg", "pos"]


# --- tfds ---------------------------------------------------------------------------------------

# The split names of the real datasets. Without metadata files, tfds' mock has no split
# names at all, so they are written here the way `mock_data` documents (USE_FILES policy).
_REAL_SPLITS = {
    "imdb_reviews": ["train", "test", "unsupervised"],
    "glue/sst2": ["train", "validation", "test"],
}
_MOCK_EXAMPLES = 20


@pytest.fixture(scope="module")
def tfds_metadata_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds_metadata")
    for name, splits in _REAL_SPLITS.items():
        with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE):
            builder = tfds.builder(name)
        info_dir = root / builder.info.full_name
        info_dir.mkdir(parents=True)
        (info_dir / "dataset_info.json").write_text(
            json.dumps(
                {
                    "name": builder.name,
                    "version": str(builder.info.version),
                    "splits": [{"name": s, "shardLengths": [str(_MOCK_EXAMPLES)]} for s in splits],
                }
            )
        )
    return str(root)


def _mock_tfds(data_dir, **kwargs):
    return tfds.testing.mock_data(
        num_examples=_MOCK_EXAMPLES,
        data_dir=data_dir,
        policy=tfds.testing.MockPolicy.USE_FILES,
        **kwargs,
    )


def test_load_tfds_unknown_name():
    message = _error(sources.load_tfds, "no_such_dataset_xyz")

    assert "'no_such_dataset_xyz'" in message


def test_load_tfds_imdb_splits_validation_off_train(tfds_metadata_dir):
    with _mock_tfds(tfds_metadata_dir):
        data = sources.load_tfds("imdb_reviews", seed=0)

    assert data.label_names == ["neg", "pos"]
    # imdb has no validation split: it comes out of train, and test is the real test split.
    assert len(data.test) == _MOCK_EXAMPLES
    assert len(data.train) + len(data.validation) == _MOCK_EXAMPLES
    assert len(data.train) > len(data.validation) > 0
    for split in (data.train, data.validation, data.test):
        assert all(isinstance(t, str) for t in split.texts)
        assert set(split.labels.tolist()) <= {0, 1}


def test_load_tfds_sst2_uses_sentence_feature(tfds_metadata_dir):
    with _mock_tfds(tfds_metadata_dir):
        data = sources.load_tfds("glue/sst2", seed=0)

    assert data.label_names == ["negative", "positive"]
    for split in (data.train, data.validation, data.test):
        assert len(split) == _MOCK_EXAMPLES
        assert all(isinstance(t, str) and t for t in split.texts)


def test_load_tfds_unlabelled_test_split_is_split_off_train(tfds_metadata_dir):
    # As in the real GLUE data, the sst2 test split's labels are all -1.
    splits = {
        "train": ([f"train {i}" for i in range(30)], [i % 2 for i in range(30)]),
        "validation": (["dev a", "dev b"], [0, 1]),
        "test": (["test a", "test b", "test c"], [-1, -1, -1]),
    }

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        texts, labels = splits[str(split)]
        return tf.data.Dataset.from_tensor_slices(
            {
                "idx": np.arange(len(texts), dtype=np.int32),
                "sentence": texts,
                "label": np.array(labels, np.int64),
            }
        )

    with _mock_tfds(tfds_metadata_dir, as_dataset_fn=as_dataset):
        data = sources.load_tfds("glue/sst2", seed=0)

    assert data.validation.texts == ["dev a", "dev b"]
    assert not set(data.test.texts) & {"test a", "test b", "test c"}
    assert sorted(data.train.texts + data.test.texts) == sorted(splits["train"][0])
    assert (data.test.labels >= 0).all()


# --- the packaged Rotten Tomatoes builder ----------------------------------------------------


def _corpus(rows):
    lines = ["category,text"] + [f'{category},"{text}"' for category, text in rows]
    return "\n".join(lines) + "\n"


def test_polarity_examples_drops_plot_dedups_and_drops_conflicts():
    raw = _corpus(
        [
            ("fresh", "a triumph"),
            ("plot", "a man walks into a bar"),
            ("rotten", "a mess"),
            ("fresh", "a  triumph "),  # the same snippet up to whitespace
            ("fresh", "divisive"),
            ("rotten", "divisive"),
            ("rotten", "tedious"),
            ("fresh", "   "),
        ]
    )

    examples = rotten_tomatoes.polarity_examples(raw)

    assert examples == [("a triumph", 1), ("a mess", 0), ("tedious", 0)]


@pytest.mark.parametrize("n", [10, 37, 1000])
def test_split_indices_is_a_deterministic_80_10_10_partition(n):
    parts = rotten_tomatoes.split_indices(n)

    assert set(parts) == {"train", "validation", "test"}
    combined = np.concatenate([parts["train"], parts["validation"], parts["test"]])
    assert sorted(combined.tolist()) == list(range(n))
    for name, fraction in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert abs(len(parts[name]) - fraction * n) <= 1
    again = rotten_tomatoes.split_indices(n)
    for name in parts:
        np.testing.assert_array_equal(parts[name], again[name])


def test_skipping_bad_records_counts_them_and_keeps_the_rest(tmp_path):
    from tfhf.data import records

    rows = [json.dumps({"text": f"review {i}", "label": i % 2}) for i in range(30)]
    rows[4] = "{broken"
    rows[9] = json.dumps({"body": "no text", "label": 1})
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    message = _error(sources.load_files, train_file=str(path))
    assert f"{path}:5: invalid JSON" in message
    with records.skipping() as skipped:
        data = sources.load_files(train_file=str(path), seed=0)
    assert skipped.count == 2 and skipped.first.startswith(f"{path}:5: invalid JSON")
    assert len(data.train.texts) + len(data.validation.texts) + len(data.test.texts) == 28
    with records.skipping(False), pytest.raises(TfhfError, match=":5: invalid JSON"):
        sources.load_files(train_file=str(path))
