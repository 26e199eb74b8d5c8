"""Records read from a user's files one at a time: a file, a glob, a comma-separated list or a
folder; .txt, .jsonl, .csv and .tsv, each optionally gzip-compressed (.gz), and TFRecord
files of `tf.train.Example`; every path through `tf.io.gfile`, so `gs://` works wherever
TensorFlow's GCS filesystem does.

Example:
  >>> with open("reviews.jsonl", "w") as f:
  ...     _ = f.write('{"text": "a quietly moving film", "label": 1}\\n')
  >>> list(iter_records("*.jsonl", columns=("text", "label")))
  [('reviews.jsonl:1', {'text': 'a quietly moving film', 'label': 1})]
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import dataclasses
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import tensorflow as tf

from tfhf.config import TEXT_FORMATS
from tfhf.errors import TfhfError

# Extensions a file may have (before an optional .gz), and what a folder's files are read as.
KINDS = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
}


def expand_files(spec: str) -> list[str]:
    """The files `spec` names: comma-separated parts, each a file, a glob or a folder (its
    files of a known kind, sorted, hidden ones left out), in the order given.

    Raises:
      TfhfError: A part names nothing, or a folder holds no file of a known kind.
    """
    files: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(c in part for c in "*?["):
            matched = sorted(tf.io.gfile.glob(part))
            if not part.startswith("./"):  # gfile adds it to a relative pattern's matches
                matched = [m.removeprefix("./") for m in matched]
            if not matched:
                raise TfhfError(f"{part}: no file matches")
            files += [m for m in matched if not tf.io.gfile.isdir(m)]
        elif tf.io.gfile.isdir(part):
            inside = sorted(
                tf.io.gfile.join(part, name)
                for name in tf.io.gfile.listdir(part)
                if not name.startswith(".") and _known(name)
            )
            if not inside:
                raise TfhfError(
                    f"{part}: the folder holds no {', '.join(sorted(KINDS))} file (or .gz)"
                )
            files += inside
        elif tf.io.gfile.exists(part):
            files.append(part)
        else:
            raise TfhfError(f"{part}: file not found")
    if not files:
        raise TfhfError(f"'{spec}' names no file")
    return files


def file_kind(path: str) -> tuple[str, bool]:
    """(kind, gzip-compressed) from a file's name: `reviews.jsonl.gz` -> ("jsonl", True).

    Raises:
      TfhfError: An extension tfhf does not read.
    """
    name = path.rsplit("/", 1)[-1].lower()
    compressed = name.endswith(".gz")
    stem = name[: -len(".gz")] if compressed else name
    suffix = "." + stem.rsplit(".", 1)[-1] if "." in stem else ""
    if suffix not in KINDS:
        raise TfhfError(
            f"{path}: unsupported extension '{suffix or name}' (use "
            f"{', '.join(sorted(KINDS))}, each optionally .gz)"
        )
    return KINDS[suffix], compressed


@dataclasses.dataclass
class Skipped:
    """Bad records skipped (`skip_bad_records`): how many, and the first one's reason."""

    count: int = 0
    first: str = ""

    def add(self, reason: str) -> None:
        self.count += 1
        self.first = self.first or reason


_SKIPPING: contextvars.ContextVar[Skipped | None] = contextvars.ContextVar(
    "tfhf_skipping", default=None
)


@contextlib.contextmanager
def skipping(skip: bool = True) -> Iterator[Skipped]:
    """Within the block, every `iter_records` call that is not told otherwise skips bad
    records and counts them in the `Skipped` this yields (`skip` False: it raises, as
    outside the block).

    Example:
      >>> with open("mixed.jsonl", "w") as f:
      ...     _ = f.write('{"text": "fine"}\\nnot JSON\\n{"body": "no text"}\\n')
      >>> with skipping() as skipped:
      ...     rows = list(iter_records("mixed.jsonl", columns=("text",)))
      >>> len(rows), skipped.count, skipped.first
      (1, 2, 'mixed.jsonl:2: invalid JSON: Expecting value')
    """
    skipped = Skipped()
    token = _SKIPPING.set(skipped if skip else None)
    try:
        yield skipped
    finally:
        _SKIPPING.reset(token)


