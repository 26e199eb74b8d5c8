"""The language-model SavedModel: in-graph BPE parity with transformers, Python-free
generation that matches `tfhf.generate`, signature defaults, and refusals."""

from __future__ import annotations

import json
import textwrap

import pytest
import tensorflow as tf
from conftest import compiles_with_xla, run_bare_python
from hypothesis import given, settings
from hypothesis import strategies as st

from tfhf.config import DEFAULT_SEED
from tfhf.generation.generator import GenerationSettings, Generator
from tfhf.serving.lm_export import export_language_model
from tfhf.tokenizers.byte_level_bpe import ByteLevelBPE

PROMPTS = [
    "To be",
    "Whether 'tis nobler in the",
    "T",
    "the  mind\n",
    "🎭 <|endoftext|>x",
]
TRICKY = [
    "",
    " ",
    "   ",
    "a  b",
    "a \t\n b",
    "end   ",
    "I'll 've 's 'sup  'd",
    "  's",
    "12345 6.7",
    "¿Qué?  日本語\u3000テスト",
    "nbsp\u00a0\u00a0here",
    "line\u2028sep",
    "emoji 🎭🗡️ and ZWJ 👩\u200d👩\u200d👧",
    "a\x00\x00b \x00",
    "<|endoftext|>",
    " <|endoftext|> ",
    "x  <|endoftext|>  y",
]
MAX_NEW = 12


@pytest.fixture(scope="module")
def graph_bpe(tiny_lm, tmp_path_factory):
    _, tokenizer = tiny_lm
    folder = tmp_path_factory.mktemp("bpe")
    tokenizer.save_pretrained(folder / "tokenizer")
    bpe = ByteLevelBPE.from_folder(folder / "tokenizer", asset_dir=folder / "assets")
    return (
        tokenizer,
        tf.function(bpe.tokenize),
        tf.function(bpe.detokenize),
        tf.function(bpe.fewest_tokens),
    )


@pytest.mark.parametrize("text", TRICKY)
def test_graph_bpe_gives_transformers_ids_and_round_trips(graph_bpe, text):
    tokenizer, tokenize, detokenize, fewest = graph_bpe
    ids = tokenize(tf.constant([text]))
    assert ids.to_list()[0] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert detokenize(ids).numpy()[0].decode("utf-8") == text
    assert 0 < fewest(tf.constant([text])).numpy()[0] <= len(ids.to_list()[0]) or not text


# Unassigned code points are left out: TensorFlow's regex engine and tokenizers' disagree
# on which letters the newest Unicode versions added.
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=40))
def test_graph_bpe_matches_transformers_on_arbitrary_text(graph_bpe, text):
    tokenizer, tokenize, detokenize, fewest = graph_bpe
    ids = tokenize(tf.constant([text]))
    assert ids.to_list()[0] == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert detokenize(ids).numpy()[0].decode("utf-8") == text
    # The bound counted without BPE never exceeds the count BPE gives.
    assert fewest(tf.constant([text])).numpy()[0] <= len(ids.to_list()[0])


def test_the_token_bound_without_bpe_grows_with_long_pieces(graph_bpe):
    tokenizer, _, _, fewest = graph_bpe
    texts = ["ab" * 1000, "word " * 300, "日本語" * 200, "<|endoftext|>" * 3]
    bounds = fewest(tf.constant(texts)).numpy()
    for text, bound in zip(texts, bounds, strict=True):
        assert bound <= len(tokenizer(text, add_special_tokens=False)["input_ids"])
    # A 2,000-letter piece spans at least 2,000 / (the longest token of letters) tokens.
    longest = max(len(t) for t in tokenizer.get_vocab() if t.isalpha())
    assert bounds[0] >= 2000 // longest
    assert bounds[1] >= 300 and bounds[3] == 3


def test_graph_bpe_decodes_broken_utf8_as_transformers_does(graph_bpe):
    tokenizer, tokenize, detokenize, _ = graph_bpe
    whole = tokenizer("日本 é", add_special_tokens=False)["input_ids"]
    # Byte-level ids can stop mid-character, as a generation cut at max_new_tokens does.
    for cut in range(1, len(whole) + 1):
        ids = tf.ragged.constant([whole[:cut]], dtype=tf.int32)
        got = detokenize(ids).numpy()[0].decode("utf-8")
        assert got == tokenizer.decode(whole[:cut], clean_up_tokenization_spaces=False)


