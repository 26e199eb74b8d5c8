"""The translate task end to end on a tiny BERT encoder and a tiny GPT-2 decoder writing
Chinese: BLEU and chrF greedy and with beams, the learning curve, the export's parity in a
TensorFlow-only process, and UTF-8 that stays valid when output stops inside a character."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import make_texts, run_bare_python

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import DecodingSettings, TextToText
from tfhf.models.model_folder import load_text_to_text_folder
from tfhf.tasks.translate import EXAMPLES_FILE, TranslateConfig
from tfhf.tokenizers.bpe_targets import BpeTargets, train_target_bpe
from tfhf.train import run

# A review translates to its verdict: 好评 (a good review) or 差评 (a bad one).
VERDICTS = {"positive": "好评", "negative": "差评"}


def pairs_file(path: Path, n: int, seed: int) -> Path:
    rows = [{"en": text, "zh": VERDICTS[label]} for text, label in make_texts(n, seed)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("translate")
    config = TranslateConfig(
        model=str(tiny_model_dir),
        train_file=str(pairs_file(tmp_path / "train.jsonl", 160, seed=1)),
        validation_file=str(pairs_file(tmp_path / "validation.jsonl", 16, seed=2)),
        test_file=str(pairs_file(tmp_path / "test.jsonl", 12, seed=3)),
        source_column="en",
        target_column="zh",
        max_source_length=16,
        max_target_length=8,
        decoder_layers=1,
        decoder_heads=4,
        decoder_width=64,
        target_vocab_size=300,
        freeze_encoder=False,  # the tiny encoder is random: it must learn to read too
        label_smoothing=0.0,
        batch_size=8,
        epochs=8,
        max_steps_per_epoch=0,
        learning_rate=3e-3,
        num_beams=2,
        curve_examples=8,
        seed=11,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
    )
    return config, run(config)


def test_translation_scores_and_learning_curve(trained):
    config, metrics = trained
    test = metrics["test"]
    assert test["examples"] == 12
    assert set(test) == {"greedy", "beam", "examples"}
    assert test["greedy"]["decoding"]["num_beams"] == 1 and test["beam"]["decoding"]["num_beams"]
    for scores in (test["greedy"], test["beam"]):
        assert 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
    curve = metrics["learning_curve"]
    assert [point["epoch"] for point in curve] == list(range(1, config.epochs + 1))
    # The verdict is learnt: chrF of the greedy validation translations rises well.
    assert curve[-1]["chrf"] > curve[0]["chrf"] + 20
    assert test["greedy"]["chrf"] > 80
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text("utf-8").strip().split("\n\n")
    assert len(blocks) == 12


def test_the_saved_model_has_its_own_bpe_and_translates_as_the_run_reported(trained):
    config, _ = trained
    model, source, target, _ = load_text_to_text_folder(Path(config.workdir) / "model")
    assert model.config.decoder.model_type == "gpt2"
    assert model.config.decoder.vocab_size == target.vocab_size <= config.target_vocab_size
    assert target.pad_id != target.sep_id  # padding never hides the end token from the loss
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text("utf-8").strip().split("\n\n")
    sources = [b.splitlines()[0].split(None, 1)[1] for b in blocks]
    reported = [(b.splitlines()[2].split(None, 1) + [""])[1] for b in blocks]
    ours = TextToText(model, source, target, jit_compile=False)
    assert ours(sources, config.decoding()) == reported


_CLIENT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops, as TF Serving links them)
    path, texts = sys.argv[1], json.loads(sys.argv[2])
    loaded = tf.saved_model.load(path)  # kept: its variables live as long as it does
    generate = loaded.generate  # the signature's function, with defaults
    def run(generate=generate, **controls):
        given = {k: tf.constant([v]) for k, v in controls.items()}
        out = generate(tf.constant(texts), **given)["translation"].numpy()
        return [t.decode("utf-8") for t in out]  # strict: invalid UTF-8 would raise
    def xla(**controls):  # the XLA twin
        return run(loaded.generate_xla, **controls)
    def stream(chunk, **controls):
        given = {k: tf.constant([v]) for k, v in controls.items()}
        given["chunk_tokens"] = tf.constant([chunk])
        out = loaded.stream_start(tf.constant(texts), **given)
        shown = [[t.decode("utf-8") for t in out["translation"].numpy()]]
        while not out["finished"].numpy().all():
            state = {k: v for k, v in out.items() if k not in ("translation", "finished")}
            out = loaded.stream_continue(**state, **given)
            shown.append([t.decode("utf-8") for t in out["translation"].numpy()])
        return shown
    print(json.dumps({
        "stream_defaults": stream(1),
        "stream_greedy": stream(3, num_beams=1),
        "defaults": run(),
        "greedy": run(num_beams=1),
        "one_token": run(num_beams=1, max_new_tokens=1),
        "sampled": run(num_beams=1, temperature=1.5, seed=5),
        "xla_defaults": xla(),
        "xla_greedy": xla(num_beams=1),
        "xla_one_token": xla(num_beams=1, max_new_tokens=1),
        "xla_sampled": xla(num_beams=1, temperature=1.5, seed=5),
        "foreign": sorted(m for m in sys.modules if m.split(".")[0] in ("tfhf", "transformers")),
    }))
    """
)


