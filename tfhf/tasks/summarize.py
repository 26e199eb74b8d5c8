"""`--task=summarize`: a BERT encoder-decoder warm-started from one BERT ("bert2bert"),
trained to write a text's summary, and scored with ROUGE against copying the text's start."""

from __future__ import annotations

import dataclasses

import numpy as np

from tfhf.config import setting
from tfhf.generation.seq2seq import TextToText
from tfhf.serving.text_to_text_export import text_to_text_signatures
from tfhf.tasks.registry import register_task
from tfhf.tasks.seq2seq import Seq2SeqConfig, Seq2SeqTask, write_examples
from tfhf.training.evaluation import lead, rouge

EXAMPLES_FILE = "test_examples.txt"
XLA_FROM_EXAMPLES = 256  # test splits this large are summarized with XLA


@dataclasses.dataclass(frozen=True)
class SummarizeConfig(Seq2SeqConfig):
    task: str = "summarize"
    dataset: str = setting(
        "debian_descriptions",
        "'debian_descriptions' (packaged: Debian package descriptions and their synopses) or "
        "a tensorflow-datasets name such as cnn_dailymail, xsum or gigaword. Ignored when "
        "--train_file is set.",
        group="data",
    )
    # Sized for 2 CPU cores, by measured runs (README): one epoch of small batches; the
    # decoder reads the first 32 source tokens (a synopsis rarely needs more) through
    # cross-attention that starts as a copy of its self-attention, without dropout.
    max_source_length: int = 32
    cross_attention_init: str = "self_attention"
    decoder_dropout: float = 0.0
    batch_size: int = 16
    max_steps_per_epoch: int = 0
    learning_rate: float = 6e-4


@register_task("summarize")
class SummarizeTask(Seq2SeqTask):
    """Text in, summary out: teacher-forced training with label smoothing, validation loss
    each epoch, and ROUGE of beam-searched summaries against a lead baseline at the end."""

    config_class = SummarizeConfig
    output_name = "summary"
    metrics_doc = {
        **Seq2SeqTask.metrics_doc,
        **{
            f"{part}.{key}": f"{name} F1 of {whose} (stemmed, Google's rouge-score)"
            for part, whose in (("test", "the summaries"), ("lead_baseline", "the lead"))
            for key, name in (("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"))
        },
        "test.mean_summary_words": "Mean words of the generated summaries.",
        "test.mean_reference_words": "Mean words of the reference summaries.",
        "test.examples": "Test pairs summarized.",
        "lead_baseline.words": "N: the lead baseline copies each source's first N words.",
        "decoding": "The decoding the test split was summarized with.",
    }
    export_signatures = text_to_text_signatures("summary")

    def evaluate(self, model, workdir) -> dict:
        config = self.config
        test = self._evaluated(self.data.test)
        n, sources, references = len(test), test.sources, test.targets
        settings = config.decoding()
        print(
            f"tfhf: summarizing {n} test texts ({settings.num_beams} beams, no repeated "
            f"{settings.no_repeat_ngram_size}-grams)",
            flush=True,
        )
        # XLA's compile time pays off only over many batches.
        jit = n >= XLA_FROM_EXAMPLES
        summaries = TextToText(model, self.source, self.target, jit_compile=jit)(sources, settings)
        words = max(1, round(np.mean([len(r.split()) for r in references])))
        baseline = lead(sources, words)
        write_examples(workdir / EXAMPLES_FILE, sources, references, summaries)
        return {
            "test": {
                **rouge(summaries, references),
                "mean_summary_words": float(np.mean([len(s.split()) for s in summaries])),
                "mean_reference_words": float(np.mean([len(r.split()) for r in references])),
                "examples": n,
            },
            "lead_baseline": {**rouge(baseline, references), "words": words},
            "decoding": dataclasses.asdict(settings),
            "targets_cut": self.truncated,
            "data_source": self.data.provenance,
        }

    def summary(self, metrics: dict) -> str:
        test, baseline = metrics["test"], metrics["lead_baseline"]
        figures = [
            f"{name} {test[key]:.4f} (lead {baseline[key]:.4f})"
            for name, key in (("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL"))
        ]
        return (
            f"tfhf: test {', '.join(figures)}; the lead baseline copies the first "
            f"{baseline['words']} words; examples in {EXAMPLES_FILE}"
        )
