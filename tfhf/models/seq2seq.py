"""Encoder-decoder models (transformers' `TFEncoderDecoderModel`) for sequence-to-sequence
tasks: built and warm-started from a BERT checkpoint, or loaded from a saved one."""

from __future__ import annotations

from pathlib import Path

from tfhf.errors import TfhfError
from tfhf.models import loading
from tfhf.models.sparse_logits import at_weighted_positions
from tfhf.tokenizers.checkpoint_text import SUPPORTED_TYPES as CHECKPOINT_TYPES


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
    folder: Path,
    *,
    start_id: int,
    end_id: int,
    pad_id: int,
    cross_from_self: bool = False,
    tie: bool = False,
    dropout: float | None = None,
):
    """A BERT encoder and a BERT decoder, both starting from the BERT in `folder`
    ("bert2bert"): the decoder gets causal self-attention and new cross-attention layers,
    and shares the encoder's WordPiece vocabulary. The log says which weights start new.

    `start_id` begins every target (BERT's [CLS]), `end_id` ends it ([SEP]). With
    `cross_from_self`, each decoder layer's cross-attention starts as a copy of its
    self-attention instead of at random: encoder and decoder start from the same weights,
    so the copy attends over the source the way the pretrained layer attends over text.
    With `tie`, the decoder uses the encoder's embeddings and layers (see
    `tie_encoder_decoder`): only cross-attention and the LM-head transform are its own.
    `dropout`, when given, is the decoder's dropout rate (else the checkpoint's).
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
    decoder_config = decoder.config
    if dropout is not None:
        decoder_config.hidden_dropout_prob = decoder_config.attention_probs_dropout_prob = dropout
    pair = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder.config, decoder_config
    )
    pair.decoder_start_token_id, pair.eos_token_id, pair.pad_token_id = start_id, end_id, pad_id
    pair.vocab_size = decoder.config.vocab_size
    pair.tie_encoder_decoder = tie
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
    if tie:
        removed = tie_encoder_decoder(model)
        copied += f"; the decoder shares the encoder's weights ({removed:,} fewer)"
    print(
        f"tfhf: encoder and decoder warm-started from {folder}{copied}; new "
        f"{' and '.join(parts)} initialised ({model.count_params():,} parameters)",
        flush=True,
    )
    return model


def logits_at_targets(model, features, labels, weights, training):
    """The training forward pass of an encoder-decoder with its output layer computed only
    where `weights` > 0 (the real target tokens), not at the padding.

    The vocabulary projection and the softmax over it cost the most per target position
    (30,522 words for a BERT decoder), and targets are padded to the longest in the
    batch. Returns `(logits [n, vocab], labels [n], weights [n])` for the `n` real tokens
    (see `at_weighted_positions`).
    """
    import tensorflow as tf

    encoded = model.encoder(
        input_ids=features["input_ids"],
        attention_mask=features["attention_mask"],
        training=training,
    ).last_hidden_state
    projection = getattr(model, "enc_to_dec_proj", None)
    if projection is not None:
        encoded = projection(encoded)
    decoder = model.decoder
    gpt2 = model.config.decoder.model_type == "gpt2"
    main = decoder.transformer if gpt2 else decoder.bert
    hidden = main(
        input_ids=features["decoder_input_ids"],
        attention_mask=features["decoder_attention_mask"],
        encoder_hidden_states=encoded,
        encoder_attention_mask=features["attention_mask"],
        use_cache=False,
        training=training,
    )[0]
    hidden, labels, weights = at_weighted_positions(hidden, labels, weights)
    if gpt2:
        logits = tf.matmul(hidden, main.wte.weights, transpose_b=True)
    else:
        logits = decoder.mlm(sequence_output=hidden, training=training)
    return logits[0], labels, weights


def is_checkpoint(config) -> bool:
    """Whether `config` is a sequence-to-sequence checkpoint's (T5, BART, Marian) rather
    than a `TFEncoderDecoderModel`'s."""
    return config.model_type in CHECKPOINT_TYPES


def freeze_encoder(model) -> None:
    """Trains `model`'s decoder only: no gradient reaches the encoder's layers, and their
    dropout is off, so that in training the decoder reads the same encoder states it will
    read when generating. A bert2bert's encoder is not differentiated at all; the token
    embeddings a T5, BART or Marian encoder shares with its decoder go on training."""
    import tf_keras

    encoder = model.get_encoder()
    encoder.trainable = False
    if is_checkpoint(model.config):
        model.get_input_embeddings().trainable = True
    for layer in encoder._flatten_layers():
        if isinstance(layer, tf_keras.layers.Dropout):
            layer.rate = 0.0


