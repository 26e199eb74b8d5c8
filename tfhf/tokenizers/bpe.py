"""Byte-level BPE tokenizers for GPT-2: trained from scratch on a corpus, or loaded from a model."""

from __future__ import annotations

from pathlib import Path

from tfhf.errors import TfhfError

END_OF_TEXT = "<|endoftext|>"


def train_bpe(documents: list[str], *, vocab_size: int, folder: Path, pad_token: str = ""):
    """Trains a byte-level BPE on `documents` and saves it in `folder` as a GPT-2 tokenizer.

    With `pad_token`, that token is in the vocabulary too (id 1) and is the tokenizer's
    padding token.

    `transformers.GPT2TokenizerFast.from_pretrained(folder)` loads the result.

    Example:
      >>> import tempfile
      >>> tok = train_bpe(["To be, or not to be"] * 50, vocab_size=300,
      ...                 folder=Path(tempfile.mkdtemp()))
      >>> tok.convert_ids_to_tokens(tok("To be")["input_ids"])
      ['To', 'Ġbe']
    """
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    special = [END_OF_TEXT] + ([pad_token] if pad_token else [])
    if vocab_size < 256 + len(special):
        raise TfhfError(
            f"--vocab_size must be at least {256 + len(special)} (256 bytes + "
            f"{' + '.join(special)}), got {vocab_size}"
        )
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        documents,
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=special,
    )
    folder.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(folder))
    tokenizer = GPT2TokenizerFast(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        add_prefix_space=False,
        **({"pad_token": pad_token} if pad_token else {}),
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def load_bpe(folder: Path):
    """The GPT-2 tokenizer saved in a model folder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.eos_token_id is None:
        raise TfhfError(f"{folder}: tokenizer has no end-of-text token")
    return tokenizer
