"""Text pairs for sequence-to-sequence tasks: user files, the Debian description index, and
the teacher-forcing pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import VOCAB

from tfhf.data import debian_archive, libreoffice_en_zh
from tfhf.data import debian_descriptions as debian
from tfhf.data.pairs import load_pairs
from tfhf.data.pipeline import seq2seq_dataset
from tfhf.errors import TfhfError
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n):
    return [
        {"article": f"the film {i} was very good", "headline": f"good film {i}"} for i in range(n)
    ]


def test_files_give_three_splits_with_the_named_columns(tmp_path):
    data = load_pairs(
        dataset="",
        train_file=str(write_jsonl(tmp_path / "train.jsonl", rows(50))),
        source_column="article",
        target_column="headline",
        seed=3,
    )
    assert (len(data.train), len(data.validation), len(data.test)) == (40, 5, 5)
    everything = data.train.sources + data.validation.sources + data.test.sources
    assert sorted(everything) == sorted(r["article"] for r in rows(50))
    for split in (data.train, data.validation, data.test):
        for source, target in zip(split.sources, split.targets, strict=True):
            assert source.split()[2] == target.split()[2]  # pairs stay pairs


@pytest.mark.parametrize(
    "broken, message",
    [
        ([{"article": "a text"}], r"train.jsonl: no column 'headline'"),
        ([{"article": "a text", "headline": " "}], r"train.jsonl:1: empty 'headline'"),
        ([{"article": 5, "headline": "x"}], r"train.jsonl:1: 'article' is not a string"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, broken, message):
    path = write_jsonl(tmp_path / "train.jsonl", broken + rows(20))
    with pytest.raises(TfhfError, match=message):
        load_pairs(
            dataset="", train_file=str(path), source_column="article", target_column="headline"
        )


INDEX = """Package: zlib1g-dev
Description-md5: 1
Description-en: compression library - development
 zlib is a library implementing the deflate compression method found in gzip and
 PKZIP, used by many programs that read and write compressed data streams of all kinds.
 .
 This package includes the development support files.

Package: zlib1g
Description-md5: 2
Description-en: compression library - runtime
 zlib is a library implementing the deflate compression method found in gzip and
 PKZIP, used by many programs that read and write compressed data streams of all kinds.
 .
 This package includes the shared library.

Package: tiny
Description-md5: 3
Description-en: too short to summarize
 Only a few words here.

Package: twice
Description-md5: 4
Description-en: the amd64 one
 A package whose long description is given once per architecture in the index, with words
 enough to pass the length filter and a little more to be safe about it.

Package: twice
Description-md5: 5
Description-en: the i386 one
 A package whose long description is given once per architecture in the index, with words
 enough to pass the length filter and a little more to be safe about it, for i386.