def load_text_to_text_model(folder: Path):
    """The model of a tfhf summarize or translate workdir: a `TFEncoderDecoderModel` or a
    sequence-to-sequence checkpoint."""
    import transformers

    if is_checkpoint(transformers.AutoConfig.from_pretrained(folder)):
        return loading.load_seq2seq_lm(folder)
    return load_encoder_decoder(folder)


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
    if config.tie_encoder_decoder:
        tie_encoder_decoder(model)
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
    dropout: float = 0.1,
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
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
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


# What a tied decoder layer takes from the encoder layer below it: all but cross-attention.
_SHARED_LAYER_PARTS = ("attention", "intermediate", "bert_output")


def _bert_pair(model):
    """(encoder main layer, decoder main layer) of a bert2bert `TFEncoderDecoderModel`."""
    kinds = (model.config.encoder.model_type, model.config.decoder.model_type)
    encoder, decoder = model.encoder.bert, model.decoder.bert
    if kinds != ("bert", "bert") or len(encoder.encoder.layer) != len(decoder.encoder.layer):
        raise TfhfError(
            "tying encoder and decoder needs a BERT encoder and a BERT decoder of as many "
            f"layers, not {' and '.join(kinds)}"
        )
    return encoder, decoder


def _variables_by_module(layer) -> list[list[tuple[str, object]]]:
    """For `layer` and each layer inside it, in tracking order: its weights, by the
    attribute that holds them (`kernel`, `gamma`, ...; not Keras' own `_train_counter`)."""
    import tensorflow as tf

    return [
        sorted(
            (k, v)
            for k, v in vars(module).items()
            if isinstance(v, tf.Variable) and not k.startswith("_")
        )
        for module in layer._flatten_modules()
    ]


def _share_variables(source, target) -> None:
    """Points every variable attribute of `target` (a layer built like `source`) at
    `source`'s variable; the target's own variables are dropped."""
    modules = zip(source._flatten_modules(), target._flatten_modules(), strict=True)
    for (theirs, mine), variables in zip(modules, _variables_by_module(source), strict=True):
        if type(theirs) is not type(mine):
            raise TfhfError(f"cannot tie a {type(mine).__name__} to a {type(theirs).__name__}")
        for name, variable in variables:
            setattr(mine, name, variable)


def tie_encoder_decoder(model) -> int:
    """Makes a bert2bert's decoder use its encoder's embeddings and, layer by layer, its
    self-attention and feed-forward weights, as in Rothe et al. (2020)'s shared BERT2BERT;
    cross-attention and the LM-head transform stay the decoder's own. Returns how many
    parameters the decoder's dropped copies held.

    transformers' TF encoder-decoder has no tying of its own. The layers stay the
    decoder's (a decoder's attention also returns its key/value cache), but their
    variables are the encoder's, so both sides read and train the same ones.
    `save_pretrained` of a tied model would not load untied, so tfhf saves `untied_copy`.
    """
    encoder, decoder = _bert_pair(model)
    before = model.count_params()
    _share_variables(encoder.embeddings, decoder.embeddings)
    for mine, theirs in zip(decoder.encoder.layer, encoder.encoder.layer, strict=True):
        for part in _SHARED_LAYER_PARTS:
            _share_variables(getattr(theirs, part), getattr(mine, part))
    return before - model.count_params()


def untied_copy(model):
    """A plain `TFEncoderDecoderModel` with the values of the tied `model`, each shared
    weight in both places, as transformers saves and loads it (its config still says
    `tie_encoder_decoder`, so tfhf ties it again on loading)."""
    import transformers

    twin = _built(transformers.TFEncoderDecoderModel(config=model.config))
    assigned = set()
    modules = zip(_variables_by_module(model), _variables_by_module(twin), strict=True)
    for theirs, mine in modules:
        for (name, value), (twin_name, variable) in zip(theirs, mine, strict=True):
            if name != twin_name:
                raise TfhfError(f"untying: {name} does not match {twin_name}")
            variable.assign(value)
            assigned.add(id(variable))
    if len(assigned) != len(twin.weights):
        raise TfhfError(f"untying copied {len(assigned)} of the {len(twin.weights)} weights")
    return twin