def test_the_export_translates_as_tfhf_does_in_a_tensorflow_only_process(trained):
    config, metrics = trained
    texts = [text for text, _ in make_texts(6, seed=5)]
    out = run_bare_python(_CLIENT, metrics["export"], json.dumps(texts))
    assert out["foreign"] == []
    model, source, target, _ = load_text_to_text_folder(Path(config.workdir) / "model")
    ours = TextToText(model, source, target, jit_compile=False)
    assert out["defaults"] == ours(texts, config.decoding())
    assert out["greedy"] == ours(texts, DecodingSettings(max_new_tokens=8))
    assert set(out["greedy"]) == set(VERDICTS.values())  # both verdicts among six reviews
    # Sampling draws its noise from (seed, step) alone: tfhf samples what the export does.
    sampled = dataclasses.replace(config.decoding(), num_beams=1, temperature=1.5, seed=5)
    assert out["sampled"] == ours(texts, sampled)
    # The XLA twin writes what the plain signature writes, one token or all.
    for decoding in ("defaults", "greedy", "one_token", "sampled"):
        assert out[f"xla_{decoding}"] == out[decoding]
    # Streamed, a chunk of tokens a call: the last chunk is one call's text, and each
    # chunk before shows how it starts (a character whose bytes are not all in yet shows
    # as U+FFFD, which tfhf.serve holds back).
    for streamed, whole in (("stream_defaults", "defaults"), ("stream_greedy", "greedy")):
        shown = out[streamed]
        assert shown[-1] == out[whole]
        for before in shown[:-1]:
            assert all(
                w.startswith(b.rstrip("\ufffd")) for b, w in zip(before, out[whole], strict=True)
            )


def test_output_cut_inside_a_character_is_still_valid_utf8(tmp_path):
    train_target_bpe(["plain ascii text"] * 4, vocab_size=262, folder=tmp_path / "bpe")
    targets = BpeTargets(tmp_path / "bpe", max_seq_length=16, asset_dir=tmp_path / "assets")
    ids = targets.tokenize(tf.constant(["好a"])).to_tensor()[:, 1:-1]  # 3 byte tokens, "a"
    assert ids.shape == (1, 4)
    whole = targets.detokenize(ids).numpy()[0].decode("utf-8")
    cut = targets.detokenize(ids[:, :2]).numpy()[0].decode("utf-8")  # two of 好's three bytes
    assert whole == "好a"
    assert cut == "\ufffd"


def test_a_missing_target_column_is_named_before_anything_is_written(tiny_model_dir, tmp_path):
    config = TranslateConfig(
        model=str(tiny_model_dir),
        train_file=str(pairs_file(tmp_path / "train.jsonl", 20, seed=1)),
        source_column="en",
        target_column="fr",
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
    )
    with pytest.raises(TfhfError, match="fr"):
        run(config)
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


def test_the_run_holds_what_the_reference_documents(trained):
    from pathlib import Path

    from conftest import assert_run_is_documented, assert_signatures_are_documented

    from tfhf.tasks.translate import TranslateTask

    config, metrics = trained
    assert "validation.bleu" in TranslateTask.metrics_doc and config.curve_examples
    assert "bleu" in metrics["validation"]  # the optional entries are there when asked for
    assert_run_is_documented(Path(config.workdir), metrics)
    assert_signatures_are_documented(Path(metrics["export"]), TranslateTask.export_signatures)
