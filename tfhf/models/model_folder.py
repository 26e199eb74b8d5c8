"""A trained model's folder: the model and its tokenizer in HuggingFace format, written whole
or not at all, and read back."""

from __future__ import annotations

import json
from pathlib import Path

from tfhf.files import replace_folder
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor

# Beside a classifier: how its in-graph preprocessor was set up, so a reload tokenizes alike.
PREPROCESSING_FILE = "tfhf_preprocessing.json"


def save_pretrained_folder(model, tokenizer, folder: Path) -> None:
    """`save_pretrained` model and tokenizer into `folder`, replacing it whole."""

    def fill(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    replace_folder(folder, fill)


def save_classifier_folder(
    model, preprocessor: BertPreprocessor, vocab_file: Path, folder: Path
) -> None:
    """A classifier with its WordPiece tokenizer and preprocessing settings into `folder`,
    replacing it whole; `load_classifier_folder` reads it back."""
    from transformers import BertTokenizerFast

    def fill(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer = BertTokenizerFast(
            vocab_file=str(vocab_file), do_lower_case=preprocessor.lower_case
        )
        tokenizer.save_pretrained(staging)
        settings = {
            "max_seq_length": preprocessor.max_seq_length,
            "lower_case": preprocessor.lower_case,
        }
        (staging / PREPROCESSING_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    replace_folder(folder, fill)


def is_classifier_folder(folder: Path) -> bool:
    """Whether `folder` was written by `save_classifier_folder`."""
    return (folder / PREPROCESSING_FILE).is_file()


def load_classifier_folder(folder: Path):
    """(model, preprocessor, label names) from a folder written by `save_classifier_folder`."""
    import transformers

    settings = json.loads((folder / PREPROCESSING_FILE).read_text())
    model = transformers.TFAutoModelForSequenceClassification.from_pretrained(folder)
    preprocessor = BertPreprocessor(
        folder / "vocab.txt",
        lower_case=settings["lower_case"],
        max_seq_length=settings["max_seq_length"],
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, preprocessor, names


# Beside a text-to-text model: its source and target lengths and casing, for tokenizers
# that work as the training pipeline's did.
TEXT_TO_TEXT_FILE = "tfhf_text_to_text.json"
# A target side with a tokenizer of its own (a GPT-2 decoder's byte-level BPE) keeps it here.
TARGET_TOKENIZER = "target_tokenizer"


def save_text_to_text_folder(
    model,
    vocab_file: Path,
    folder: Path,
    *,
    lower_case: bool,
    settings: dict,
    target_tokenizer: Path | None = None,
) -> None:
    """An encoder-decoder with its WordPiece tokenizer and `settings` (the source and
    target lengths, the decoding defaults) into `folder`, replacing it whole; with
    `target_tokenizer` (a folder), the target side's own tokenizer too."""
    import shutil

    from transformers import BertTokenizerFast

    from tfhf.models.seq2seq import untied_copy

    def fill(staging: Path) -> None:
        (untied_copy(model) if model.config.tie_encoder_decoder else model).save_pretrained(staging)
        BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=lower_case).save_pretrained(
            staging
        )
        if target_tokenizer is not None:
            shutil.copytree(
                target_tokenizer,
                staging / TARGET_TOKENIZER,
                ignore=shutil.ignore_patterns("assets"),
            )
        record = {**settings, "lower_case": lower_case}
        (staging / TEXT_TO_TEXT_FILE).write_text(json.dumps(record, indent=2) + "\n")

    replace_folder(folder, fill)


def save_checkpoint_text_to_text_folder(
    model, tokenizer_folder: Path, folder: Path, *, settings: dict
) -> None:
    """A sequence-to-sequence checkpoint (T5, BART, Marian) with the tokenizer of
    `tokenizer_folder` (the checkpoint it started from) and `settings` into `folder`,
    replacing it whole."""
    from transformers import AutoTokenizer

    def fill(staging: Path) -> None:
        model.save_pretrained(staging)
        AutoTokenizer.from_pretrained(tokenizer_folder).save_pretrained(staging)
        (staging / TEXT_TO_TEXT_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    replace_folder(folder, fill)


def is_text_to_text_folder(folder: Path) -> bool:
    """Whether `folder` was written by `save_text_to_text_folder`."""
    return (folder / TEXT_TO_TEXT_FILE).is_file()


def load_text_to_text_folder(folder: Path):
    """(model, source preprocessor, target preprocessor, settings) from a folder written by
    `save_text_to_text_folder` or `save_checkpoint_text_to_text_folder`."""
    from tfhf.models.seq2seq import is_checkpoint, load_text_to_text_model

    settings = json.loads((folder / TEXT_TO_TEXT_FILE).read_text())
    model = load_text_to_text_model(folder)
    if is_checkpoint(model.config):
        from tfhf.tokenizers.checkpoint_text import checkpoint_texts

        source, target = checkpoint_texts(
            folder,
            model.config,
            source_length=settings["max_source_length"],
            target_length=settings["max_target_length"] + 1,
        )
        return model, source, target, settings
    source, target = (
        BertPreprocessor(
            folder / "vocab.txt", lower_case=settings["lower_case"], max_seq_length=length
        )
        for length in (settings["max_source_length"], settings["max_target_length"] + 1)
    )
    if (folder / TARGET_TOKENIZER).is_dir():
        from tfhf.tokenizers.bpe_targets import BpeTargets

        target = BpeTargets(
            folder / TARGET_TOKENIZER, max_seq_length=settings["max_target_length"] + 1
        )
    return model, source, target, settings