@pytest.fixture(scope="module")
def lm_exported(tiny_lm, tmp_path_factory):
    model, tokenizer = tiny_lm
    root = tmp_path_factory.mktemp("lm_export")
    version_dir = export_language_model(model, tokenizer, root)
    return root, version_dir


# Runs in a fresh interpreter that imports only tensorflow and tensorflow_text.
_CLIENT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401
    loaded = tf.saved_model.load(sys.argv[1])
    prompts = json.loads(sys.argv[2])
    max_new = int(sys.argv[3])
    n = len(prompts)

    def run(signature="serving_default", **controls):
        serve = loaded.signatures[signature]
        inputs = dict(max_new_tokens=[max_new], temperature=[0.0], top_k=[0], top_p=[1.0],
                      seed=[0])
        inputs.update(controls)
        inputs = {k: tf.constant(v, tf.float32 if k in ("temperature", "top_p") else tf.int32)
                  for k, v in inputs.items()}
        try:
            out = serve(prompt=tf.constant(prompts), **inputs)["text"].numpy()
            return [t.decode("utf-8") for t in out]
        except tf.errors.InvalidArgumentError as e:
            # TF Serving returns the same "assertion failed: [...]" line to its client.
            return "error: " + next(l for l in e.message.splitlines() if "assertion" in l)

    result = {
        "greedy": run(),
        "sample_3": run(temperature=[0.9], top_k=[20], seed=[3]),
        "sample_3_again": run(temperature=[0.9], top_k=[20], seed=[3]),
        "sample_4": run(temperature=[0.9], top_k=[20], seed=[4]),
        "per_prompt": run(temperature=[0.0] + [0.9] * (n - 1), top_k=[20], seed=[3] * n,
                          max_new_tokens=[max_new] + [2] * (n - 1)),
        "defaults": [t.decode() for t in loaded.generate(tf.constant(prompts))["text"].numpy()],
        "too_long": run(max_new_tokens=[64]),
        "bad_top_p": run(top_p=[0.0]),
        "bad_size": run(seed=[1, 2]),
        "xla_greedy": run("serving_default_xla"),
        "xla_sample_3": run("serving_default_xla", temperature=[0.9], top_k=[20], seed=[3]),
        "xla_per_prompt": run("serving_default_xla", temperature=[0.0] + [0.9] * (n - 1),
                              top_k=[20], seed=[3] * n,
                              max_new_tokens=[max_new] + [2] * (n - 1)),
        "xla_too_long": run("serving_default_xla", max_new_tokens=[64]),
        "xla_bad_top_p": run("serving_default_xla", top_p=[0.0]),
        "foreign": sorted(m for m in sys.modules
                          if m.split(".")[0] in ("tfhf", "transformers", "tf_keras")),
    }
    start, resume = loaded.signatures["stream_start"], loaded.signatures["stream_continue"]

    def stream(chunk, **controls):
        inputs = dict(max_new_tokens=[max_new], temperature=[0.0], top_k=[0], top_p=[1.0],
                      seed=[0], chunk_tokens=[chunk])
        inputs.update(controls)
        inputs = {k: tf.constant(v, tf.float32 if k in ("temperature", "top_p") else tf.int32)
                  for k, v in inputs.items()}
        out = start(prompt=tf.constant(prompts), **inputs)
        texts = [[t.decode("utf-8") for t in out["text"].numpy()]]
        while not out["finished"].numpy().all():
            state = {k: out[k] for k in ("step", "logits", "past", "mask", "finished", "tokens")}
            out = resume(**state, **inputs)
            texts.append([t.decode("utf-8") for t in out["text"].numpy()])
        return texts

    result["stream_greedy_1"] = stream(1)
    result["stream_greedy_5"] = stream(5)
    result["stream_sample_3"] = stream(3, temperature=[0.9], top_k=[20], seed=[3])
    result["stream_per_prompt"] = stream(
        4, temperature=[0.0] + [0.9] * (n - 1), top_k=[20], seed=[3] * n,
        max_new_tokens=[max_new] + [2] * (n - 1))
    prompts = ["fine", ""]
    result["empty"] = run()
    result["xla_empty"] = run("serving_default_xla")
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def served(lm_exported):
    _, version_dir = lm_exported
    return run_bare_python(_CLIENT, str(version_dir), json.dumps(PROMPTS), str(MAX_NEW))


def test_greedy_export_equals_tfhf_generate_in_a_python_free_process(tiny_lm, served):
    model, tokenizer = tiny_lm
    expected = [c[0] for c in Generator(model, tokenizer)(PROMPTS, GenerationSettings(MAX_NEW))]
    assert served["foreign"] == []
    assert served["greedy"] == expected
    assert any(len(t) > 3 for t in expected)


