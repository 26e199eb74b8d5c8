"""The summarize task end to end in-process on a tiny BERT: training, ROUGE against the lead
baseline, the examples file, the saved model, and refusals."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import NEGATIVE, POSITIVE, compiles_with_xla, make_texts, run_bare_python

from tfhf.errors import TfhfError
from tfhf.generation.seq2seq import DecodingSettings, TextToText
from tfhf.models.model_folder import load_text_to_text_folder
from tfhf.tasks.summarize import EXAMPLES_FILE, SummarizeConfig
from tfhf.train import run

CUES = set(POSITIVE + NEGATIVE)


def pairs_file(path: Path, n: int, seed: int) -> Path:
    """Texts and, as their summary, the words in them that carry their tone."""
    rows = []
    for text, _ in make_texts(n, seed):
        cues = [w for w in text.split() if w in CUES]
        rows.append({"text": text, "summary": " ".join(cues)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_config(tiny_model_dir, tmp_path, **overrides) -> SummarizeConfig:
    values = dict(
        model=str(tiny_model_dir),
        train_file=str(pairs_file(tmp_path / "train.jsonl", 160, seed=1)),
        validation_file=str(pairs_file(tmp_path / "validation.jsonl", 16, seed=2)),
        test_file=str(pairs_file(tmp_path / "test.jsonl", 24, seed=3)),
        source_column="text",
        target_column="summary",
        max_source_length=16,
        max_target_length=6,
        batch_size=8,
        epochs=20,
        max_steps_per_epoch=0,
        learning_rate=5e-3,
        warmup_ratio=0.1,
        decoder_dropout=0.0,
        seed=11,
        workdir=str(tmp_path / "run"),
        export_dir=str(tmp_path / "export"),
    )
    values.update(overrides)
    return SummarizeConfig(**values)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    config = tiny_config(tiny_model_dir, tmp_path_factory.mktemp("summarize"))
    return config, run(config)


def test_training_learns_to_pick_the_words_that_matter(trained):
    _, metrics = trained
    losses = metrics["train_loss_per_epoch"]
    assert losses[-1] < 0.6 * losses[0]
    test, lead = metrics["test"], metrics["lead_baseline"]
    assert test["examples"] == 24
    assert test["rougeL"] > lead["rougeL"] + 0.15  # the cue words are rarely the first ones
    assert test["rouge1"] >= test["rouge2"]
    assert metrics["decoding"]["num_beams"] == 4


def test_the_examples_file_shows_sources_references_and_summaries(trained):
    config, _ = trained
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    assert len(blocks) == 20
    first = blocks[0].splitlines()
    assert [line.split()[0] for line in first] == ["SOURCE", "REFERENCE", "GENERATED"]


def test_the_saved_model_writes_the_summaries_the_run_reported(trained):
    config, _ = trained
    model, source, target, settings = load_text_to_text_folder(Path(config.workdir) / "model")
    assert (settings["max_source_length"], settings["max_target_length"]) == (16, 6)
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    sources = [b.splitlines()[0].split(None, 1)[1] for b in blocks]
    reported = [(b.splitlines()[2].split(None, 1) + [""])[1] for b in blocks]
    again = TextToText(model, source, target, jit_compile=False)(sources, config.decoding())
    assert again == reported


def test_targets_longer_than_the_limit_are_cut_and_counted(tiny_model_dir, tmp_path):
    config = tiny_config(
        tiny_model_dir,
        tmp_path,
        max_target_length=2,
        epochs=1,
        max_steps_per_epoch=2,
        max_eval_examples=2,
        num_beams=1,
    )
    metrics = run(config)
    cut = metrics["targets_cut"]
    expected = sum(
        len(json.loads(line)["summary"].split()) > 1
        for line in Path(config.train_file).read_text().splitlines()
    )
    assert cut["train"] == expected > 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(target_column="headline"), "no column 'headline'"),
        (dict(max_target_length=1), r"--max_target_length must be in \[2, 511\]"),
        (dict(max_source_length=128), "--max_source_length=128 exceeds the model's 64 positions"),
        (dict(num_beams=0), "--num_beams must be positive"),
        (dict(label_smoothing=1.0), r"--label_smoothing must be in \[0, 1\)"),
        (dict(cross_attention_init="zeros"), "--cross_attention_init must be one of"),
        (dict(decoder_width=128), "--decoder_width: settings of --decoder=gpt2, not of"),
        (dict(decoder="gpt2", decoder_width=30), r"--decoder_width \(30\) must be a multiple"),
        (dict(decoder="gpt2", target_vocab_size=257), "--target_vocab_size must be at least 258"),
        (
            dict(decoder="gpt2", cross_attention_init="random"),
            "--cross_attention_init=random needs --decoder=bert",
        ),
        (dict(tie_encoder_decoder=True), "--tie_encoder_decoder .* needs --nofreeze_encoder"),
        (
            dict(decoder="gpt2", tie_encoder_decoder=True, freeze_encoder=False),
            "--tie_encoder_decoder needs --decoder=bert",
        ),
    ],
)
def test_bad_settings_stop_before_the_workdir_exists(tiny_model_dir, tmp_path, overrides, message):
    with pytest.raises(TfhfError, match=message) as info:
        run(tiny_config(tiny_model_dir, tmp_path, **overrides))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "export").exists()


def test_cross_attention_can_start_as_a_copy_of_self_attention(tiny_model_dir):
    from tfhf.models.seq2seq import warm_started_bert2bert

    model = warm_started_bert2bert(
        tiny_model_dir, start_id=2, end_id=3, pad_id=0, cross_from_self=True
    )
    weights = {w.name: w.numpy() for w in model.decoder.weights}
    copies = [n for n in weights if "/crossattention/" in n]
    assert copies
    for name in copies:
        np.testing.assert_array_equal(
            weights[name], weights[name.replace("/crossattention/", "/attention/")]
        )


def test_a_frozen_encoder_trains_nothing_and_drops_nothing():
    import tensorflow as tf
    import transformers

    from tfhf.models.seq2seq import freeze_encoder

    encoder = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5,
    )  # fmt: skip
    decoder = transformers.BertConfig(
        **{**encoder.to_dict(), "is_decoder": True, "add_cross_attention": True}
    )
    model = transformers.TFEncoderDecoderModel(
        config=transformers.EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    )
    ids = tf.constant([[2, 7, 9, 11, 3]])
    inputs = dict(input_ids=ids, attention_mask=tf.ones_like(ids), decoder_input_ids=ids)
    model(**inputs)
    freeze_encoder(model)
    assert model.encoder.trainable_variables == [] and model.decoder.trainable_variables
    states = [
        model.encoder(input_ids=ids, training=training).last_hidden_state
        for training in (True, False)
    ]
    np.testing.assert_array_equal(*states)
    # The decoder keeps its dropout.
    logits = [model(**inputs, training=True).logits for _ in range(2)]
    assert not np.allclose(*logits)


def test_a_tied_decoder_trains_the_encoders_weights_and_saves_as_a_plain_model(
    tiny_model_dir, tmp_path
):
    import tensorflow as tf
    import transformers

    from tfhf.models.model_folder import save_text_to_text_folder
    from tfhf.models.seq2seq import warm_started_bert2bert

    untied = warm_started_bert2bert(tiny_model_dir, start_id=2, end_id=3, pad_id=0)
    model = warm_started_bert2bert(tiny_model_dir, start_id=2, end_id=3, pad_id=0, tie=True)
    encoder_weights = model.encoder.count_params() - 32 * 32 - 32  # less the unused pooler
    # Only cross-attention and the LM-head transform are the decoder's own.
    own = [w.name for w in model.decoder.weights if "/encoder/bert/" not in w.name]
    assert own and all("crossattention" in n or "/mlm___cls/" in n for n in own)
    assert untied.count_params() - model.count_params() == encoder_weights
    ids = tf.constant([[2, 8, 20, 13, 3]])
    inputs = dict(input_ids=ids, attention_mask=tf.ones_like(ids), decoder_input_ids=ids[:, :3])
    query = model.encoder.bert.encoder.layer[0].attention.self_attention.query.kernel
    with tf.GradientTape() as tape:
        decoder_only = model.decoder(
            input_ids=ids[:, :3], encoder_hidden_states=tf.zeros([1, 5, 32])
        ).logits
    assert tape.gradient(decoder_only, query) is not None  # the decoder trains the encoder's

    lengths = {"max_source_length": 16, "max_target_length": 6}
    save_text_to_text_folder(
        model, tiny_model_dir / "vocab.txt", tmp_path / "model", lower_case=True, settings=lengths
    )
    plain = transformers.TFEncoderDecoderModel.from_pretrained(tmp_path / "model")
    assert plain.count_params() == untied.count_params()  # loads as a plain pair
    np.testing.assert_allclose(plain(**inputs).logits, model(**inputs).logits, atol=1e-5)
    reloaded, *_ = load_text_to_text_folder(tmp_path / "model")
    assert reloaded.count_params() == model.count_params()  # and tfhf ties it again
    np.testing.assert_allclose(reloaded(**inputs).logits, model(**inputs).logits, atol=1e-5)


# Runs in a fresh interpreter that imports only tensorflow and tensorflow_text.
_CLIENT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    loaded = tf.saved_model.load(sys.argv[1])
    texts = json.loads(sys.argv[2])
    TYPES = dict(length_penalty=tf.float32, temperature=tf.float32, top_p=tf.float32)

    def run(texts=texts, signature="serving_default", **controls):
        # Python's signature call wants every input; TF Serving fills in the defaults.
        inputs = dict(max_new_tokens=[6], num_beams=[4], length_penalty=[1.0],
                      temperature=[0.0], top_k=[0], top_p=[1.0], seed=[0])
        inputs.update(controls)
        inputs = {k: tf.constant(v, TYPES.get(k, tf.int32)) for k, v in inputs.items()}
        serve = loaded.signatures[signature]
        try:
            return [t.decode() for t in serve(text=tf.constant(texts), **inputs)["summary"].numpy()]
        except tf.errors.InvalidArgumentError as e:
            # TF Serving returns the same "assertion failed: [...]" line to its client.
            return "error: " + next(l for l in e.message.splitlines() if "assertion" in l)

    start, more = loaded.signatures["stream_start"], loaded.signatures["stream_continue"]
    STATE = ("length", "running", "running_scores", "ended", "ended_scores", "done",
             "searching", "encoded", "encoder_mask", "cache", "cross_cache")

    def stream(chunk, **controls):
        inputs = dict(max_new_tokens=[6], num_beams=[4], length_penalty=[1.0],
                      temperature=[0.0], top_k=[0], top_p=[1.0], seed=[0], chunk_tokens=[chunk])
        inputs.update(controls)
        inputs = {k: tf.constant(v, TYPES.get(k, tf.int32)) for k, v in inputs.items()}
        out = start(text=tf.constant(texts), **inputs)
        shown = [[t.decode() for t in out["summary"].numpy()]]
        while not out["finished"].numpy().all():
            out = more(**{k: out[k] for k in STATE}, **inputs)
            shown.append([t.decode() for t in out["summary"].numpy()])
        return shown

    print(json.dumps({
        "stream_given": stream(2),
        "stream_greedy": stream(1, num_beams=[1]),
        "stream_sample_3": stream(3, num_beams=[1], temperature=[1.5], seed=[3]),
        "defaults": [t.decode() for t in loaded.generate(tf.constant(texts))["summary"].numpy()],
        "given": run(),
        "greedy": run(num_beams=[1]),
        "beams_2": run(num_beams=[2], max_new_tokens=[4], length_penalty=[2.0]),
        "sample_3": run(num_beams=[1], temperature=[1.5], seed=[3]),
        "sample_3_again": run(num_beams=[1], temperature=[1.5], seed=[3]),
        "sample_4": run(num_beams=[1], temperature=[1.5], seed=[4]),
        "empty": run(texts=["a fine film", " "]),
        "no_beams": run(num_beams=[0]),
        "sampled_beams": run(num_beams=[4], temperature=[0.5]),
        "two_seeds": run(seed=[1, 2]),
        "too_long": run(max_new_tokens=[65]),
        # The XLA twin: the same requests, one XLA program per shape.
        "xla_given": run(signature="serving_default_xla"),
        "xla_greedy": run(signature="serving_default_xla", num_beams=[1]),
        "xla_beams_2": run(signature="serving_default_xla", num_beams=[2], max_new_tokens=[4],
                           length_penalty=[2.0]),
        "xla_sample_3": run(signature="serving_default_xla", num_beams=[1], temperature=[1.5],
                            seed=[3]),
        "xla_one": run(texts=texts[:1], signature="serving_default_xla"),
        "xla_empty": run(texts=["a fine film", " "], signature="serving_default_xla"),
        "xla_no_beams": run(signature="serving_default_xla", num_beams=[0]),
        "xla_too_long": run(signature="serving_default_xla", max_new_tokens=[65]),
        "foreign": sorted(m for m in sys.modules
                          if m.split(".")[0] in ("tfhf", "transformers", "tf_keras")),
    }))
""")