def skipped_records() -> Skipped | None:
    """The count of the `skipping` block around the caller (None outside one)."""
    return _SKIPPING.get()


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Bad records met within the block are skipped (inside a `skipping` block) or raise as
    usual, but not counted: for a look at records that a later pass reads and counts."""
    skipped = _SKIPPING.get()
    saved = (skipped.count, skipped.first) if skipped else None
    try:
        yield
    finally:
        if skipped:
            skipped.count, skipped.first = saved


def iter_records(
    spec: str,
    *,
    columns: Sequence[str] | None,
    text_format: str = "lines",
    skip_bad_records: Skipped | None = None,
) -> Iterator[tuple[str, dict[str, object]]]:
    """("file:line", record) for every record of the files `spec` names, read one at a time
    (memory does not grow with a file's size, but for a .txt read as one document).

    A .txt file gives `{"text": ...}` records: one per non-blank line (`text_format`
    "lines"), per block of lines between blank lines ("paragraphs"), or the whole file
    ("document"). Other kinds give each row's `columns` (all of them for None; JSONL values
    as they are, CSV, TSV and TFRecord values as strings).

    Raises:
      TfhfError: A file is missing, unreadable or not UTF-8, or a record is malformed or
        lacks a column: one line naming the file and line (or record). With
        `skip_bad_records` (or inside a `skipping` block) a bad record is counted there and
        skipped instead; a file that cannot be read at all still raises.
    """
    if skip_bad_records is None:
        skip_bad_records = _SKIPPING.get()
    if text_format not in TEXT_FORMATS:
        raise TfhfError(f"unknown text format '{text_format}' (use {', '.join(TEXT_FORMATS)})")
    for path in expand_files(spec):
        yield from _file_records(path, columns, text_format, skip_bad_records)


def _file_records(path: str, columns, text_format: str, skipped) -> Iterator[tuple[str, dict]]:
    """The records of one file, named as it is (not a spec: a comma or a '[' in its name
    is part of the name)."""
    kind, compressed = file_kind(path)
    if kind == "tfrecord":
        yield from _tfrecord(path, compressed, columns, skipped)
        return
    with _open_text(path, compressed) as text:
        if kind == "txt":
            yield from _txt(path, text, text_format)
        elif kind == "jsonl":
            yield from _jsonl(path, text, columns, skipped)
        else:
            yield from _delimited(path, text, kind, columns, skipped)


class Text(NamedTuple):
    """A text of `iter_texts`: where it starts ("file:line"), the text, and whether the
    document it belongs to ends with it (False only for a piece of a longer document)."""

    where: str
    text: str
    ends_document: bool = True


def iter_texts(
    spec: str | Sequence[str],
    *,
    text_column: str,
    text_format: str = "lines",
    piece_chars: int = 0,
    keep_blank: bool = False,
) -> Iterator[Text]:
    """The texts of the files `spec` names (or of the files listed, as `expand_files` gave
    them), one at a time: a .txt file's by `text_format`, every other file's `text_column`
    (a string; a blank one is a bad record unless `keep_blank`).

    With `piece_chars`, a .txt document longer than that comes in pieces of about that
    many characters, so memory does not grow with the file. A piece ends just before a
    space or line break that follows a printable, non-space character: byte-level BPE and
    WordPiece tokenize the pieces one by one exactly as they tokenize the whole (their
    pre-tokenizers split there anyway), so a corpus of one huge document tokenizes as it
    would whole.

    Raises:
      TfhfError: As `iter_records`, and for a missing, empty or non-string text (skipped and
        counted instead inside a `skipping` block).
    """
    skipped = _SKIPPING.get()
    for path in expand_files(spec) if isinstance(spec, str) else spec:
        kind, compressed = file_kind(path)
        if kind == "txt" and text_format == "document" and piece_chars:
            with _open_text(path, compressed) as text:
                yield from _document_pieces(path, text, piece_chars)
            continue
        column = "text" if kind == "txt" else text_column
        for where, row in _file_records(path, (column,), text_format, skipped):
            value = row[column]
            if not isinstance(value, str):
                bad_record(where, f"'{column}' is not a string")
            elif not (value.strip() or keep_blank):
                bad_record(where, f"empty '{column}'")
            else:
                yield Text(where, value)


def _piece_end(text: str, start: int) -> int:
    """The last place at or after `start` where a piece may end (see `iter_texts`): before a
    space or line break that follows a printable non-space character; 0 where there is
    none."""
    end = len(text)
    while (end := max(text.rfind(c, start, end) for c in " \n\r")) > start:
        before = text[end - 1]
        if before.isprintable() and not before.isspace():
            return end
    return 0


def _document_pieces(path: str, text, piece_chars: int) -> Iterator[Text]:
    carry, line, pending = "", 1, None
    with _reading(path):
        while chunk := text.read(piece_chars):
            carry += chunk
            # Only the part added since the last cut is searched: each character is looked
            # at a bounded number of times however long a piece runs.
            if end := _piece_end(carry, max(len(carry) - len(chunk) - 1, 1)):
                if pending:
                    yield pending
                pending = Text(f"{path}:{line}", carry[:end], ends_document=False)
                line += carry.count("\n", 0, end)
                carry = carry[end:]
    # A piece always holds a non-space character; only the rest after the last cut can be
    # blank, and then it joins the last piece (its whitespace is part of the document).
    if pending and not carry.strip():
        yield Text(pending.where, pending.text + carry)
        return
    if pending:
        yield pending
    if carry.strip():
        yield Text(f"{path}:{line}", carry)


def _known(name: str) -> bool:
    try:
        file_kind(name)
    except TfhfError:
        return False
    return True


class _GFileReader(io.RawIOBase):
    """A `tf.io.gfile.GFile` as the raw stream Python's io and gzip modules read."""

    def __init__(self, path: str):
        self._file = tf.io.gfile.GFile(path, "rb")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