def test_export_sampling_is_seeded_per_prompt(served):
    assert served["sample_3"] == served["sample_3_again"]
    assert served["sample_3"] != served["sample_4"]
    assert served["sample_3"] != served["greedy"]
    # Controls per prompt: the first row greedy at full length, the others sampled and short;
    # a row's text depends on its own controls, not on the batch around it.
    per_prompt = served["per_prompt"]
    assert per_prompt[0] == served["greedy"][0]
    for sampled, full in zip(per_prompt[1:], served["sample_3"][1:], strict=True):
        assert full.startswith(sampled) and len(sampled) < len(full)


@pytest.mark.parametrize(
    "streamed, whole, chunk",
    [
        ("stream_greedy_1", "greedy", 1),
        ("stream_greedy_5", "greedy", 5),
        ("stream_sample_3", "sample_3", 3),
        ("stream_per_prompt", "per_prompt", 4),
    ],
)
def test_streamed_chunks_end_in_the_text_of_one_call(served, streamed, whole, chunk):
    chunks = served[streamed]
    assert chunks[-1] == served[whole]
    # Each chunk extends the text before it, and decodes at most `chunk` more tokens.
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert all(a.startswith(b) for b, a in zip(before, after, strict=True))
    assert len(chunks) <= -(-MAX_NEW // chunk)
    if chunk == 1:
        assert len(chunks) > 3  # the text arrived in pieces, not all at the end


def test_controls_left_out_take_the_recorded_defaults(lm_exported, served):
    from tensorflow.core.protobuf import saved_model_pb2

    _, version_dir = lm_exported
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    signature = saved.meta_graphs[0].signature_def["serving_default"]
    assert set(signature.inputs) == {
        "prompt",
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "seed",
    }
    assert set(signature.outputs) == {"text"}
    defaults = {k: tf.make_ndarray(v).tolist() for k, v in signature.defaults.items()}
    assert defaults == {
        "max_new_tokens": [32],
        "temperature": [0.0],
        "top_k": [0],
        "top_p": [1.0],
        "seed": [DEFAULT_SEED],
    }
    # Greedy with the default length: the 12-token greedy text continues into it.
    for short, long in zip(served["greedy"], served["defaults"], strict=True):
        assert long.startswith(short)


@pytest.mark.parametrize("decoding", ["greedy", "sample_3", "per_prompt"])
def test_xla_signature_writes_what_the_default_signature_writes(served, decoding):
    # One XLA program over a fixed-size cache and bucketed prompts, the same tokens.
    assert served[f"xla_{decoding}"] == served[decoding]


def test_only_the_xla_signature_asks_for_xla(lm_exported):
    _, version_dir = lm_exported
    assert compiles_with_xla(version_dir, "serving_default_xla")
    assert not compiles_with_xla(version_dir, "serving_default")


@pytest.mark.parametrize(
    "case, message",
    [
        ("too_long", "exceed the model context of 64"),
        ("bad_top_p", "top_p must be in (0, 1]"),
        ("bad_size", "seed must hold one value, or one per prompt"),
        ("empty", "empty prompt"),
        ("xla_too_long", "exceed the model context of 64"),
        ("xla_bad_top_p", "top_p must be in (0, 1]"),
        ("xla_empty", "empty prompt"),
    ],
)
def test_bad_requests_get_a_one_line_reason(served, case, message):
    assert served[case].startswith("error: ") and message in served[case]


def test_lm_export_needs_one_tf_text_op_and_stores_its_tables_as_assets(lm_exported, non_core_ops):
    from tensorflow.core.protobuf import saved_model_pb2

    _, version_dir = lm_exported
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    # A TensorArray that grows in a loop writes with a resizing TensorListSetItem, which
    # TensorFlow 2.12 (as TF Serving builds it) does not resize: the export would load and
    # then fail every request ("Trying to modify element 0 in a list with 0 elements").
    growing = [
        n.name
        for n in nodes
        if n.op == "TensorListSetItem" and n.attr["resize_if_index_out_of_bounds"].b
    ]
    assert growing == []
    # RegexSplitWithOffsets is in the TF Text that TF Serving's model server links.
    assert non_core_ops(version_dir) == {"RegexSplitWithOffsets"}
    assert (version_dir / "assets" / "bpe_tokens.txt").is_file()
    assert (version_dir / "assets" / "bpe_merges.txt").is_file()
