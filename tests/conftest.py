"""Shared fixtures: a tiny random-init BERT folder and small labelled files with a real signal."""

from __future__ import annotations

import csv
import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Tests never reach for the network unless a test opts in; this must precede huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
# Whether TF_CPP_MIN_LOG_LEVEL came from outside: importing tfhf sets it in this process, and a
# program run by a test should start as from a user's shell, where tfhf sets it itself.
# (Recorded in the environment, so that pytest-xdist's workers inherit the first answer.)
os.environ.setdefault(
    "TFHF_TESTS_TF_LOG_LEVEL_GIVEN", "1" if "TF_CPP_MIN_LOG_LEVEL" in os.environ else "0"
)
_TF_LOG_LEVEL_GIVEN = os.environ["TFHF_TESTS_TF_LOG_LEVEL_GIVEN"] == "1"

import tfhf  # noqa: E402,F401  (Keras 2 before TensorFlow)

REPO = Path(__file__).resolve().parents[1]

# The slowest files (one to two minutes each on 2 cores), run first: `-n 2 --dist loadfile`
# hands whole files to the workers in collection order, so a slow file collected last
# would run alone at the end while the other worker idles.
SLOWEST_FIRST = (
    "test_notebook.py",
    "test_real_assets.py",
    "test_cli.py",
    "tasks/test_summarize.py",
    "tasks/test_translate.py",
    "training/test_resume.py",
    "training/test_distribution.py",
    "tasks/test_checkpoint_seq2seq.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        path = Path(str(item.fspath))
        name = (
            path.relative_to(REPO / "tests").as_posix()
            if path.is_relative_to(REPO / "tests")
            else ""
        )
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


POSITIVE = ["good", "great", "lovely", "fun", "superb"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor"]
NEUTRAL = ["the", "film", "movie", "was", "plot", "a", "story", "and", "very", "acting"]
VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!"]
    + POSITIVE
    + NEGATIVE
    + NEUTRAL
    + ["##s", "##ly", "##ing"]
)


def make_texts(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (text, label) pairs: neutral filler plus one or two words carrying the label."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        cue = POSITIVE if label == "positive" else NEGATIVE
        words = rng.sample(NEUTRAL, rng.randint(2, 6)) + rng.sample(cue, rng.randint(1, 2))
        rng.shuffle(words)
        rows.append((" ".join(words) + rng.choice([" .", " !", ""]), label))
    return rows


def write_csv(path: Path, rows, header=("text", "label"), delimiter=",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init 2-layer BERT (hidden 32) in HuggingFace format, encoder only, TF weights."""
    import tensorflow as tf
    from transformers import BertConfig, BertTokenizerFast, TFBertModel

    # Seeded, so the weights do not depend on which tests ran before in this process.
    tf.keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = TFBertModel(config)
    model(model.dummy_inputs)
    model.save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(
        folder
    )
    return folder


LM_TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"


@pytest.fixture(scope="session")
def lm_text() -> str:
    """The text `tiny_lm`'s tokenizer was trained on."""
    return LM_TEXT


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """(a random-init 2-layer GPT-2 with a 64-token context, its byte-level BPE tokenizer)."""
    import tensorflow as tf
    from transformers import GPT2Config, TFGPT2LMHeadModel

    from tfhf.tokenizers import bpe

    tf.keras.utils.set_random_seed(0)
    tokenizer = bpe.train_bpe([LM_TEXT * 30], vocab_size=280, folder=tmp_path_factory.mktemp("tok"))
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.5,  # peaked logits, so greedy text is not a near-tie coin toss
    )
    model = TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test CSVs of `make_texts` rows."""
    folder = tmp_path_factory.mktemp("tiny_data")
    return {
        "train": write_csv(folder / "train.csv", make_texts(96, seed=1)),
        "validation": write_csv(folder / "validation.csv", make_texts(24, seed=2)),
        "test": write_csv(folder / "test.csv", make_texts(24, seed=3)),
    }


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports free at the moment of asking (held together while chosen,
    so they cannot repeat)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_module(
    module: str, *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Runs `python -m module args...` the way a user would, returning its output."""
    full_env = {**os.environ, **(env or {})}
    if not _TF_LOG_LEVEL_GIVEN and "TF_CPP_MIN_LOG_LEVEL" not in (env or {}):
        full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_bare_python(script: str, *args: str, stdin: str | None = None, timeout: int = 600):
    """Runs `script` in a fresh interpreter with a bare environment (no tfhf on the path, as
    a serving host would have it) and returns the JSON value of its last output line."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# Prints the ops, of those named on stdin, that plain TensorFlow does not register.
_NON_CORE = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry
    ops = json.loads(sys.stdin.read())
    print(json.dumps(sorted(op for op in ops if op_def_registry.get(op) is None)))
""")


def compiles_with_xla(version_dir: Path, signature: str) -> bool:
    """Whether any function the SavedModel's `signature` calls, through every nesting,
    must be compiled with XLA."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    functions = {f.signature.name: f for f in graph.library.function}

    def called(name, seen):
        if name in seen or name not in functions:
            return seen
        seen.add(name)
        for node in functions[name].node_def:
            for value in node.attr.values():
                if value.func.name:
                    called(value.func.name, seen)
        return seen

    outputs = saved.meta_graphs[0].signature_def[signature].outputs
    entry = next(iter(outputs.values())).name.split(":")[0]
    node = next(n for n in graph.node if n.name == entry)
    reached = called(node.attr["f"].func.name, set())
    return any(functions[f].attr["_XlaMustCompile"].b for f in reached)


@pytest.fixture(scope="session")
def non_core_ops():
    """A function: SavedModel folder -> the ops its graph uses that core TensorFlow lacks."""
    from tensorflow.core.protobuf import saved_model_pb2

    def ops_outside_core(version_dir: Path) -> set[str]:
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((version_dir / "saved_model.pb").read_bytes())
        graph = saved.meta_graphs[0].graph_def
        ops = {node.op for node in graph.node}
        ops |= {node.op for f in graph.library.function for node in f.node_def}
        return set(run_bare_python(_NON_CORE, stdin=json.dumps(sorted(ops)), timeout=300))

    return ops_outside_core


def _leaves(metrics: dict, declared: dict, prefix: str = "") -> set[str]:
    """The dotted keys of `metrics`, down to the documented ones (a documented key whose
    value is a dict is one leaf)."""
    leaves = set()
    for key, value in metrics.items():
        path = prefix + key
        if path in declared or not isinstance(value, dict):
            leaves.add(path)
        else:
            leaves |= _leaves(value, declared, path + ".")
    return leaves


def assert_run_is_documented(workdir: Path, metrics: dict) -> None:
    """The run's metrics.json, workdir and model folder hold exactly what the reference
    (generated from `RUN_METRICS`, `WORKDIR_FILES` and the task's declarations) says."""
    from tfhf.runner import EXPORT_METRICS, RUN_METRICS, WORKDIR_FILES
    from tfhf.tasks import get_task

    task = get_task(metrics["task"])
    declared = {**RUN_METRICS, **task.metrics_doc}
    if metrics["config"].get("export", False):
        declared.update(EXPORT_METRICS)
    required = {key for key, meaning in declared.items() if not meaning.startswith("(if")}
    leaves = _leaves(metrics, declared)
    assert leaves - set(declared) == set(), "undocumented metrics.json entries"
    assert required - leaves == set(), "documented metrics.json entries missing"
    on_disk = {p.name + ("/" if p.is_dir() else "") for p in Path(workdir).iterdir()}
    expected = (set(WORKDIR_FILES) - {"checkpoints/"}) | set(task.workdir_files)
    assert on_disk == expected
    for name in task.model_files:
        assert (Path(workdir) / "model" / name).exists(), name


_DTYPES = {"string": "DT_STRING", "int32": "DT_INT32", "float32": "DT_FLOAT", "bool": "DT_BOOL"}


def assert_signatures_are_documented(version_dir: Path, documented) -> None:
    """The export's SignatureDefs are the documented ones: names, inputs, outputs, dtypes,
    ranks (where the SignatureDef knows them) and which inputs have defaults."""
    from tensorflow.core.framework import types_pb2

    from tfhf.serving.export import EXPORT_FILES, read_signature_defs

    on_disk = {p.name + ("/" if p.is_dir() else "") for p in Path(version_dir).iterdir()}
    assert on_disk == {name.split("/")[0] + ("/" if "/" in name else "") for name in EXPORT_FILES}
    for name in EXPORT_FILES:
        assert (Path(version_dir) / name.rstrip("/")).exists(), name
    actual = read_signature_defs(version_dir)
    assert set(actual) == {doc.name for doc in documented}
    for doc in documented:
        signature = actual[doc.name]
        for side, tensors, declared in (
            ("inputs", signature.inputs, doc.inputs),
            ("outputs", signature.outputs, doc.outputs),
        ):
            assert set(tensors) == set(declared), (doc.name, side)
            for name, info in tensors.items():
                where = (doc.name, side, name)
                assert types_pb2.DataType.Name(info.dtype) == _DTYPES[declared[name].dtype], where
                if not info.tensor_shape.unknown_rank:
                    assert len(info.tensor_shape.dim) == declared[name].rank, where
        documented_defaults = {name for name, t in doc.inputs.items() if t.default}
        assert set(signature.defaults) == documented_defaults, doc.name