"""


def test_the_index_gives_one_pair_per_package_and_first_paragraph():
    entries = debian.parse_descriptions(INDEX)
    assert [e[0] for e in entries] == ["zlib1g-dev", "zlib1g", "tiny", "twice", "twice"]
    assert entries[0][2][1] == "This package includes the development support files."
    pairs = debian.summary_pairs(entries)
    # zlib1g and zlib1g-dev share a first paragraph: the alphabetically first stays.
    assert [p[0] for p in pairs] == ["twice", "zlib1g"]
    assert pairs[1][2] == "compression library - runtime"
    assert pairs[1][1].endswith("\nThis package includes the shared library.")


def test_splits_follow_package_names_alone():
    names = [f"package-{i}" for i in range(2000)]
    splits = [debian.split_of(n) for n in names]
    assert splits == [debian.split_of(n) for n in reversed(names)][::-1]
    shares = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert 0.85 < shares["train"] < 0.95 and 0.03 < shares["test"] < 0.07


@pytest.fixture(scope="module")
def preprocessors(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    source = BertPreprocessor(vocab, lower_case=True, max_seq_length=16)
    target = BertPreprocessor(vocab, lower_case=True, max_seq_length=5)
    return source, target


def test_teacher_forcing_shifts_targets_and_masks_padding(preprocessors):
    source, target = preprocessors
    sources = ["the film was good", "a very dull and boring story"]
    targets = ["good film", "dull boring story plot acting"]  # the second is cut to 3 + [SEP]
    ds = seq2seq_dataset(
        sources,
        targets,
        source_preprocessor=source,
        target_preprocessor=target,
        batch_size=4,
        training=False,
    )
    batches = list(ds.as_numpy_iterator())
    by_source = {}
    for features, labels, weights in batches:
        for row in range(len(labels)):
            key = int(features["attention_mask"][row].sum())
            by_source[key] = (features["decoder_input_ids"][row], labels[row], weights[row])
    expected_ids = target.tokenize(tf.constant(targets)).to_list()
    decoder_in, labels, weights = by_source[6]  # "the film was good" + [CLS] [SEP]
    assert list(decoder_in[: len(expected_ids[0]) - 1]) == expected_ids[0][:-1]
    assert list(labels[: len(expected_ids[0]) - 1]) == expected_ids[0][1:]
    assert weights.sum() == len(expected_ids[0]) - 1
    decoder_in, labels, weights = by_source[8]
    assert len(expected_ids[1]) == 5 and labels[3] == target.sep_id and weights.sum() == 4
    assert (labels[weights == 0] == target.pad_id).all()


def test_a_start_token_that_is_the_padding_id_is_still_read(preprocessors):
    # T5 and Marian start every target with their padding id (decoder_start_token_id).
    source, target = preprocessors

    class PaddingStarts:
        pad_id, unk_id = target.pad_id, target.unk_id

        def tokenize(self, texts):
            ids = target.tokenize(texts)
            return tf.concat([tf.fill([ids.nrows(), 1], self.pad_id), ids[:, 1:]], axis=1)

    ds = seq2seq_dataset(
        ["the film was good", "a very dull and boring story"],
        ["good", "dull boring story"],
        source_preprocessor=source,
        target_preprocessor=PaddingStarts(),
        batch_size=4,
        training=False,
    )
    for features, labels, weights in ds.as_numpy_iterator():
        decoder_in, mask = features["decoder_input_ids"], features["decoder_attention_mask"]
        assert (decoder_in[:, 0] == target.pad_id).all() and (mask[:, 0] == 1).all()
        np.testing.assert_array_equal(mask[:, 1:], decoder_in[:, 1:] != target.pad_id)
        np.testing.assert_array_equal(weights, labels != target.pad_id)


def test_training_batches_reshuffle_and_weigh_real_tokens_to_average_one(preprocessors):
    source, target = preprocessors
    sources = [f"the film was {w}" for w in ("good", "bad", "dull", "fun", "great", "poor")] * 4
    targets = ["good", "bad film", "dull plot acting", "fun", "great story", "poor"] * 4
    ds = seq2seq_dataset(
        sources,
        targets,
        source_preprocessor=source,
        target_preprocessor=target,
        batch_size=4,
        training=True,
        seed=1,
    )
    batches = list(ds.take(12).as_numpy_iterator())
    for _, labels, weights in batches:
        assert weights.mean() == pytest.approx(1.0)
        assert (weights[labels == target.pad_id] == 0).all()
    firsts = [tuple(b[0]["input_ids"][:, 4]) for b in batches]  # the word after "was"
    assert firsts[:6] != firsts[6:]
    np.testing.assert_array_equal(
        batches[0][1],
        next(
            iter(
                seq2seq_dataset(
                    sources,
                    targets,
                    source_preprocessor=source,
                    target_preprocessor=target,
                    batch_size=4,
                    training=True,
                    seed=1,
                ).as_numpy_iterator()
            )
        )[1],
    )


def test_decoder_input_dropout_hides_a_share_of_inputs_but_never_the_start(preprocessors):
    source, _ = preprocessors
    words = "good great lovely fun superb bad awful dull boring poor".split()
    sources = [f"the film was {w}" for w in words] * 6
    targets = [" ".join(words[i : i + 8]) for i in range(len(words))] * 6

    def batches(dropout):
        return list(
            seq2seq_dataset(
                sources,
                targets,
                source_preprocessor=source,
                target_preprocessor=source,
                batch_size=6,
                training=True,
                seed=2,
                decoder_input_dropout=dropout,
            )
            .take(10)
            .as_numpy_iterator()
        )

    kept, dropped, again = batches(0.0), batches(0.3), batches(0.3)
    hidden = real = 0
    for (plain, labels, _), (noisy, noisy_labels, _), (same, _, _) in zip(
        kept, dropped, again, strict=True
    ):
        np.testing.assert_array_equal(labels, noisy_labels)  # only the inputs change
        np.testing.assert_array_equal(noisy["decoder_input_ids"], same["decoder_input_ids"])
        before, after = plain["decoder_input_ids"], noisy["decoder_input_ids"]
        np.testing.assert_array_equal(after[:, 0], before[:, 0])  # the start token stays
        changed = before != after
        assert (after[changed] == source.unk_id).all()
        assert not changed[before == source.pad_id].any()
        hidden += changed.sum()
        real += (before[:, 1:] != source.pad_id).sum()
    assert 0.2 < hidden / real < 0.4


@pytest.mark.parametrize("route", ["apt", "https"])
def test_an_unreachable_debian_mirror_is_reported_in_one_line(tmp_path, monkeypatch, route):
    # A mirror nothing listens on: the real fetch, failing fast.
    monkeypatch.setattr(debian_archive, "APT_MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setattr(debian_archive, "MIRROR", "https://127.0.0.1:9/debian")
    if route == "https":
        monkeypatch.setattr(debian_archive, "apt_available", lambda: False)
    elif not debian_archive.apt_available():
        pytest.skip("no apt and Debian keyring on this machine")
    with pytest.raises(TfhfError, match=r"apt could not fetch Debian's|cannot fetch https") as info:
        debian.fetch_index(tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "debian_descriptions" / debian.SUITE).exists()
    with pytest.raises(TfhfError, match=r"apt could not fetch Debian's|cannot fetch https") as info:
        libreoffice_en_zh.fetch_packages(tmp_path)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "debian_descriptions"]  # nothing half-written
