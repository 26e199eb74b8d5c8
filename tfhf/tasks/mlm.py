"""`--task=mlm`: pretrain a BERT from scratch, or continue pretraining one, as a masked LM."""

from __future__ import annotations

import dataclasses

from tfhf.config import ScratchModelConfig, setting
from tfhf.data import corpus, pipeline
from tfhf.data.masking import MaskingRule
from tfhf.errors import TfhfError
from tfhf.models import loading
from tfhf.models.model_folder import save_pretrained_folder
from tfhf.runner import TrainingData
from tfhf.tasks.registry import register_task
from tfhf.tasks.task import Task
from tfhf.tokenizers import wordpiece
from tfhf.training.evaluation import EvaluateTokensEachEpoch

DEFAULT_CORPUS = "shakespeare+rotten_tomatoes"
MLM_CORPORA = ("shakespeare", "rotten_tomatoes", DEFAULT_CORPUS)


@dataclasses.dataclass(frozen=True)
class MlmConfig(ScratchModelConfig):
    task: str = "mlm"
    model: str = setting(
        "",
        "Empty: a new BERT trained from scratch. Or 'minilm-l6' (packaged), a local "
        "HuggingFace-format BERT folder or a hub id, to continue pretraining it.",
    )
    dataset: str = setting(
        DEFAULT_CORPUS,
        f"Packaged corpora: {', '.join(MLM_CORPORA)}. Ignored when --train_file is set.",
    )
    train_file: str = setting(
        "", "Training text: .txt (one document), or .csv/.tsv/.jsonl with --text_column."
    )
    max_seq_length: int = setting(128, "Tokens per sequence, [CLS] and [SEP] included.")
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    vocab_size: int = setting(
        8192, "From scratch: size of the WordPiece vocabulary trained on the training text."
    )
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    mlm_probability: float = setting(0.15, "Share of tokens (or words) to predict.")
    whole_word_masking: bool = setting(False, "Mask whole words, not word pieces.")

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 0 < self.mlm_probability < 1:
            problems.append(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length must be at least 8, got {self.max_seq_length}")
        return problems


def load_mlm_corpus(config: MlmConfig) -> corpus.Corpus:
    """The user's files, or the packaged corpora named by `--dataset` (joined by '+')."""
    if config.train_file or config.validation_file:
        return corpus.load_corpus(
            dataset="",
            train_file=config.train_file,
            validation_file=config.validation_file,
            text_column=config.text_column,
            seed=config.seed,
        )
    if config.dataset not in MLM_CORPORA:
        raise TfhfError(
            f"unknown corpus '{config.dataset}' for mlm (packaged: {', '.join(MLM_CORPORA)}; "
            "or give --train_file)"
        )
    train, validation, parts = [], [], []
    for name in config.dataset.split("+"):
        if name == "shakespeare":
            plays = corpus.load_shakespeare()
            train += plays.train
            validation += plays.validation
            parts.append(plays.description)
        else:
            from tfhf.data import assets, rotten_tomatoes

            raw = rotten_tomatoes.read_raw(assets.fetch(assets.ROTTEN_TOMATOES))
            reviews, held_out = rotten_tomatoes.pretraining_texts(raw)
            train += reviews
            validation += held_out
            parts.append(
                f"rotten_tomatoes ({len(reviews)} train snippets and plots, "
                f"{len(held_out)} validation snippets; test snippets unused)"
            )
    return corpus.Corpus(train, validation, " + ".join(parts))


def masking_rule(config: MlmConfig, tokenizer) -> MaskingRule:
    """The masking rule for `tokenizer`'s vocabulary and the config's settings."""
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    continues = None
    if config.whole_word_masking:
        flags = [False] * size
        for token, i in vocab.items():
            flags[i] = token.startswith("##")
        continues = tuple(flags)
    return MaskingRule(
        probability=config.mlm_probability,
        mask_id=tokenizer.mask_token_id,
        special_ids=tuple(sorted(set(tokenizer.all_special_ids))),
        vocab_size=size,
        continues_word=continues,
    )


def new_bert(config: MlmConfig, tokenizer):
    """A randomly initialised `TFBertForMaskedLM` sized by the config's model settings."""
    import transformers

    bert_config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        intermediate_size=4 * config.n_embd,
        max_position_embeddings=config.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.TFBertForMaskedLM(bert_config)
    model(model.dummy_inputs, training=False)
    return model


@register_task("mlm")
class MaskedLanguageModelTask(Task):
    """Masked language modelling: unlabelled text in, a pretrained BERT encoder out (no
    export: `--task=classify --model=<this workdir>` fine-tunes it).
    """

    config_class = MlmConfig

    def model_description(self) -> str:
        return self.config.model or "bert from scratch"

    def load_inputs(self) -> str:
        self.text = load_mlm_corpus(self.config)
        self.folder = loading.resolve_model(self.config.model) if self.config.model else None
        return self.text.description

    def build_model(self, runtime, scratch):
        config = self.config
        if self.folder:
            self.tokenizer = wordpiece.load_wordpiece_tokenizer(self.folder)
            with runtime.building():
                model = loading.load_masked_lm(self.folder)
            if config.max_seq_length > model.config.max_position_embeddings:
                raise TfhfError(
                    f"--max_seq_length={config.max_seq_length} exceeds the model's "
                    f"{model.config.max_position_embeddings} positions"
                )
        else:
            print(
                f"tfhf: training a WordPiece vocabulary ({config.vocab_size}) on the training text",
                flush=True,
            )
            self.tokenizer = wordpiece.train_wordpiece(
                self.text.train, vocab_size=config.vocab_size, folder=scratch / "tokenizer"
            )
            with runtime.building():
                model = new_bert(config, self.tokenizer)
        sep = self.tokenizer.sep_token_id
        self.train_ids = corpus.encode_documents(self.tokenizer, self.text.train, separator_id=sep)
        self.val_ids = corpus.encode_documents(
            self.tokenizer, self.text.validation, separator_id=sep
        )
        if len(self.train_ids) < config.max_seq_length - 2:
            raise TfhfError(
                f"{self.text.description}: the training text is {len(self.train_ids)} tokens, "
                f"shorter than one sequence of {config.max_seq_length}"
            )
        if not len(self.val_ids):
            raise TfhfError(f"{self.text.description}: the validation text is empty")
        print(
            f"tfhf: corpus {self.text.description}: {len(self.train_ids):,} training tokens, "
            f"{len(self.val_ids):,} validation tokens",
            flush=True,
        )
        return model

    def training_data(self, runtime) -> TrainingData:
        config, tokenizer = self.config, self.tokenizer
        windows = dict(
            max_seq_length=config.max_seq_length,
            batch_size=config.batch_size,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            pad_id=tokenizer.pad_token_id,
            rule=masking_rule(config, tokenizer),
        )
        train = pipeline.mlm_dataset(self.train_ids, training=True, seed=config.seed, **windows)
        validation = pipeline.mlm_dataset(
            self.val_ids, training=False, seed=config.seed + 1, **windows
        )
        masked = "words" if config.whole_word_masking else "tokens"
        return TrainingData(
            train,
            examples=len(self.train_ids) // (config.max_seq_length - 2),
            whole_batches=True,
            validation=EvaluateTokensEachEpoch(validation),
            unit="tokens",
            units_per_example=config.max_seq_length,
            detail=(
                f" x {config.max_seq_length} tokens, masking {config.mlm_probability:.0%} "
                f"of {masked}"
            ),
        )

    def save(self, model, folder):
        save_pretrained_folder(model, self.tokenizer, folder)

    def summary(self, metrics: dict) -> str:
        validation = metrics["validation"]
        return (
            f"tfhf: validation masked-token accuracy {validation['accuracy']:.4f}, loss "
            f"{validation['loss']:.4f}, perplexity {validation['perplexity']:.2f}"
        )
