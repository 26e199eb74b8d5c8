"""Tokenized corpora kept on disk: a corpus is tokenized once, in a streaming pass, into
shards of token ids that every later run with the same text and tokenizer reads in seconds.

A cache entry is a folder named by a digest of the text (file names, sizes and modification
times, or the packaged text's content) and of the tokenizer. It holds `train-NNNNN.ids` and
`validation-NNNNN.ids`, each a run of little-endian int32 ids (documents joined, each
followed by the separator), and `meta.json`. An entry is built in a folder of its own and
moved into place when complete, so a killed run leaves nothing that a later one would read.
Paths go through `tf.io.gfile`, so the cache may live on `gs://`, where the workers of a
multi-worker job share it.

Example:
  >>> from pathlib import Path
  >>> from tfhf.data.corpus import in_memory_corpus
  >>> from tfhf.tokenizers.bpe import train_bpe
  >>> tokenizer = train_bpe(["To be, or not to be"] * 20, vocab_size=300, folder=Path("bpe"))
  >>> text = in_memory_corpus(["To be, or not"], ["to be"])
  >>> streams = token_streams(text, tokenizer, separator_id=0, cache_dir="tokens")
  tfhf: tokenized ... kept in tokens/...
  tfhf: corpus 1 + 1 texts: 6 training tokens, 3 validation tokens
  >>> [ids.tolist() for ids in chunks(streams.train, 4)]
  [[...0]]
  >>> streams == token_streams(text, tokenizer, separator_id=0, cache_dir="tokens")
  tfhf: tokenized corpus from the cache: tokens/...
  tfhf: corpus 1 + 1 texts: 6 training tokens, 3 validation tokens
  True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from tokenizers import Tokenizer

from tfhf.data import records
from tfhf.errors import TfhfError

FORMAT = 1
# 64 MB of ids a shard: several shards to interleave once a corpus is large, one for the
# packaged corpora (whose blocks then come out exactly as from one id stream).
SHARD_TOKENS = 1 << 24
# Texts go to the tokenizer about a megabyte at a time: large enough that its per-call cost
# and its threads pay, small enough that memory stays flat.
_BATCH_CHARS = 1 << 20
_PROGRESS_SECONDS = 10.0
_WAIT_SECONDS = 2.0
# How long a process whose entry lost the race to be moved in waits for the winner's meta.
_PUBLISH_SECONDS = 60.0
SPLITS = ("train", "validation")


class Shard(NamedTuple):
    """One file of token ids and how many it holds."""

    path: str
    tokens: int


@dataclasses.dataclass(frozen=True)
class TokenStreams:
    """A corpus's training and validation id streams, as shards on disk."""

    train: tuple[Shard, ...]
    validation: tuple[Shard, ...]
    folder: str

    @property
    def train_tokens(self) -> int:
        return sum(s.tokens for s in self.train)

    @property
    def validation_tokens(self) -> int:
        return sum(s.tokens for s in self.validation)


def cache_dir(setting: str) -> str:
    """Where tokenized corpora and trained vocabularies are kept: `setting`, or
    `$TFHF_HOME/token_cache`."""
    from tfhf.data import assets

    return setting or str(assets.tfhf_home() / "token_cache")


