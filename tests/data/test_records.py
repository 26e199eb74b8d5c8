"""Records streamed from files: globs, lists, folders, gzip, TFRecord, any tf.io.gfile path."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pytest
import tensorflow as tf

from tfhf.data.records import Skipped, expand_files, file_kind, iter_records
from tfhf.errors import TfhfError

ROWS = [{"text": f"review {i}, ünïcode 日本 🎭", "label": i % 2} for i in range(5)]


def write(path, data: bytes) -> str:
    with tf.io.gfile.GFile(str(path), "wb") as f:
        f.write(data)
    return str(path)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def example(**features) -> bytes:
    feature = {}
    for name, value in features.items():
        if isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            values = value if isinstance(value, list) else [value]
            feature[name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[v.encode() for v in values])
            )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def texts(spec, **kwargs) -> list:
    return [row for _, row in iter_records(spec, **kwargs)]


@pytest.mark.parametrize("root", ["local", "ram"])
def test_every_kind_plain_or_gzipped_reads_the_same_rows_on_any_filesystem(tmp_path, root):
    base = str(tmp_path) if root == "local" else f"ram://records-{id(tmp_path)}"
    tf.io.gfile.makedirs(base)
    header = "text,label\n" + "".join(f'"{r["text"]}",{r["label"]}\n' for r in ROWS)
    tsv = "text\tlabel\n" + "".join(f"{r['text']}\t{r['label']}\n" for r in ROWS)
    files = {
        "a.jsonl": jsonl(ROWS),
        "b.csv": header.encode(),
        "c.tsv": tsv.encode(),
    }
    for name, data in files.items():
        write(f"{base}/{name}", data)
        write(f"{base}/{name}.gz", gzip.compress(data))
    for compression, suffix in (("", ""), ("GZIP", ".gz")):
        with tf.io.TFRecordWriter(f"{base}/d.tfrecord{suffix}", compression) as writer:
            for r in ROWS:
                writer.write(example(text=r["text"], label=r["label"]))
    want = [{"text": r["text"], "label": str(r["label"])} for r in ROWS]
    for name in [*files, "d.tfrecord"]:
        for suffix in ("", ".gz"):
            got = texts(f"{base}/{name}{suffix}", columns=("text", "label"))
            got = [{k: str(v) for k, v in row.items()} for row in got]
            assert got == want, name + suffix
    # A folder reads its files in name order; a glob and a list name the same files.
    everything = texts(base, columns=("text", "label"))
    assert len(everything) == 8 * len(ROWS)
    listed = ",".join(expand_files(f"{base}/*.jsonl*"))
    assert texts(listed, columns=("text",)) == texts(f"{base}/*.jsonl*", columns=("text",))


def test_txt_gives_lines_paragraphs_or_one_document(tmp_path):
    path = write(tmp_path / "t.txt", "\ufeffone\ntwo\r\n\n\nthree\nfour\n\n".encode())
    assert texts(path, columns=("text",)) == [{"text": t} for t in ["one", "two", "three", "four"]]
    assert [w for w, _ in iter_records(path, columns=("text",), text_format="paragraphs")] == [
        f"{path}:1",
        f"{path}:5",
    ]
    assert texts(path, columns=("text",), text_format="paragraphs") == [
        {"text": "one\ntwo"},
        {"text": "three\nfour"},
    ]
    assert texts(path, columns=("text",), text_format="document") == [
        {"text": "one\ntwo\r\n\n\nthree\nfour\n\n"}  # as written, less the BOM
    ]


def test_a_bad_record_deep_in_a_file_names_the_file_and_line_or_is_counted_and_skipped(tmp_path):
    rows = [json.dumps({"text": f"t{i}", "label": 0}) for i in range(1000)]
    rows[700] = '{"text": "cut short'
    rows[800] = json.dumps({"txt": "renamed", "label": 1})
    path = write(tmp_path / "big.jsonl.gz", gzip.compress("\n".join(rows).encode()))
    with pytest.raises(TfhfError, match=r"big\.jsonl\.gz:701: invalid JSON"):
        texts(path, columns=("text", "label"))
    skipped = Skipped()
    got = texts(path, columns=("text", "label"), skip_bad_records=skipped)
    assert len(got) == 998 and skipped.count == 2
    assert skipped.first.endswith("big.jsonl.gz:701: invalid JSON: Unterminated string starting at")


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("x.parquet", b"", r"unsupported extension '\.parquet'"),
        ("bad.jsonl", b"\xff\xfe not text\n", r"not valid UTF-8 text"),
        ("cut.jsonl.gz", gzip.compress(jsonl(ROWS), mtime=0)[:40], r"cannot be read"),
        ("wide.csv", b"text,label\na,1,extra\n", r"wide\.csv:2: more fields than"),
        ("nocol.csv", b"body,label\na,1\n", r"nocol\.csv:2: no column 'text' \(columns: body"),
        ("list.jsonl", b"[1, 2]\n", r"list\.jsonl:1: expected a JSON object"),
        ("junk.tfrecord", b"not a record file at all", r"not a readable TFRecord"),
    ],
    ids=["parquet", "not_utf8", "cut_gzip", "wide_csv", "no_column", "json_list", "junk_tfrecord"],
)
def test_unreadable_inputs_end_in_one_line_naming_the_file(tmp_path, name, data, message):
    path = write(tmp_path / name, data)
    with pytest.raises(TfhfError, match=message):
        texts(path, columns=("text", "label"))


def test_a_tfrecord_feature_with_several_values_is_a_bad_record(tmp_path):
    path = str(tmp_path / "many.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example(text=["two", "values"], label=1))
        writer.write(example(text="one", label=0))
    with pytest.raises(TfhfError, match=r"record 1: feature 'text' does not hold exactly one"):
        texts(path, columns=("text", "label"))
    assert texts(path, columns=("text", "label"), skip_bad_records=Skipped()) == [
        {"text": "one", "label": "0"}
    ]


def test_specs_that_name_nothing_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(TfhfError, match="no file matches"):
        expand_files(str(tmp_path / "*.jsonl"))
    with pytest.raises(TfhfError, match="the folder holds no"):
        expand_files(str(tmp_path / "empty"))
    with pytest.raises(TfhfError, match="file not found"):
        expand_files(f"{tmp_path}/a.jsonl,{tmp_path}/missing.jsonl")
    assert file_kind("gs://bucket/part-0001.TSV.gz") == ("tsv", True)


def test_reading_a_large_file_holds_one_record_at_a_time(tmp_path):
    rows = ({"text": "x" * 200, "label": i % 2} for i in range(60_000))
    path = write(tmp_path / "large.jsonl.gz", gzip.compress(jsonl(rows)))  # 13 MB of text
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_records(path, columns=("text", "label")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    assert peak < 2 << 20  # the file whole would be 13 MB, its rows as objects far more