@contextlib.contextmanager
def _open_text(path: str, compressed: bool) -> Iterator[io.TextIOWrapper]:
    """The file's text, UTF-8 with a leading BOM dropped; the file closed after."""
    with io.BufferedReader(_GFileReader(path), 1 << 20) as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        # newline="" keeps a quoted CSV field's line breaks and every JSON line as written.
        with io.TextIOWrapper(stream, encoding="utf-8-sig", newline="") as text:
            yield text


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Turns a read that fails on the file's bytes into one line naming the file."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise TfhfError(f"{path}: not valid UTF-8 text (byte offset {e.start})") from None
    except (OSError, EOFError) as e:  # a truncated or corrupt .gz among them
        raise TfhfError(f"{path}: cannot be read: {e}") from None


def _lines(path: str, text: io.TextIOWrapper) -> Iterator[tuple[int, str]]:
    """(line number, line without its ending) for each line; "\\n" ends a line (a JSON
    string may hold U+2028 and other separators), "\\r\\n" too."""
    with _reading(path):
        for number, line in enumerate(text, start=1):
            yield number, line.removesuffix("\n").removesuffix("\r")


def _txt(path: str, text, text_format: str) -> Iterator[tuple[str, dict]]:
    if text_format == "document":  # the file as it is, line endings and all
        with _reading(path):
            whole = text.read()
        if whole.strip():
            yield f"{path}:1", {"text": whole}
        return
    block: list[str] = []
    start = 0
    for number, line in _lines(path, text):
        if text_format == "lines":
            if line.strip():
                yield f"{path}:{number}", {"text": line}
        elif line.strip():
            start = start or number
            block.append(line)
        elif block:
            yield f"{path}:{start}", {"text": "\n".join(block)}
            block, start = [], 0
    if block:
        yield f"{path}:{start}", {"text": "\n".join(block)}


def _bad(where: str, reason: str, skipped: Skipped | None) -> None:
    if skipped is None:
        raise TfhfError(f"{where}: {reason}")
    skipped.add(f"{where}: {reason}")


def bad_record(where: str, reason: str) -> None:
    """A record its reader found bad (an empty text, a label of the wrong type): raises
    `TfhfError` naming it, or inside a `skipping` block counts it there and returns, and
    the caller leaves the record out."""
    _bad(where, reason, _SKIPPING.get())


def _with_columns(where: str, row: dict, columns, skipped) -> dict | None:
    if columns is None:
        return row
    missing = [c for c in columns if c not in row]
    if missing:
        available = ", ".join(sorted(str(k) for k in row)) or "none"
        _bad(where, f"no column '{missing[0]}' (columns: {available})", skipped)
        return None
    return {c: row[c] for c in columns}


def _jsonl(path: str, text, columns, skipped) -> Iterator[tuple[str, dict]]:
    for number, line in _lines(path, text):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            _bad(where, f"invalid JSON: {e.msg}", skipped)
            continue
        if not isinstance(row, dict):
            _bad(where, "expected a JSON object per line", skipped)
            continue
        if (kept := _with_columns(where, row, columns, skipped)) is not None:
            yield where, kept


def _delimited(path: str, text, kind: str, columns, skipped) -> Iterator[tuple[str, dict]]:
    # TSV has no quoting at all; CSV quotes as RFC 4180 does.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if kind == "tsv" else {}
    reader = csv.DictReader((line + "\n" for _, line in _lines(path, text)), **options)
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:  # more fields than the header names
                _bad(where, f"more fields than the header's {len(reader.fieldnames)}", skipped)
                continue
            if (kept := _with_columns(where, row, columns, skipped)) is not None:
                yield where, kept
    except csv.Error as e:
        raise TfhfError(f"{path}:{reader.line_num}: malformed {kind.upper()}: {e}") from None
    if reader.fieldnames is None:
        raise TfhfError(f"{path}: file is empty")


def _tfrecord(path: str, compressed: bool, columns, skipped) -> Iterator[tuple[str, dict]]:
    records = tf.data.TFRecordDataset(path, compression_type="GZIP" if compressed else "")
    try:
        for number, serialized in enumerate(records.as_numpy_iterator(), start=1):
            where = f"{path}: record {number}"
            try:
                example = tf.train.Example.FromString(serialized)
            except Exception:  # noqa: BLE001  (protobuf's DecodeError and kin)
                _bad(where, "not a tf.train.Example", skipped)
                continue
            row = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                values = list(getattr(feature, kind).value) if kind else []
                if len(values) != 1:
                    row[name] = None  # a list: not one value per record
                    continue
                value = values[0]
                row[name] = value.decode("utf-8", "replace") if kind == "bytes_list" else str(value)
            bad = [c for c in (row if columns is None else columns) if row.get(c, "") is None]
            if bad:
                _bad(where, f"feature '{bad[0]}' does not hold exactly one value", skipped)
                continue
            if (kept := _with_columns(where, row, columns, skipped)) is not None:
                yield where, kept
    except tf.errors.DataLossError as e:
        raise TfhfError(f"{path}: not a readable TFRecord file ({e.message})") from None