def digest(*parts) -> str:
    """A short stable digest of JSON-able `parts`."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """A digest of everything that decides how a fast tokenizer tokenizes."""
    return digest(tokenizer.backend_tokenizer.to_str())


def chunks(source: np.ndarray | Iterable[Shard], multiple: int) -> Iterator[np.ndarray]:
    """The ids of an in-memory stream or of shards, a few megabytes at a time; each chunk
    holds a whole number of `multiple`s from its shard's start (except a shard's last), so
    a position's place in its block is its place in the chunk modulo `multiple`."""
    size = multiple * max(1, (1 << 20) // multiple)
    if isinstance(source, np.ndarray):
        for start in range(0, len(source), size):
            yield source[start : start + size]
        return
    for shard in source:
        with tf.io.gfile.GFile(shard.path, "rb") as f:
            while data := f.read(4 * size):
                yield np.frombuffer(data, "<i4").astype(np.int32)


class _ShardWriter:
    """Appends ids to `<split>-NNNNN.ids` files of at most `SHARD_TOKENS` each."""

    def __init__(self, folder: str, split: str):
        self.folder, self.split = folder, split
        self.shards: list[Shard] = []
        self._file = None
        self._in_shard = 0
        self.document_has_tokens = False

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self._file is None or self._in_shard == SHARD_TOKENS:
                self._next_file()
            part = ids[: SHARD_TOKENS - self._in_shard]
            self._file.write(part.astype("<i4").tobytes())
            self._in_shard += len(part)
            ids = ids[len(part) :]

    def _next_file(self) -> None:
        self.close()
        path = tf.io.gfile.join(self.folder, f"{self.split}-{len(self.shards):05d}.ids")
        self._file = tf.io.gfile.GFile(path, "wb")
        self.shards.append(Shard(path, 0))
        self._in_shard = 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.shards[-1] = Shard(self.shards[-1].path, self._in_shard)
            self._file = None


class _Progress:
    """A line every few seconds while a long pass over the text runs."""

    def __init__(self, what: str):
        self.what, self.chars, self.tokens = what, 0, 0
        self.started = self.shown = time.perf_counter()

    def add(self, chars: int, tokens: int) -> None:
        self.chars += chars
        self.tokens += tokens
        if time.perf_counter() - self.shown >= _PROGRESS_SECONDS:
            self.shown = time.perf_counter()
            print(f"tfhf: {self.what}: {self.line()}", flush=True)

    def line(self) -> str:
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return (
            f"{self.chars / 1e6:,.1f} M characters, {self.tokens:,} tokens in {seconds:.0f} s "
            f"({self.chars / 1e6 / seconds:.1f} M characters/s)"
        )


def _read_meta(folder: str) -> dict | None:
    path = tf.io.gfile.join(folder, "meta.json")
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _write_meta(folder: str, meta: dict) -> None:
    # Written last: an entry with meta.json is complete.
    with tf.io.gfile.GFile(tf.io.gfile.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def _remove(path: str) -> None:
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)
    except tf.errors.OpError:
        pass


def _entry(
    folder: str, what: str, build: Callable[[str], dict], *, wait_for_chief: bool
) -> tuple[dict, bool]:
    """(meta, whether built now) of the cache entry `folder`: read from the cache, waited
    for (the chief builds it), or built now by `build`, which fills the fresh folder it is
    given and returns the meta.

    The entry is built in a folder of its own, moved into place, and only then given its
    `meta.json`: a reader never sees a half-moved entry, even on `gs://`, where a folder
    moves object by object. When two processes build one entry at once, the first moved in
    stays and the other's copy is dropped. A build that fails leaves no folder behind, and
    a `<entry>.failed` file that tells the waiting workers why.
    """
    meta = _read_meta(folder)
    if meta is None and wait_for_chief:
        return _wait_for(folder, what), False
    if meta is not None:
        return meta, False
    partial = f"{folder}.partial-{uuid.uuid4().hex}"
    try:
        tf.io.gfile.makedirs(partial)
        meta = build(partial)
    except BaseException as e:
        _remove(partial)
        with contextlib.suppress(tf.errors.OpError):
            with tf.io.gfile.GFile(f"{folder}.failed", "w") as f:
                f.write(str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    try:
        tf.io.gfile.rename(partial, folder)
    except tf.errors.OpError:
        _remove(partial)
        deadline = time.monotonic() + _PUBLISH_SECONDS
        while (found := _read_meta(folder)) is None and time.monotonic() < deadline:
            time.sleep(_WAIT_SECONDS)
        if found is None:
            raise TfhfError(
                f"{folder}: an unfinished cache entry is in the way; remove it and run again"
            ) from None
        return found, False
    _write_meta(folder, meta)
    _remove(f"{folder}.failed")
    return meta, True


def _wait_for(folder: str, what: str) -> dict:
    """A worker that is not the chief waits for the chief's entry in a shared cache, or
    for the chief's word that it could not build it (a `.failed` file newer than the wait)."""
    print(f"tfhf: waiting for the chief to write {what} into {folder}", flush=True)
    failed, started = f"{folder}.failed", time.time()
    while (meta := _read_meta(folder)) is None:
        if tf.io.gfile.exists(failed) and tf.io.gfile.stat(failed).mtime_nsec / 1e9 >= started - 1:
            with tf.io.gfile.GFile(failed) as f:
                raise TfhfError(f"the chief could not write {what} into {folder}: {f.read()}")
        time.sleep(_WAIT_SECONDS)
    return meta


def _streams(folder: str, meta: dict) -> TokenStreams:
    def shards(split):
        return tuple(Shard(tf.io.gfile.join(folder, name), n) for name, n in meta[split])

    return TokenStreams(shards("train"), shards("validation"), folder)


def token_streams(
    corpus, tokenizer, *, separator_id: int, cache_dir: str, wait_for_chief: bool = False
) -> TokenStreams:
    """The corpus tokenized (without special tokens; each document followed by
    `separator_id`, none that tokenizes to nothing): from the cache when an entry for the
    same text and tokenizer is there, else tokenized now, in one streaming pass, and kept.

    Args:
      corpus: A `tfhf.data.corpus.Corpus`.
      tokenizer: A transformers fast tokenizer.
      separator_id: The id after each document (GPT-2's end-of-text, BERT's [SEP]).
      cache_dir: The cache's root folder (local, or any `tf.io.gfile` path).
      wait_for_chief: On the other workers of a multi-worker job whose cache all of them
        see: wait for the chief's entry rather than tokenize the corpus too.
    """
    key = digest(FORMAT, corpus.fingerprint, tokenizer_digest(tokenizer), separator_id)
    folder = tf.io.gfile.join(cache_dir, key)
    meta, built = _entry(
        folder,
        "the tokenized corpus",
        lambda partial: _build(corpus, tokenizer, separator_id, partial),
        wait_for_chief=wait_for_chief,
    )
    if built:
        print(f"tfhf: kept in {folder}", flush=True)
    else:
        print(f"tfhf: tokenized corpus from the cache: {folder}", flush=True)
        _skipped_again(*meta["skipped"])
    streams = _streams(folder, meta)
    print(
        f"tfhf: corpus {corpus.description}: {streams.train_tokens:,} training tokens, "
        f"{streams.validation_tokens:,} validation tokens",
        flush=True,
    )
    return streams


def _skipped_again(count: int, first: str) -> None:
    """A cached corpus built by skipping bad records: counted again in this run's
    `--skip_bad_records` count, or refused as a fresh read would be."""
    if not count:
        return
    skipped = records.skipped_records()
    if skipped is None:
        raise TfhfError(first)
    skipped.count += count
    skipped.first = skipped.first or first


def _batches(corpus) -> Iterator[list[tuple[str, records.Text]]]:
    """The corpus's texts, about `_BATCH_CHARS` characters at a time."""
    batch, chars = [], 0
    for split, text in corpus.texts():
        batch.append((split, text))
        chars += len(text.text)
        if chars >= _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _build(corpus, tokenizer, separator_id: int, folder: str) -> dict:
    """Tokenizes the corpus into shards in `folder`; returns the entry's meta."""
    skipped = records.skipped_records()
    before = skipped.count if skipped else 0
    writers = {split: _ShardWriter(folder, split) for split in SPLITS}
    progress = _Progress("tokenizing the corpus")
    separator = [separator_id]
    # The Rust tokenizer itself (a copy), without transformers' per-text Python work, and as
    # transformers calls it: with no truncation and no padding whatever its file says.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    try:
        for batch in _batches(corpus):
            found = backend.encode_batch([t.text for _, t in batch], add_special_tokens=False)
            pieces = {split: [] for split in SPLITS}
            for (split, text), encoding in zip(batch, found, strict=True):
                writer = writers[split]
                if ids := encoding.ids:  # a fresh Python list at each call: read once
                    pieces[split].append(ids)
                    writer.document_has_tokens = True
                if text.ends_document and writer.document_has_tokens:
                    pieces[split].append(separator)
                    writer.document_has_tokens = False
            tokens = 0
            for split, found_ids in pieces.items():
                count = sum(map(len, found_ids))
                ids = np.fromiter(itertools.chain.from_iterable(found_ids), np.int32, count)
                writers[split].write(ids)
                tokens += count
            progress.add(sum(len(t.text) for _, t in batch), tokens)
    finally:
        for writer in writers.values():
            writer.close()
    count = skipped.count - before if skipped else 0
    print(f"tfhf: tokenized {progress.line()}", flush=True)
    return {
        "format": FORMAT,
        "description": corpus.description,
        "skipped": [count, skipped.first if count else ""],
        **{
            split: [[s.path.rsplit("/", 1)[-1], s.tokens] for s in writers[split].shards]
            for split in SPLITS
        },
    }


class _Sample:
    """A seeded sample of a corpus's training texts, at most `max_bytes` (UTF-8), read in
    one pass; `taken` and `complete` say afterwards what it held."""

    def __init__(self, corpus, max_bytes: int, seed: int):
        self.corpus, self.max_bytes, self.seed = corpus, max_bytes, seed
        self.taken, self.complete = 0, True
        # The trainers read on threads of their own, which do not inherit the caller's
        # context: its `--skip_bad_records` count among it.
        self._context = contextvars.copy_context()

    def __iter__(self) -> Iterator[str]:
        texts = self._texts()
        while True:
            try:
                yield self._context.run(next, texts)
            except StopIteration:
                return

    def _texts(self) -> Iterator[str]:
        # Each text is kept with the share of the corpus the sample can hold, so the sample
        # spreads over all files rather than their first bytes. A draw that kept nothing (a
        # few large texts) is followed by a pass that keeps them from the start.
        share = min(1.0, self.max_bytes / max(self.corpus.train_bytes, 1))
        rng = random.Random(self.seed)
        for keep in (share, 1.0) if share < 1.0 else (1.0,):
            for split, text in self.corpus.texts():
                if split != "train" or not text.text:
                    continue
                if keep < 1.0 and rng.random() >= keep:
                    self.complete = False
                    continue
                size = len(text.text.encode("utf-8"))
                if self.taken + size > self.max_bytes and self.taken:
                    self.complete = False
                    return
                self.taken += size
                yield text.text
            if self.taken:
                return


def trained_tokenizer(
    corpus,
    *,
    kind: str,
    settings: str,
    train: Callable[[Iterable[str], Path], object],
    load: Callable[[Path], object],
    folder: Path,
    cache_dir: str,
    sample_bytes: int,
    seed: int,
    wait_for_chief: bool = False,
):
    """A tokenizer trained on a seeded sample of the corpus's training text (at most
    `sample_bytes`), or the one an earlier run trained on the same text with the same
    settings, copied from the cache. It is saved in `folder` and loaded from there by
    `load` (so a fresh run and a cached one tokenize with the very same object).

    Args:
      kind: What is trained, for the messages and the cache key ("byte-level BPE").
      settings: The trainer's settings ("vocab 4096"), for the messages and the cache key.
      train: Trains on an iterable of texts and saves into a folder.
      wait_for_chief: As for `token_streams`.
    """
    key = digest(FORMAT, "vocabulary", kind, settings, corpus.fingerprint, sample_bytes, seed)
    cached = tf.io.gfile.join(cache_dir, f"vocabulary-{key}")

    def build(partial: str) -> dict:
        sample = _Sample(corpus, sample_bytes, seed)
        started = time.perf_counter()
        print(f"tfhf: training a {kind} tokenizer ({settings}) on the training text", flush=True)
        with records.uncounted():  # the tokenizing pass counts them
            train(sample, folder)
        if not sample.taken:
            raise TfhfError(f"{corpus.description}: the training text is empty")
        how = (
            "all of it"
            if sample.complete
            else f"a seeded sample of it, --vocab_sample_bytes={sample_bytes:,}"
        )
        print(
            f"tfhf: trained on {sample.taken / 1e6:,.1f} MB of the training text ({how}) in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
        for name in sorted(os.listdir(folder)):
            tf.io.gfile.copy(str(folder / name), tf.io.gfile.join(partial, name), overwrite=True)
        return {"format": FORMAT, "kind": kind, "settings": settings}

    _, built = _entry(cached, f"the {kind} vocabulary", build, wait_for_chief=wait_for_chief)
    if not built:
        print(f"tfhf: {kind} tokenizer from the cache: {cached}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        for name in tf.io.gfile.listdir(cached):
            if name != "meta.json":
                tf.io.gfile.copy(tf.io.gfile.join(cached, name), str(folder / name), True)
    return load(folder)
