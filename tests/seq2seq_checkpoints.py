"""Tiny random-init sequence-to-sequence checkpoints (T5, BART, Marian) with their own
tokenizers, trained offline on a small corpus and saved as transformers saves them."""

from __future__ import annotations

import json
from pathlib import Path

KINDS = ("t5", "bart", "marian")
_LAYERS = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    max_position_embeddings=64,
    dropout=0.0,
    attention_dropout=0.0,
)


def _sentencepiece(corpus: list[str], prefix: Path, vocab_size: int) -> Path:
    """A unigram SentencePiece model with T5's special ids (pad 0, </s> 1, <unk> 2)."""
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def _tokenizer(kind: str, corpus: list[str], folder: Path):
    import sentencepiece
    import tokenizers
    import transformers

    if kind == "t5":
        model = _sentencepiece(corpus, folder / "spiece", 64)
        return transformers.T5Tokenizer(str(model), extra_ids=0, legacy=True)
    if kind == "bart":
        bpe = tokenizers.ByteLevelBPETokenizer()
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        bpe.train_from_iterator(
            corpus, vocab_size=300, special_tokens=specials, show_progress=False
        )
        bpe.save_model(str(folder))
        return transformers.BartTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    # Marian: one SentencePiece model per side, one vocabulary over both.
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for side, size in (("source", 64), ("target", 48)):
        model = _sentencepiece(corpus, folder / side, size)
        processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
        for i in range(processor.get_piece_size()):
            vocab.setdefault(processor.id_to_piece(i), len(vocab))
        model.rename(folder / f"{side}.spm")
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return transformers.MarianTokenizer(
        str(folder / "source.spm"), str(folder / "target.spm"), str(folder / "vocab.json")
    )


def tiny_checkpoint(kind: str, corpus: list[str], folder: Path, *, seed: int = 0) -> Path:
    """`folder` holding a random-init 2-layer `kind` model (width 32) and its tokenizer."""
    import tensorflow as tf
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(kind, corpus, folder)
    ids = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if kind == "t5":
        config = transformers.T5Config(
            d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, dropout_rate=0.0,
            decoder_start_token_id=tokenizer.pad_token_id, **ids,
        )  # fmt: skip
    elif kind == "bart":
        config = transformers.BartConfig(
            bos_token_id=tokenizer.bos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_eos_token_id=None,
            **_LAYERS,
            **ids,
        )
    else:
        config = transformers.MarianConfig(
            decoder_start_token_id=tokenizer.pad_token_id, **_LAYERS, **ids
        )
    tf.keras.utils.set_random_seed(seed)
    model = transformers.TFAutoModelForSeq2SeqLM.from_config(config)
    model(model.dummy_inputs, training=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
