"""What summarize and translate share: a sequence-to-sequence task (text in, text out) on an
encoder-decoder warm-started from a BERT, with a BERT decoder sharing its vocabulary or a new
GPT-2 decoder with a byte-level BPE of its own; teacher-forced training with label smoothing,
validation loss each epoch, and a SavedModel that turns a text into its target text."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import tensorflow as tf

from tfhf.config import ExportConfig, setting
from tfhf.data import pairs, pipeline
from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import DecodingSettings
from tfhf.models import loading
from tfhf.models.model_folder import (
    TARGET_TOKENIZER,
    save_checkpoint_text_to_text_folder,
    save_text_to_text_folder,
)
from tfhf.models.seq2seq import (
    bert_encoder_gpt2_decoder,
    freeze_encoder,
    load_encoder_decoder,
    load_text_to_text_model,
    logits_at_targets,
    warm_started_bert2bert,
)
from tfhf.runner import TrainingData
from tfhf.serving.text_to_text_export import export_text_to_text
from tfhf.tasks.task import Task
from tfhf.tokenizers.bert_preprocessor import BertPreprocessor
from tfhf.tokenizers.bpe_targets import BpeTargets, train_target_bpe
from tfhf.tokenizers.checkpoint_text import SUPPORTED_TYPES as CHECKPOINT_TYPES
from tfhf.tokenizers.checkpoint_text import checkpoint_texts
from tfhf.tokenizers.wordpiece import tokenizer_files
from tfhf.training.evaluation import EvaluateTokensEachEpoch
from tfhf.training.losses import SmoothedCrossEntropy

SHOWN_EXAMPLES = 20
# What builds a BERT encoder-decoder, and means nothing to a T5, BART or Marian checkpoint.
_PAIR_SETTINGS = (
    "decoder",
    "decoder_layers",
    "decoder_heads",
    "decoder_width",
    "target_vocab_size",
    "cross_attention_init",
    "tie_encoder_decoder",
    "decoder_dropout",
)


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(ExportConfig):
    """The settings summarize and translate share; each task sets its own defaults."""

    model: str = setting(
        "minilm-l6",
        "The BERT the encoder (and a BERT decoder) start from: 'minilm-l6' (packaged), a "
        "local HuggingFace-format folder or a hub id; a T5, BART or Marian checkpoint "
        "(t5-small, facebook/bart-base, Helsinki-NLP/opus-mt-en-zh), trained with its own "
        "tokenizer; or a tfhf summarize or translate workdir, to go on training its model.",
        group="model",
    )
    dataset: str = setting(
        "debian_descriptions",
        f"A packaged dataset ({', '.join(pairs.PACKAGED_PAIRS)}) or a tensorflow-datasets "
        "name. Ignored when --train_file is set.",
        group="data",
    )
    test_file: str = setting("", "Test data; split off the training data if unset.", group="data")
    source_column: str = setting("source", "Column (or tfds feature) with the text.", group="data")
    target_column: str = setting(
        "target", "Column (or tfds feature) with its target text.", group="data"
    )
    max_source_length: int = setting(
        64, "Source tokens kept, [CLS] and [SEP] included; longer texts are cut.", group="data"
    )
    max_target_length: int = setting(
        32,
        "Target tokens, the end token included; longer targets are cut (and counted).",
        group="data",
    )
    cross_attention_init: str = setting(
        "random",
        "--decoder=bert: how the decoder's new cross-attention starts: random, or "
        "self_attention (a copy of the layer's pretrained self-attention).",
        choices=("random", "self_attention"),
        group="model",
    )
    decoder: str = setting(
        "bert",
        "The decoder: bert (warm-started from --model, sharing its WordPiece vocabulary) or "
        "gpt2 (a new GPT-2 with cross-attention, sized by --decoder_layers, --decoder_heads "
        "and --decoder_width, with a byte-level BPE of --target_vocab_size tokens trained on "
        "the training targets).",
        choices=("bert", "gpt2"),
        group="model",
    )
    decoder_layers: int = setting(4, "--decoder=gpt2: the decoder's layers.", group="model")
    decoder_heads: int = setting(4, "--decoder=gpt2: its attention heads.", group="model")
    decoder_width: int = setting(256, "--decoder=gpt2: its width.", group="model")
    target_vocab_size: int = setting(
        8000, "--decoder=gpt2: its BPE vocabulary size.", group="model"
    )
    freeze_encoder: bool = setting(
        True,
        "Train the decoder only; the encoder keeps its pretrained weights (a third less "
        "compute per step). --nofreeze_encoder trains both.",
        group="model",
    )
    tie_encoder_decoder: bool = setting(
        False,
        "--decoder=bert: the decoder shares the encoder's embeddings, self-attention and "
        "feed-forward weights (Rothe et al.'s shared BERT2BERT: half the parameters); only "
        "its cross-attention and LM-head transform are its own. Needs --nofreeze_encoder.",
        group="model",
    )
    decoder_dropout: float = setting(
        0.1,
        "Dropout rate of a new decoder's layers (a warm-started BERT decoder's too); a short "
        "run learns faster without it.",
        group="model",
    )
    decoder_input_dropout: float = setting(
        0.0,
        "Share of the decoder's input tokens replaced by [UNK] in training, so that it learns "
        "to read the source rather than continue its own words.",
        group="optimisation",
    )
    label_smoothing: float = setting(
        0.1,
        "Share of the target probability spread over the vocabulary (0: none).",
        group="optimisation",
    )
    max_steps_per_epoch: int = 300
    learning_rate: float = 3e-4
    warmup_ratio: float = 0.05
    num_beams: int = setting(
        4, "Beam width of the test split's outputs (1: greedy).", group="evaluation"
    )
    length_penalty: float = setting(
        1.0,
        "Beam search: log-probability over length ** this; > 0 favours longer outputs.",
        group="evaluation",
    )
    no_repeat_ngram_size: int = setting(
        3, "No n-gram of this size repeats within an output (0: off).", group="evaluation"
    )
    max_eval_examples: int = setting(
        0,
        "Pairs of the validation split (loss, each epoch) and of the test split (scored at "
        "the end) that are evaluated; 0 means whole splits.",
        group="evaluation",
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 3 <= self.max_source_length <= 512:
            problems.append(
                f"--max_source_length must be in [3, 512], got {self.max_source_length}"
            )
        if not 2 <= self.max_target_length <= 511:
            problems.append(
                f"--max_target_length must be in [2, 511], got {self.max_target_length}"
            )
        if not 0 <= self.decoder_input_dropout < 1:
            problems.append(
                f"--decoder_input_dropout must be in [0, 1), got {self.decoder_input_dropout}"
            )
        if not 0 <= self.decoder_dropout < 1:
            problems.append(f"--decoder_dropout must be in [0, 1), got {self.decoder_dropout}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}")
        gpt2_settings = ("decoder_layers", "decoder_heads", "decoder_width", "target_vocab_size")
        if self.decoder == "gpt2":
            for name in gpt2_settings[:3]:
                if getattr(self, name) < 1:
                    problems.append(f"--{name} must be positive, got {getattr(self, name)}")
            if self.decoder_heads >= 1 and self.decoder_width % self.decoder_heads:
                problems.append(
                    f"--decoder_width ({self.decoder_width}) must be a multiple of "
                    f"--decoder_heads ({self.decoder_heads})"
                )
            if self.target_vocab_size < 258:
                problems.append(
                    f"--target_vocab_size must be at least 258 (256 bytes, <|endoftext|> and "
                    f"<pad>), got {self.target_vocab_size}"
                )
            # A task whose default is self_attention means it for BERT decoders only.
            if self.cross_attention_init != type(self)().cross_attention_init:
                problems.append(
                    f"--cross_attention_init={self.cross_attention_init} needs --decoder=bert"
                )
            if self.tie_encoder_decoder:
                problems.append("--tie_encoder_decoder needs --decoder=bert")
        else:
            defaults = type(self)()
            changed = [n for n in gpt2_settings if getattr(self, n) != getattr(defaults, n)]
            if changed:
                problems.append(
                    f"{', '.join('--' + n for n in changed)}: settings of --decoder=gpt2, "
                    f"not of --decoder={self.decoder}"
                )
        if self.tie_encoder_decoder and self.freeze_encoder:
            problems.append(
                "--tie_encoder_decoder trains the encoder's weights in the decoder; it needs "
                "--nofreeze_encoder"
            )
        if self.max_eval_examples < 0:
            problems.append(
                f"--max_eval_examples must be 0 (all) or positive, got {self.max_eval_examples}"
            )
        return problems + self.decoding().problems()

    def decoding(self) -> DecodingSettings:
        """How the test split is decoded, and the export's default controls."""
        return DecodingSettings(
            max_new_tokens=self.max_target_length,
            num_beams=self.num_beams,
            length_penalty=self.length_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )


def write_examples(path, sources, references, outputs) -> None:
    """The first test pairs with the model's outputs, for a reader."""
    shown = list(zip(sources, references, outputs, strict=True))[:SHOWN_EXAMPLES]
    blocks = [
        f"SOURCE     {source}\nREFERENCE  {reference}\nGENERATED  {output}\n"
        for source, reference, output in shown
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")


class Seq2SeqTask(Task):
    """Text in, text out. A task deriving from it names its config class, the export's
    output (`output_name`), and scores the test split in `evaluate`."""

    config_class = Seq2SeqConfig
    output_name = "target"
    metrics_doc = {
        "validation.loss": "Mean cross-entropy per target token, in nats (kept epoch).",
        "validation.perplexity": "exp(validation.loss).",
        "validation.accuracy": "Share of target tokens that were the likeliest.",
        "validation.tokens": "Target tokens predicted.",
        **{
            f"targets_cut.{split}": f"Targets of the {split} split cut at --max_target_length."
            for split in ("train", "validation", "test")
        },
        "data_source": "Where the pairs came from: the files, or the packaged data's "
        "versions and sha256.",
        "train_examples_per_second": "Training speed in pairs, after each epoch's first step.",
    }
    workdir_files = {
        "test_examples.txt": "The first 20 test pairs: source, reference and the output."
    }
    model_files = {
        "tfhf_text_to_text.json": "The task, source and target lengths, casing and the "
        "decoding the test split was scored with (tfhf.generate's defaults)."
    }

    def load_inputs(self) -> str:
        config = self.config
        # The model first: a mistyped --model stops the run before the data is read.
        self.folder = loading.resolve_model(config.model)
        self.data = pairs.load_pairs(
            dataset=config.dataset,
            train_file=config.train_file,
            validation_file=config.validation_file,
            test_file=config.test_file,
            source_column=config.source_column,
            target_column=config.target_column,
            seed=config.seed,
        )
        data = self.data
        print(
            f"tfhf: data {data.description}: train {len(data.train)}, validation "
            f"{len(data.validation)}, test {len(data.test)} pairs",
            flush=True,
        )
        return data.description

    def build_model(self, runtime, scratch):
        config = self.config
        kind = json.loads((self.folder / "config.json").read_text()).get("model_type")
        self.checkpoint = kind in CHECKPOINT_TYPES
        if self.checkpoint:
            model = self._checkpoint_model(runtime, scratch, kind)
        else:
            model = self._encoder_decoder(runtime, scratch, kind)
        if config.freeze_encoder:
            freeze_encoder(model)
        # A checkpoint's one config covers both sides.
        encoder = getattr(model.config, "encoder", model.config)
        decoder = getattr(model.config, "decoder", model.config)
        limits = {
            "--max_source_length": (config.max_source_length, encoder),
            "--max_target_length": (config.max_target_length + 1, decoder),
        }
        for flag, (length, part) in limits.items():
            # T5's relative positions have no limit.
            positions = getattr(part, "max_position_embeddings", None)
            if positions is not None and length > positions:
                raise TfhfError(f"{flag}={length} exceeds the model's {positions} positions")
        self.truncated = {}
        for name in ("train", "validation", "test"):
            counts = self.target.token_counts(tf.constant(getattr(self.data, name).targets))
            self.truncated[name] = int(np.sum(counts.numpy() > config.max_target_length - 1))
        if any(self.truncated.values()):
            cut = ", ".join(f"{n} {name}" for name, n in self.truncated.items())
            print(
                f"tfhf: targets longer than {config.max_target_length} tokens are cut: {cut}",
                flush=True,
            )
        return model

    def _checkpoint_model(self, runtime, scratch, kind: str):
        """A T5, BART or Marian checkpoint, with its own tokenizer on both sides."""
        import transformers

        config = self.config
        defaults = type(config)()
        changed = [n for n in _PAIR_SETTINGS if getattr(config, n) != getattr(defaults, n)]
        if changed:
            raise TfhfError(
                f"{', '.join('--' + n for n in changed)}: settings of a BERT encoder-decoder; "
                f"--model={config.model} is a {kind} checkpoint with a decoder of its own"
            )
        self.source, self.target = checkpoint_texts(
            self.folder,
            transformers.AutoConfig.from_pretrained(self.folder),
            source_length=config.max_source_length,
            target_length=config.max_target_length + 1,
            asset_dir=scratch / "target_assets",
        )
        self.target_tokenizer = None
        with runtime.building():
            model = loading.load_seq2seq_lm(self.folder)
        print(
            f"tfhf: the {kind} checkpoint in {self.folder}, with its own tokenizer "
            f"({model.count_params():,} parameters)",
            flush=True,
        )
        return model

    def _encoder_decoder(self, runtime, scratch, kind: str):
        """A bert2bert, a BERT encoder with a new GPT-2 decoder, or a saved one of either."""
        config = self.config
        self.vocab_file, self.lower_case = tokenizer_files(self.folder, scratch)
        self.source, self.target = (
            BertPreprocessor(self.vocab_file, lower_case=self.lower_case, max_seq_length=n)
            for n in (config.max_source_length, config.max_target_length + 1)
        )
        self.target_tokenizer = self._target_tokenizer(kind, scratch)
        if self.target_tokenizer is not None:
            # Its in-graph tables live in the scratch folder until the export is written.
            self.target = BpeTargets(
                self.target_tokenizer,
                max_seq_length=config.max_target_length + 1,
                asset_dir=scratch / "target_assets",
            )
        with runtime.building():
            if kind == "encoder-decoder":
                model = load_encoder_decoder(self.folder)
                print(f"tfhf: training on from the encoder-decoder in {self.folder}", flush=True)
            elif config.decoder == "gpt2":
                model = bert_encoder_gpt2_decoder(
                    self.folder,
                    vocab_size=self.target.vocab_size,
                    start_id=self.target.cls_id,
                    end_id=self.target.sep_id,
                    pad_id=self.target.pad_id,
                    n_layer=config.decoder_layers,
                    n_head=config.decoder_heads,
                    n_embd=config.decoder_width,
                    n_positions=config.max_target_length + 1,
                    dropout=config.decoder_dropout,
                )
            else:
                model = warm_started_bert2bert(
                    self.folder,
                    start_id=self.target.cls_id,
                    end_id=self.target.sep_id,
                    pad_id=self.target.pad_id,
                    cross_from_self=config.cross_attention_init == "self_attention",
                    tie=config.tie_encoder_decoder,
                    dropout=config.decoder_dropout,
                )
        return model

    def _target_tokenizer(self, kind: str, scratch):
        """The folder of the target side's own BPE: the saved model's, or one trained here
        for a new GPT-2 decoder; None when the target side shares the WordPiece vocabulary."""
        config = self.config
        if kind == "encoder-decoder":
            saved = self.folder / TARGET_TOKENIZER
            return saved if saved.is_dir() else None
        if config.decoder != "gpt2":
            return None
        print(
            f"tfhf: training a {config.target_vocab_size:,}-token byte-level BPE on the "
            "training targets",
            flush=True,
        )
        folder = scratch / TARGET_TOKENIZER
        train_target_bpe(
            self.data.train.targets, vocab_size=config.target_vocab_size, folder=folder
        )
        return folder

    def _dataset(self, split: pairs.PairSplit, *, training: bool):
        return pipeline.seq2seq_dataset(
            split.sources,
            split.targets,
            source_preprocessor=self.source,
            target_preprocessor=self.target,
            batch_size=self.config.batch_size,
            training=training,
            seed=self.config.seed,
            decoder_input_dropout=self.config.decoder_input_dropout,
        )

    def _evaluated(self, split: pairs.PairSplit) -> pairs.PairSplit:
        return split.take(range(min(len(split), self.config.max_eval_examples or len(split))))

    def training_data(self, runtime) -> TrainingData:
        validation = self._dataset(self._evaluated(self.data.validation), training=False)
        return TrainingData(
            self._dataset(self.data.train, training=True),
            examples=len(self.data.train),
            whole_batches=False,
            validation=EvaluateTokensEachEpoch(validation),
        )

    def loss(self):
        return (
            SmoothedCrossEntropy(self.config.label_smoothing)
            if self.config.label_smoothing
            else None
        )

    def forward(self):
        # Under XLA every shape must be static: the output layer then covers the padding too.
        # A checkpoint's output layer (T5's scaling, BART's logit bias) is its own.
        return None if self.config.jit_compile or self.checkpoint else logits_at_targets

    def save(self, model, folder):
        config = self.config
        settings = {
            "task": self.name,
            "max_source_length": config.max_source_length,
            "max_target_length": config.max_target_length,
            "decoding": dataclasses.asdict(config.decoding()),
        }
        if self.checkpoint:
            save_checkpoint_text_to_text_folder(model, self.folder, folder, settings=settings)
            return
        save_text_to_text_folder(
            model,
            self.vocab_file,
            folder,
            lower_case=self.lower_case,
            target_tokenizer=self.target_tokenizer,
            settings=settings,
        )

    def load_saved(self, folder):
        return load_text_to_text_model(folder)

    def export(self, model, export_dir):
        return export_text_to_text(
            model,
            self.source,
            self.target,
            self.config.decoding(),
            export_dir,
            output_name=self.output_name,
        )