@pytest.fixture(scope="module")
def served(trained):
    config, metrics = trained
    blocks = (Path(config.workdir) / EXAMPLES_FILE).read_text().strip().split("\n\n")
    texts = [b.splitlines()[0].split(None, 1)[1] for b in blocks][:12]
    return texts, run_bare_python(_CLIENT, metrics["export"], json.dumps(texts))


def test_the_export_writes_what_tfhf_writes_in_a_python_free_process(trained, served):
    config, metrics = trained
    texts, out = served
    assert out["foreign"] == []
    model, source, target, _ = load_text_to_text_folder(Path(config.workdir) / "model")
    ours = TextToText(model, source, target, jit_compile=False)
    beam = config.decoding()
    assert out["defaults"] == out["given"] == ours(texts, beam)  # the run's: 4 beams
    assert out["greedy"] == ours(texts, DecodingSettings(6, no_repeat_ngram_size=3))
    settings = DecodingSettings(4, num_beams=2, length_penalty=2.0, no_repeat_ngram_size=3)
    assert out["beams_2"] == ours(texts, settings)
    assert out["defaults"] != out["greedy"] or out["greedy"] != out["beams_2"]


@pytest.mark.parametrize("decoding", ["given", "greedy", "beams_2", "sample_3"])
def test_the_xla_signature_writes_what_the_default_signature_writes(served, decoding):
    # Sources padded to a length bucket, rows to a row bucket, the cache to a bucket of
    # max_new_tokens: the same summaries, one row alone or among others.
    _, out = served
    assert out[f"xla_{decoding}"] == out[decoding]
    assert out["xla_one"] == out["given"][:1]


