"""Encoder-decoder models (transformers' `TFEncoderDecoderModel`) for sequence-to-sequence
tasks: built and warm-started from a BERT checkpoint, or loaded from a saved one."""

from __future__ import annotations

from pathlib import Path

from tfhf.errors import TfhfError
from tfhf.models import loading


def _relative_names(weights, depth: int) -> dict[str, object]:
    """Weights by name with the first `depth` scopes dropped (the model's own names)."""
    return {w.name.split("/", depth)[depth]: w for w in weights}


def _copy_weights(source, target, *, depth: int) -> list[str]:
    """Copies `source`'s weights into the matching weights of `target` (a part of an
    encoder-decoder, whose names carry `depth` scopes); returns the names left as they were."""
    given = _relative_names(source.weights, 1)
    untouched = []
    for name, weight in _relative_names(target.weights, depth).items():
        if name in given and tuple(given[name].shape) == tuple(weight.shape):
            weight.assign(given[name])
        else:
            untouched.append(name)
    return untouched


def _built(model):
    import tensorflow as tf

    ids = tf.constant([[1, 2, 3]], tf.int32)
    model(input_ids=ids, attention_mask=tf.ones_like(ids), decoder_input_ids=ids, training=False)
    return model


def warm_started_bert2bert(
    folder: Path, *, start_id: int, end_id: int, pad_id: int, cross_from_self: bool = False
):
    """A BERT encoder and a BERT decoder, both starting from the BERT in `folder`
    ("bert2bert"): the decoder gets causal self-attention and new cross-attention layers,
    and shares the encoder's WordPiece vocabulary. The log says which weights start new.

    `start_id` begins every target (BERT's [CLS]), `end_id` ends it ([SEP]). With
    `cross_from_self`, each decoder layer's cross-attention starts as a copy of its
    self-attention instead of at random: encoder and decoder start from the same weights,
    so the copy attends over the source the way the pretrained layer attends over text.
    """
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    if config.model_type != "bert":
        raise TfhfError(
            f"model folder {folder}: a {config.model_type} checkpoint; a warm-started "
            "encoder-decoder needs a BERT"
        )
    encoder = loading.load_encoder(folder)
    decoder, fresh = loading.load_decoder_with_cross_attention(folder)
    pair = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder.config, decoder.config
    )
    pair.decoder_start_token_id, pair.eos_token_id, pair.pad_token_id = start_id, end_id, pad_id
    pair.vocab_size = decoder.config.vocab_size
    model = _built(transformers.TFEncoderDecoderModel(config=pair))
    # The pair is built under its own name scopes, so that save_pretrained and
    # from_pretrained agree; the checkpoint's weights are copied in by name.
    new = _copy_weights(encoder, model.encoder, depth=2)
    new += _copy_weights(decoder, model.decoder, depth=2)
    unexpected = [n for n in new if not any(w in n for w in ("crossattention", "cls/", "pooler"))]
    if cross_from_self:
        by_name = {w.name: w for w in model.decoder.weights}
        for name, weight in by_name.items():
            if "/crossattention/" in name:
                weight.assign(by_name[name.replace("/crossattention/", "/attention/")])
    if unexpected:
        raise TfhfError(f"model folder {folder}: weights do not fit the model: {unexpected[:3]}")
    parts = ["LM-head transform"] if any("cls" in n for n in fresh) else []
    if not cross_from_self:
        parts.insert(0, "cross-attention")
    copied = "; cross-attention copied from self-attention" if cross_from_self else ""
    print(
        f"tfhf: encoder and decoder warm-started from {folder}{copied}; new "
        f"{' and '.join(parts)} initialised ({model.count_params():,} parameters)",
        flush=True,
    )
    return model


def load_encoder_decoder(folder: Path):
    """A saved `TFEncoderDecoderModel` (a tfhf summarize workdir's model, for one)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    if config.model_type != "encoder-decoder":
        raise TfhfError(f"model folder {folder}: not an encoder-decoder model")
    model, info = transformers.TFEncoderDecoderModel.from_pretrained(
        folder, output_loading_info=True
    )
    if info["missing_keys"]:
        raise TfhfError(
            f"model folder {folder}: weights do not match the config; missing "
            f"{info['missing_keys'][:3]}"
        )
    return model


def bert_encoder_gpt2_decoder(
    folder: Path,
    *,
    vocab_size: int,
    start_id: int,
    end_id: int,
    pad_id: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    n_positions: int,
):
    """The BERT in `folder` as the encoder and a new GPT-2 (`TFGPT2LMHeadModel` with
    cross-attention) as the decoder, for a target side with its own byte-level BPE. When
    the widths differ, the encoder's states reach the decoder through a new projection."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    if config.model_type != "bert":
        raise TfhfError(
            f"model folder {folder}: a {config.model_type} checkpoint; the encoder must be a BERT"
        )
    encoder = loading.load_encoder(folder)
    decoder = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        add_cross_attention=True,
        is_decoder=True,
        bos_token_id=start_id,
        eos_token_id=end_id,
        pad_token_id=pad_id,
    )
    pair = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder)
    pair.decoder_start_token_id, pair.eos_token_id, pair.pad_token_id = start_id, end_id, pad_id
    pair.vocab_size = vocab_size
    model = _built(transformers.TFEncoderDecoderModel(config=pair))
    unexpected = [n for n in _copy_weights(encoder, model.encoder, depth=2) if "pooler" not in n]
    if unexpected:
        raise TfhfError(f"model folder {folder}: weights do not fit the model: {unexpected[:3]}")
    print(
        f"tfhf: encoder warm-started from {folder}; new GPT-2 decoder ({n_layer} layers, width "
        f"{n_embd}, {n_head} heads, {vocab_size:,} target tokens) with cross-attention "
        f"({model.count_params():,} parameters)",
        flush=True,
    )
    return model
