"""What lm and mlm share: a corpus read as it is needed, a tokenizer trained on a sample of
it (or the model's own), and the corpus tokenized once into `tfhf.data.token_cache`."""

from __future__ import annotations

from pathlib import Path

from tfhf.data import corpus, token_cache
from tfhf.models import loading
from tfhf.tasks.task import Task


class CorpusTask(Task):
    """A task that learns from unlabelled text (its config a `CorpusConfig`)."""

    def load_inputs(self) -> str:
        config = self.config
        # The model first: a mistyped --model stops the run before the data is read.
        self.folder = loading.resolve_model(config.model) if config.model else None
        self.text = corpus.load_corpus(
            dataset=config.dataset,
            train_file=config.train_file,
            validation_file=config.validation_file,
            text_column=config.text_column,
            text_format=config.text_format,
            seed=config.seed,
        )
        return self.text.description

    def _waits_for_chief(self, runtime) -> bool:
        # Workers wait for the chief's entries only in a cache they all see: one named.
        return bool(self.config.token_cache) and not runtime.placement.chief

    def new_tokenizer(self, runtime, scratch: Path, *, kind: str, train, load):
        """A tokenizer of `--vocab_size` trained on a sample of the training text by
        `train(texts, vocab_size=..., folder=...)`, or the cached one of an earlier run."""
        config = self.config
        return token_cache.trained_tokenizer(
            self.text,
            kind=kind,
            settings=f"vocab {config.vocab_size}",
            train=lambda texts, folder: train(texts, vocab_size=config.vocab_size, folder=folder),
            load=load,
            folder=scratch / "tokenizer",
            cache_dir=token_cache.cache_dir(config.token_cache),
            sample_bytes=config.vocab_sample_bytes,
            seed=config.seed,
            wait_for_chief=self._waits_for_chief(runtime),
        )

    def tokenized(self, runtime, separator_id: int) -> token_cache.TokenStreams:
        """The corpus tokenized by `self.tokenizer`, each document followed by
        `separator_id`: from the cache, or tokenized now and kept there."""
        return token_cache.token_streams(
            self.text,
            self.tokenizer,
            separator_id=separator_id,
            cache_dir=token_cache.cache_dir(self.config.token_cache),
            wait_for_chief=self._waits_for_chief(runtime),
        )