def test_only_the_xla_signature_asks_for_xla(trained):
    _, metrics = trained
    assert compiles_with_xla(Path(metrics["export"]), "serving_default_xla")
    assert not compiles_with_xla(Path(metrics["export"]), "serving_default")


def test_the_export_samples_by_seed(served):
    _, out = served
    assert out["sample_3"] == out["sample_3_again"] != out["sample_4"]
    assert out["sample_3"] != out["greedy"]


@pytest.mark.parametrize(
    "streamed, whole, chunk",
    [
        ("stream_given", "given", 2),
        ("stream_greedy", "greedy", 1),
        ("stream_sample_3", "sample_3", 3),
    ],
)
def test_streamed_summaries_end_in_the_text_of_one_call(served, streamed, whole, chunk):
    _, out = served
    shown = out[streamed]
    assert shown[-1] == out[whole]
    # Each chunk shows how the summary starts (beam search: what all live beams agree on).
    for before in shown[:-1]:
        assert all(w.startswith(b) for b, w in zip(before, out[whole], strict=True))
    assert len(shown) <= -(-6 // chunk)
    if chunk == 1:
        assert any(shown[len(shown) // 2]), "no text before the end"


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "empty text"),
        ("no_beams", "num_beams must be in [1, 16]"),
        ("sampled_beams", "sampling (temperature above 0) needs num_beams 1"),
        ("two_seeds", "seed must hold one value"),
        ("too_long", "max_new_tokens must be in [1, 64]"),
        ("xla_empty", "empty text"),
        ("xla_no_beams", "num_beams must be in [1, 16]"),
        ("xla_too_long", "max_new_tokens must be in [1, 64]"),
    ],
)
def test_bad_export_requests_get_a_one_line_reason(served, case, message):
    _, out = served
    assert out[case].startswith("error: ") and message in out[case]


