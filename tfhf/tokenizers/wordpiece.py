"""WordPiece vocabularies for BERT models trained from scratch."""

from __future__ import annotations

import json
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
      >>> import tempfile
      >>> tok = train_wordpiece(["a fine film, fine films"] * 10, vocab_size=100,
      ...                       folder=Path(tempfile.mkdtemp()))
      >>> tok.tokenize("Fine films")
      ['fine', 'films']
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
    # The trainer lists part of the vocabulary (the "##x" pieces) in hash-table order, which
    # changes from one process to the next; sorted ids make a seeded run repeatable. The
    # special tokens keep the first ids.
    vocab_file = folder / "vocab.txt"
    tokens = vocab_file.read_text(encoding="utf-8").splitlines()
    special, learned = tokens[: len(SPECIAL_TOKENS)], sorted(tokens[len(SPECIAL_TOKENS) :])
    vocab_file.write_text("".join(t + "\n" for t in special + learned), encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=lower_case)
    tokenizer.save_pretrained(folder)
    return tokenizer


def load_wordpiece_tokenizer(folder: Path):
    """The BERT tokenizer of a model folder; refuses tokenizers without [MASK]."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.mask_token_id is None or tokenizer.sep_token_id is None:
        raise TfhfError(f"{folder}: tokenizer has no [MASK] or [SEP] token; not a BERT tokenizer")
    return tokenizer


def tokenizer_files(folder: Path, workspace: Path) -> tuple[Path, bool]:
    """(WordPiece vocab file, lower-case flag) for the model in `folder`.

    A folder with only `tokenizer.json` gets its vocabulary written to `workspace`.
    """
    lower_case = True
    config_file = folder / "tokenizer_config.json"
    if config_file.exists():
        lower_case = bool(json.loads(config_file.read_text()).get("do_lower_case", True))
    if (folder / "vocab.txt").exists():
        return folder / "vocab.txt", lower_case
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = spec.get("model", {})
    if model.get("type") != "WordPiece":
        raise TfhfError(
            f"model folder {folder}: tokenizer is {model.get('type')}, but classify needs a "
            "WordPiece (BERT-style) vocabulary"
        )
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    workspace.mkdir(parents=True, exist_ok=True)
    out = workspace / "vocab.txt"
    out.write_text("".join(token + "\n" for token, _ in vocab), encoding="utf-8")
    normalizer = spec.get("normalizer") or {}
    return out, bool(normalizer.get("lowercase", lower_case))
