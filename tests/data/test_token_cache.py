"""Streamed corpora: documents read in pieces, the tokenized-corpus cache, and blocks read
from its shards."""

import gzip
import json
import os
import random
import shutil
import threading

import numpy as np
import pytest

from tfhf.data import corpus, pipeline, records, token_cache
from tfhf.errors import TfhfError
from tfhf.tokenizers import bpe, wordpiece

# Characters from many scripts and every kind of space, break, control and format character.
_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789.,;:!?'\"()-") * 4
    + list("日本語中文字汉語한국어ไทยالعربيةעבריתкириллицаΕλληνικάéèñüçåøß")
    + ["\u0301", "\u0308", "🎭", "👩\u200d👩\u200d👧", "👍🏽", "\ufe0f", "ｆｕｌｌ", "ﬁ"]
    + [" ", " ", " ", "  ", "\t", "\u00a0", "\u3000", "\u2009", "\u200b", "\u200d", "\u2060"]
    + ["\n"] * 8
    + ["\r\n", "\r", "\n\n", " \n", "\t\n", "\u2028", "\u2029", "\u0085", "\x0b", "\x0c"]
    + ["\x00", "\x01", "\x1c", "\x1f", "\x7f", "\ufeff", "\ufffd"]
)


def hostile_document(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    rng = random.Random(0)
    texts = [hostile_document(rng, 400) for _ in range(200)]
    folder = tmp_path_factory.mktemp("tokenizers")
    return {
        "bpe": bpe.train_bpe(texts, vocab_size=400, folder=folder / "bpe"),
        "wordpiece": wordpiece.train_wordpiece(texts, vocab_size=400, folder=folder / "wp"),
    }


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_a_document_read_in_pieces_tokenizes_as_it_does_whole(tokenizers, kind, tmp_path):
    tokenizer = tokenizers[kind]
    rng = random.Random(1)
    for trial in range(150):
        document = hostile_document(rng, rng.randrange(50, 3000))
        path = tmp_path / f"doc{trial}.txt"
        path.write_bytes(document.encode("utf-8"))
        document = document.removeprefix("\ufeff")  # a byte-order mark, not text
        pieces = list(
            records.iter_texts(
                str(path), text_column="text", text_format="document", piece_chars=40
            )
        )
        if not document.strip():
            assert pieces == []
            continue
        # Nothing lost or added, only the last piece ends the document.
        assert "".join(p.text for p in pieces) == document
        assert [p.ends_document for p in pieces] == [False] * (len(pieces) - 1) + [True]
        whole = tokenizer(document, add_special_tokens=False)["input_ids"]
        found = tokenizer([p.text for p in pieces], add_special_tokens=False)["input_ids"]
        assert [i for ids in found for i in ids] == whole, (kind, trial, len(pieces))


def test_pieces_name_the_line_they_start_on_and_a_single_line_is_cut_too(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("".join(f"Line {i}.\n" for i in range(1, 201)))
    pieces = list(
        records.iter_texts(str(path), text_column="text", text_format="document", piece_chars=64)
    )
    assert len(pieces) > 10
    before = ""
    for piece in pieces:
        assert piece.where == f"{path}:{before.count(chr(10)) + 1}"
        before += piece.text
    one_line = tmp_path / "text8.txt"  # no line break at all
    one_line.write_text(" ".join(["anarchism originated as a term"] * 100))
    pieces = list(
        records.iter_texts(
            str(one_line), text_column="text", text_format="document", piece_chars=64
        )
    )
    assert len(pieces) > 10 and max(len(p.text) for p in pieces) < 200


def test_file_names_are_names_not_patterns(tokenizers, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "part 1, draft.txt").write_text("a draft of it\n")
    (folder / "rows[1].jsonl").write_text('{"text": "a row"}\n')
    for text_format in ("lines", "document"):
        found = records.iter_texts(str(folder), text_column="text", text_format=text_format)
        assert sorted(t.text.strip() for t in found) == ["a draft of it", "a row"]


def _write_docs(path, n, *, offset=0):
    rows = [
        json.dumps({"text": f"document {i + offset} says hello to the reader"}) for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _all_ids(shards):
    return np.concatenate([np.zeros([0], np.int32), *token_cache.chunks(shards, 7)])


def test_a_corpus_is_tokenized_once_and_read_from_the_cache_after(tokenizers, tmp_path, capsys):
    tokenizer = tokenizers["bpe"]
    docs = _write_docs(tmp_path / "docs.jsonl", 30)
    text = corpus.file_corpus(str(docs), seed=2)
    cache = str(tmp_path / "cache")
    first = token_cache.token_streams(text, tokenizer, separator_id=0, cache_dir=cache)
    assert f"kept in {first.folder}" in capsys.readouterr().out
    train, validation = text.gathered()
    assert len(train) == 27 and len(validation) == 3

    def expected(texts):
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [i for one in ids for i in [*one, 0]]

    assert _all_ids(first.train).tolist() == expected(train)
    assert _all_ids(first.validation).tolist() == expected(validation)
    again = token_cache.token_streams(
        corpus.file_corpus(str(docs), seed=2), tokenizer, separator_id=0, cache_dir=cache
    )
    assert "tokenized corpus from the cache" in capsys.readouterr().out
    assert again == first
    # Another text, another tokenizer or another split: another entry.
    _write_docs(docs, 31)
    changed = token_cache.token_streams(
        corpus.file_corpus(str(docs), seed=2), tokenizer, separator_id=0, cache_dir=cache
    )
    other = token_cache.token_streams(
        corpus.file_corpus(str(docs), seed=3), tokenizer, separator_id=0, cache_dir=cache
    )
    assert len({first.folder, changed.folder, other.folder}) == 3
    assert "tokenized corpus from the cache" not in capsys.readouterr().out


def test_an_edit_within_the_second_that_keeps_the_size_is_seen(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "first"}\n')
    before = corpus.file_corpus(str(docs)).fingerprint
    docs.write_text('{"text": "other"}\n')
    assert corpus.file_corpus(str(docs)).fingerprint != before


def test_a_failed_build_leaves_nothing_but_word_for_the_waiting_workers(
    monkeypatch, tokenizers, tmp_path
):
    monkeypatch.setattr(token_cache, "_WAIT_SECONDS", 0.05)
    docs = _write_docs(tmp_path / "docs.jsonl", 25)
    with open(docs, "a") as f:
        f.write('{"body": "no text"}\n')
    cache = str(tmp_path / "cache")
    found = {}

    def worker():
        try:
            token_cache.token_streams(
                corpus.file_corpus(str(docs)),
                tokenizers["bpe"],
                separator_id=0,
                cache_dir=cache,
                wait_for_chief=True,
            )
        except TfhfError as e:
            found["error"] = str(e)

    waiting = threading.Thread(target=worker)
    waiting.start()
    with pytest.raises(TfhfError, match="docs.jsonl:26: no column 'text'"):
        token_cache.token_streams(
            corpus.file_corpus(str(docs)), tokenizers["bpe"], separator_id=0, cache_dir=cache
        )
    waiting.join(10)
    assert "the chief could not write the tokenized corpus" in found["error"]
    assert "docs.jsonl:26: no column 'text'" in found["error"]
    assert [name for name in os.listdir(cache) if not name.endswith(".failed")] == []


def test_a_held_out_piece_ends_its_document_on_both_sides(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "PIECE_CHARS", 100)
    book = tmp_path / "book.txt"
    book.write_text("".join(f"Line {i}.\n" for i in range(400)))
    other = tmp_path / "other.txt"
    other.write_text("Another book.\n")
    pieces = len(
        list(
            records.iter_texts(
                str(book), text_column="text", text_format="document", piece_chars=100
            )
        )
    )
    # The seed that holds out the book's last piece.
    texts = list(corpus.file_corpus(f"{book},{other}", seed=(pieces - 1) % 10).texts())
    held = [t for split, t in texts if split == "validation"]
    assert held[-1].text.endswith("Line 399.\n")
    assert all(t.ends_document for t in held)
    train = [t for split, t in texts if split == "train"]
    ends = [i for i, t in enumerate(train) if t.ends_document]
    assert train[ends[0]].text == "" and train[ends[0] + 1].text == "Another book.\n"


def test_racing_builders_keep_the_first_entry_and_a_stray_folder_is_named(
    monkeypatch, tokenizers, tmp_path
):
    monkeypatch.setattr(token_cache, "_PUBLISH_SECONDS", 0.2)
    monkeypatch.setattr(token_cache, "_WAIT_SECONDS", 0.05)
    docs = _write_docs(tmp_path / "docs.jsonl", 12)
    text = corpus.file_corpus(str(docs))
    cache = str(tmp_path / "cache")
    first = token_cache.token_streams(text, tokenizers["bpe"], separator_id=0, cache_dir=cache)
    folder = first.folder + "-second"

    def build_while_another_finishes(partial):
        shutil.copytree(first.folder, folder)  # the other process moves its entry in first
        return {"mine": True}

    meta, built = token_cache._entry(
        folder, "x", build_while_another_finishes, wait_for_chief=False
    )
    assert not built and "mine" not in meta and meta["train"]
    # Only the two entries: the second builder's own copy is gone.
    assert sorted(os.listdir(cache)) == sorted(
        [os.path.basename(first.folder), os.path.basename(folder)]
    )
    # A folder without meta.json in the entry's place (a run killed between moving its
    # entry in and writing the meta) is not silently read or replaced: it is named.
    os.remove(os.path.join(first.folder, "meta.json"))
    with pytest.raises(TfhfError, match="an unfinished cache entry is in the way; remove it"):
        token_cache.token_streams(text, tokenizers["bpe"], separator_id=0, cache_dir=cache)
    assert [n for n in os.listdir(cache) if ".partial-" in n] == []


def test_blocks_read_from_shards_are_the_blocks_of_each_shard(monkeypatch, tokenizers, tmp_path):
    monkeypatch.setattr(token_cache, "SHARD_TOKENS", 50)
    docs = _write_docs(tmp_path / "docs.jsonl.gz", 0)
    with gzip.open(docs, "wt") as f:
        for i in range(60):
            f.write(json.dumps({"text": f"document {i} says hello to the reader"}) + "\n")
    streams = token_cache.token_streams(
        corpus.file_corpus(str(docs), seed=0),
        tokenizers["bpe"],
        separator_id=0,
        cache_dir=str(tmp_path / "cache"),
    )
    assert len(streams.train) > 4 and all(s.tokens <= 50 for s in streams.train)
    expected = []
    for shard in streams.train:
        ids = _all_ids([shard])
        expected += [ids[i : i + 9].tolist() for i in range(0, len(ids), 9)]
    expected = [block for block in expected if len(block) > 1]
    ds = pipeline.lm_dataset(streams.train, block_size=8, batch_size=1, pad_id=0, training=False)
    found = []
    for inputs, labels, weights in ds:
        n = int(weights.numpy().sum())
        found.append(inputs[0, :1].numpy().tolist() + labels[0, :n].numpy().tolist())
    assert found == expected
    # Training: shards and blocks shuffled through a buffer smaller than the data, and an
    # epoch still holds every block once.
    train = pipeline.lm_dataset(
        streams.train,
        block_size=8,
        batch_size=1,
        pad_id=0,
        training=True,
        seed=3,
        shuffle_buffer=5,
    )
    epoch = []
    for inputs, labels, weights in train.take(len(expected)):
        n = int(weights.numpy().sum())
        epoch.append(inputs[0, :1].numpy().tolist() + labels[0, :n].numpy().tolist())
    assert sorted(epoch) == sorted(expected) and epoch != expected


def test_bad_records_name_their_line_or_are_counted_and_the_cache_remembers(tokenizers, tmp_path):
    docs = _write_docs(tmp_path / "docs.jsonl", 25)
    with open(docs, "a") as f:
        f.write('{"body": "no text"}\n{"text": "the last one"}\n')
    cache = str(tmp_path / "cache")
    text = corpus.file_corpus(str(docs))  # the first records are fine: found later
    with pytest.raises(TfhfError, match=r"docs.jsonl:26: no column 'text'"):
        token_cache.token_streams(text, tokenizers["bpe"], separator_id=0, cache_dir=cache)
    for _ in range(2):  # built, then from the cache
        with records.skipping() as skipped:
            token_cache.token_streams(text, tokenizers["bpe"], separator_id=0, cache_dir=cache)
        assert skipped.count == 1 and skipped.first.startswith(f"{docs}:26")
    with pytest.raises(TfhfError, match=r"docs.jsonl:26: no column 'text'"):
        token_cache.token_streams(text, tokenizers["bpe"], separator_id=0, cache_dir=cache)
    bad_first = tmp_path / "bad_first.jsonl"
    bad_first.write_text('{"body": "no text"}\n')
    with pytest.raises(TfhfError, match=r"bad_first.jsonl:1: no column 'text'"):
        corpus.file_corpus(str(bad_first))


def test_the_tokenizer_trains_on_a_bounded_sample_and_is_kept(tmp_path, capsys):
    docs = tmp_path / "docs.jsonl"
    rng = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    docs.write_text(
        "".join(
            json.dumps({"text": " ".join(rng.choice(words) for _ in range(30))}) + "\n"
            for _ in range(400)
        )
    )
    text = corpus.file_corpus(str(docs))
    seen = []

    def train(texts, folder):
        seen.extend(texts)
        return bpe.train_bpe(seen, vocab_size=300, folder=folder)

    options = dict(
        kind="byte-level BPE",
        settings="vocab 300",
        train=train,
        load=bpe.load_bpe,
        cache_dir=str(tmp_path / "cache"),
        sample_bytes=5_000,
        seed=1,
    )
    first = token_cache.trained_tokenizer(text, folder=tmp_path / "a", **options)
    out = capsys.readouterr().out
    assert "a seeded sample of it, --vocab_sample_bytes=5,000" in out
    assert 4_000 < sum(len(t) for t in seen) <= 5_000
    train_texts, _ = text.gathered()
    assert set(seen) <= set(train_texts) and seen != train_texts[: len(seen)]
    seen.clear()
    second = token_cache.trained_tokenizer(text, folder=tmp_path / "b", **options)
    assert "tokenizer from the cache" in capsys.readouterr().out and not seen
    assert second.get_vocab() == first.get_vocab()


def test_a_worker_that_is_not_the_chief_waits_for_the_chiefs_entry(
    monkeypatch, tokenizers, tmp_path
):
    monkeypatch.setattr(token_cache, "_WAIT_SECONDS", 0.05)
    docs = _write_docs(tmp_path / "docs.jsonl", 12)
    cache = str(tmp_path / "cache")
    found = {}

    def worker():
        found["worker"] = token_cache.token_streams(
            corpus.file_corpus(str(docs)),
            tokenizers["bpe"],
            separator_id=0,
            cache_dir=cache,
            wait_for_chief=True,
        )

    waiting = threading.Thread(target=worker)
    waiting.start()
    waiting.join(0.5)
    assert waiting.is_alive() and not os.path.exists(cache)
    chief = token_cache.token_streams(
        corpus.file_corpus(str(docs)), tokenizers["bpe"], separator_id=0, cache_dir=cache
    )
    waiting.join(10)
    assert found["worker"] == chief