def test_the_export_needs_only_tf_text_ops_that_tf_serving_links(trained, non_core_ops):
    _, metrics = trained
    version_dir = Path(metrics["export"])
    assert non_core_ops(version_dir) <= {
        "NormalizeUTF8",
        "RegexSplitWithOffsets",
        "WordpieceTokenizeWithOffsets",
    }
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_tfhf_serve_loads_the_export_with_its_warmup_and_answers_over_rest(trained, served):
    import http.client
    import threading

    from tfhf.serving import model_server as ms

    _, metrics = trained
    texts, out = served
    manager = ms.ModelManager(
        [ms.ModelSpec("summarize", Path(metrics["export"]).parent)], poll_seconds=0
    )
    manager.start()  # replays the warmup records; a failing one would keep the version out
    rest = ms.rest_server(manager, port=0, max_body_bytes=100_000, max_instances=64)
    threading.Thread(target=rest.serve_forever, daemon=True).start()

    def post(body):
        connection = http.client.HTTPConnection("127.0.0.1", rest.server_address[1], timeout=120)
        connection.request("POST", "/v1/models/summarize:predict", body=json.dumps(body))
        response = connection.getresponse()
        payload = json.loads(response.read())
        connection.close()
        return response.status, payload

    try:
        status, payload = post({"instances": texts})
        assert status == 200, payload
        assert payload["predictions"] == out["defaults"]
        status, payload = post({"inputs": {"text": texts, "num_beams": [1]}})
        assert status == 200, payload
        assert payload["outputs"] == out["greedy"]
        status, payload = post({"inputs": {"text": texts, "num_beams": [0]}})
        assert status == 400 and "num_beams must be in [1, 16]" in payload["error"]
        # Streamed as Server-Sent Events (4 beams, the default): the pieces join into the
        # summaries of one call.
        connection = http.client.HTTPConnection("127.0.0.1", rest.server_address[1], timeout=120)
        body = {"inputs": {"text": texts, "chunk_tokens": [1]}}
        connection.request("POST", "/v1/models/summarize:predict_stream", body=json.dumps(body))
        response = connection.getresponse()
        events = [
            json.loads(block.split("data: ", 1)[1])
            for block in response.read().decode().strip().split("\n\n")
        ]
        connection.close()
        assert response.status == 200 and events[-1] == {}
        joined = ["".join(row) for row in zip(*(e["summary"] for e in events[:-1]), strict=True)]
        assert joined == out["defaults"]
    finally:
        rest.shutdown()
        manager.stop()


def test_the_run_holds_what_the_reference_documents(trained):
    from pathlib import Path

    from conftest import assert_run_is_documented, assert_signatures_are_documented

    from tfhf.tasks.summarize import SummarizeTask

    config, metrics = trained
    assert_run_is_documented(Path(config.workdir), metrics)
    assert_signatures_are_documented(Path(metrics["export"]), SummarizeTask.export_signatures)
