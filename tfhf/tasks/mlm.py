"""`--task=mlm`: pretrain a BERT-style encoder from scratch (RoFormer by default, or BERT),
or continue pretraining a BERT, as a masked LM."""

from __future__ import annotations

import dataclasses

from tfhf.config import CorpusConfig, setting
from tfhf.data import pipeline
from tfhf.data.masking import MaskingRule
from tfhf.errors import TfhfError
from tfhf.models import loading
from tfhf.models.model_folder import save_pretrained_folder
from tfhf.models.sparse_logits import masked_lm_logits_at_masks
from tfhf.runner import TrainingData
from tfhf.tasks.corpus_task import CorpusTask
from tfhf.tasks.registry import register_task
from tfhf.tokenizers import wordpiece
from tfhf.training.evaluation import EvaluateTokensEachEpoch
from tfhf.training.flops import transformer_training_flops

DEFAULT_CORPUS = "shakespeare+rotten_tomatoes"
ARCHITECTURES = ("roformer", "bert")


@dataclasses.dataclass(frozen=True)
class MlmConfig(CorpusConfig):
    task: str = "mlm"
    model: str = setting(
        "",
        "Empty: a new encoder trained from scratch (--architecture). Or 'minilm-l6' "
        "(packaged), a local HuggingFace-format BERT folder or a hub id, to continue "
        "pretraining it.",
        group="model",
    )
    architecture: str = setting(
        "roformer",
        "From scratch: 'roformer' (transformers' RoFormer: a BERT whose attention turns "
        "queries and keys by their positions, rotary embeddings, instead of adding learned "
        "positions to the tokens; in short runs it leaves the word-frequency plateau that "
        "'bert' stays on) or 'bert'.",
        group="model",
    )
    dataset: str = setting(
        DEFAULT_CORPUS,
        "Packaged corpora, joined by '+': shakespeare, rotten_tomatoes (the review texts, "
        "test snippets left out). Ignored when --train_file is set.",
        group="data",
    )
    max_seq_length: int = setting(
        128, "Tokens per sequence, [CLS] and [SEP] included.", group="data"
    )
    # Sized for 2 CPU cores by measured runs (README): small batches (more updates for the
    # same tokens) over three epochs fit in 15 minutes.
    batch_size: int = 16
    epochs: int = 3
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    vocab_size: int = setting(
        4096,
        "From scratch: size of the WordPiece vocabulary trained on the training text.",
        group="model",
    )
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    dropout: float = setting(
        0.0,
        "From scratch: dropout rate of the new encoder (hidden states and attention); a short "
        "run learns faster without it.",
        group="model",
    )
    mlm_probability: float = setting(0.15, "Share of tokens (or words) to predict.", group="data")
    whole_word_masking: bool = setting(False, "Mask whole words, not word pieces.", group="data")

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 0 < self.mlm_probability < 1:
            problems.append(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 <= self.dropout < 1:
            problems.append(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.max_seq_length < 8:
            problems.append(f"--max_seq_length must be at least 8, got {self.max_seq_length}")
        if self.architecture not in ARCHITECTURES:
            problems.append(
                f"--architecture must be one of {', '.join(ARCHITECTURES)}, "
                f"got '{self.architecture}'"
            )
        return problems


def new_masked_lm(config: MlmConfig, tokenizer):
    """A randomly initialised masked LM of `config.architecture` (`TFRoFormerForMaskedLM` or
    `TFBertForMaskedLM`) sized by the config's model settings."""
    import transformers

    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=config.n_embd,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        intermediate_size=4 * config.n_embd,
        max_position_embeddings=config.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
    )
    if config.architecture == "roformer":
        # Token embeddings as wide as the hidden states: no projection between them.
        model = transformers.TFRoFormerForMaskedLM(
            transformers.RoFormerConfig(embedding_size=config.n_embd, **sizes)
        )
    else:
        model = transformers.TFBertForMaskedLM(transformers.BertConfig(**sizes))
    model(model.dummy_inputs, training=False)
    return model


@register_task("mlm")
class MaskedLanguageModelTask(CorpusTask):
    """Masked language modelling: unlabelled text in, a pretrained encoder out (no
    export: `--task=classify --model=<this workdir>` fine-tunes it).
    """

    config_class = MlmConfig
    metrics_doc = {
        "validation.loss": "Mean cross-entropy per masked token, in nats (kept epoch).",
        "validation.perplexity": "exp(validation.loss).",
        "validation.accuracy": "Share of masked tokens that were the likeliest.",
        "validation.tokens": "Masked tokens predicted.",
        "train_tokens_per_second": "Training speed, after each epoch's first step.",
        "train_model_flops_per_second": "Model FLOP/s while training: 6 x weights x tokens "
        "a second, attention and the output layer included.",
    }

    def model_description(self) -> str:
        return self.config.model or f"{self.config.architecture} from scratch"

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
            self.tokenizer = self.new_tokenizer(
                runtime,
                scratch,
                kind="WordPiece",
                train=wordpiece.train_wordpiece,
                load=wordpiece.load_wordpiece_tokenizer,
            )
            with runtime.building():
                model = new_masked_lm(config, self.tokenizer)
        self.streams = self.tokenized(runtime, self.tokenizer.sep_token_id)
        if self.streams.train_tokens < config.max_seq_length - 2:
            raise TfhfError(
                f"{self.text.description}: the training text is {self.streams.train_tokens} "
                f"tokens, shorter than one sequence of {config.max_seq_length}"
            )
        if not self.streams.validation_tokens:
            raise TfhfError(f"{self.text.description}: the validation text is empty")
        self.model_config = model.config
        return model

    def training_data(self, runtime) -> TrainingData:
        config, tokenizer = self.config, self.tokenizer
        windows = dict(
            max_seq_length=config.max_seq_length,
            batch_size=config.batch_size,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            pad_id=tokenizer.pad_token_id,
            rule=MaskingRule.for_vocabulary(
                tokenizer.get_vocab(),
                probability=config.mlm_probability,
                mask_id=tokenizer.mask_token_id,
                special_ids=tokenizer.all_special_ids,
                whole_words=config.whole_word_masking,
            ),
            shuffle_buffer=config.shuffle_buffer,
        )
        streams = self.streams
        train = pipeline.mlm_dataset(streams.train, training=True, seed=config.seed, **windows)
        validation = pipeline.mlm_dataset(
            streams.validation, training=False, seed=config.seed + 1, **windows
        )
        masked = "words" if config.whole_word_masking else "tokens"
        return TrainingData(
            train,
            examples=streams.train_tokens // (config.max_seq_length - 2),
            whole_batches=True,
            validation=EvaluateTokensEachEpoch(validation),
            unit="tokens",
            units_per_example=config.max_seq_length,
            detail=(
                f" x {config.max_seq_length} tokens, masking {config.mlm_probability:.0%} "
                f"of {masked}"
            ),
            flops_per_example=config.max_seq_length
            * transformer_training_flops(
                self.model_config,
                context=config.max_seq_length,
                # The output layer runs at the chosen tokens only (see `forward`).
                predicted_share=1.0 if config.jit_compile else config.mlm_probability,
            ),
        )

    def forward(self):
        # The output layer at the chosen tokens only (15% by default), not every position;
        # under XLA every shape must be static, so there it covers every position.
        return None if self.config.jit_compile else masked_lm_logits_at_masks

    def save(self, model, folder):
        save_pretrained_folder(model, self.tokenizer, folder)

    def summary(self, metrics: dict) -> str:
        validation = metrics["validation"]
        return (
            f"tfhf: validation masked-token accuracy {validation['accuracy']:.4f}, loss "
            f"{validation['loss']:.4f}, perplexity {validation['perplexity']:.2f}"
        )
