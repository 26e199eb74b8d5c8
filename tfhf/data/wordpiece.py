"""WordPiece vocabularies for BERT models trained from scratch."""

from __future__ import annotations

from pathlib import Path

from tfhf.errors import TfhfError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(
    documents: list[str], *, vocab_size: int, folder: Path, lower_case: bool = True
):
    """Trains a BERT WordPiece vocabulary on `documents` and saves it in `folder`.

    `transformers.BertTokenizerFast.from_pretrained(folder)` loads the result, and
    its `vocab.txt` is what tfhf's in-graph `BertPreprocessor` reads.

    Example:
      >>> tok = train_wordpiece(["a fine film"] * 10, vocab_size=200,
      ...                       folder=Path("tok"))  # doctest: +SKIP
    """
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    if vocab_size < 100:
        raise TfhfError(f"--vocab_size must be at least 100 for WordPiece, got {vocab_size}")
    wordpiece = BertWordPieceTokenizer(lowercase=lower_case, strip_accents=lower_case)
    wordpiece.train_from_iterator(
        documents,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    wordpiece.save_model(str(folder))
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=lower_case)
    tokenizer.save_pretrained(folder)
    return tokenizer
