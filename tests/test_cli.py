"""The command lines a user types: train, then predict from the workdir and from the export."""

from __future__ import annotations

import json
import math

import pytest
import tensorflow as tf
from conftest import make_texts, run_module


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir, tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    proc = run_module(
        "tfhf.train",
        "--task=classify",
        f"--model={tiny_model_dir}",
        f"--train_file={tiny_data['train']}",
        "--max_seq_length=16",
        "--batch_size=8",
        "--epochs=8",
        "--learning_rate=0.01",
        f"--workdir={tmp / 'run'}",
        f"--export_dir={tmp / 'export'}",
        cwd=tmp,
    )
    return tmp, proc


def test_train_cli_writes_a_complete_run(cli_run):
    tmp, proc = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 8/8 done" in proc.stdout  # progress reaches the log
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    # No validation/test files: both were split off the 96 training rows.
    assert metrics["validation"]["examples"] + metrics["test"]["examples"] == 20
    assert metrics["test"]["accuracy"] >= 0.7
    assert (tmp / "export" / "1" / "saved_model.pb").exists()
    assert "--train_file=" in (tmp / "run" / "flags.txt").read_text()


def test_predict_agrees_between_workdir_and_export(cli_run, tmp_path):
    tmp, _ = cli_run
    texts = tmp_path / "texts.txt"
    texts.write_text("the movie was great and lovely\na boring , dull story\n")
    outputs = []
    for model_dir in (tmp / "run", tmp / "export" / "1", tmp / "export"):
        proc = run_module(
            "tfhf.predict", f"--model={model_dir}", f"--input_file={texts}", "--text=superb fun"
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = [line.split("\t") for line in proc.stdout.strip().splitlines()]
        assert [r[2] for r in rows] == [
            "superb fun",
            "the movie was great and lovely",
            "a boring , dull story",
        ]
        outputs.append(rows)
    labels = [[r[0] for r in rows] for rows in outputs]
    assert labels[0] == labels[1] == labels[2] == ["positive", "positive", "negative"]
    for a, b in zip(outputs[0], outputs[1], strict=True):
        assert abs(float(a[1]) - float(b[1])) < 1e-3


# Every proxy points at a closed local port: the tfds download path runs for real and fails fast.
_NO_NETWORK = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--train_file=missing.csv"], "error: missing.csv: file not found"),
        (["--dataset=no_such_dataset_xyz"], "error: unknown dataset 'no_such_dataset_xyz'"),
        (["--dataset=imdb_reviews"], "error: could not download or prepare tfds dataset"),
        (["--task=mlm"], "error: --export_dir is not a setting of --task=mlm"),
        (["--epochs=two"], "error: flag --epochs=two: invalid literal"),
    ],
)
def test_train_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run_module(
        "tfhf.train",
        "--task=classify",
        *args,
        f"--workdir={tmp_path / 'run'}",
        f"--export_dir={tmp_path / 'export'}",
        cwd=tmp_path,
        env={**_NO_NETWORK, "TFDS_DATA_DIR": str(tmp_path / "tfds")},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(message)
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "export").exists()


def test_predict_cli_refuses_a_folder_that_is_no_model(tmp_path):
    proc = run_module("tfhf.predict", f"--model={tmp_path}", "--text=hello")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --model {tmp_path}: neither")


@pytest.fixture(scope="module")
def lm_cli_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm_cli")
    corpus = tmp / "corpus.txt"
    corpus.write_text(
        "ROMEO.\nBut soft, what light through yonder window breaks?\n\n"
        "JULIET.\nO Romeo, Romeo, wherefore art thou Romeo?\n\n" * 60
    )
    proc = run_module(
        "tfhf.train",
        "--task=lm",
        f"--train_file={corpus}",
        "--vocab_size=300",
        "--block_size=32",
        "--n_layer=1",
        "--n_head=2",
        "--n_embd=32",
        "--batch_size=8",
        "--epochs=1",
        "--max_steps_per_epoch=6",
        f"--workdir={tmp / 'run'}",
        cwd=tmp,
    )
    return tmp, proc


def test_lm_cli_trains_and_generate_repeats_itself_for_a_seed(lm_cli_run):
    tmp, proc = lm_cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--- sample ---" in proc.stdout
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["optimizer_steps"] == 6  # --max_steps_per_epoch
    validation = metrics["validation"]
    assert validation["tokens"] > 0
    assert validation["perplexity"] == pytest.approx(math.exp(validation["loss"]), rel=1e-6)
    args = [
        "tfhf.generate",
        f"--model={tmp / 'run'}",
        "--text=ROMEO.",
        "--text=O Romeo, Romeo",
        "--temperature=1.0",
        "--top_k=20",
        "--seed=9",
        "--max_new_tokens=12",
    ]
    first, second = run_module(*args), run_module(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == second.stdout
    assert first.stdout.startswith("ROMEO.") and "O Romeo, Romeo" in first.stdout


def test_lm_cli_export_continues_prompts_as_generate_does(lm_cli_run):
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops the export's graph uses)

    tmp, proc = lm_cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    version_dir = tmp / metrics["export"]
    assert version_dir == tmp / "savedmodels" / "lm" / "1"
    prompts = ["ROMEO.", "O Romeo, Romeo", "JULIET.\nO"]
    greedy = run_module(
        "tfhf.generate",
        f"--model={tmp / 'run'}",
        *[f"--text={p}" for p in prompts],
        "--max_new_tokens=12",
    )
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    controls = dict(
        max_new_tokens=tf.constant([12]),
        temperature=tf.constant([0.0]),
        top_k=tf.constant([0]),
        top_p=tf.constant([1.0]),
        seed=tf.constant([0]),
    )
    texts = serve(prompt=tf.constant(prompts), **controls)["text"].numpy()
    expected = "".join(f"{p}{t.decode()}\n\n" for p, t in zip(prompts, texts, strict=True))
    assert greedy.stdout == expected


def test_generate_cli_refuses_an_overlong_request(lm_cli_run):
    tmp, _ = lm_cli_run
    proc = run_module(
        "tfhf.generate", f"--model={tmp / 'run'}", "--text=ROMEO.", "--max_new_tokens=200"
    )
    assert proc.returncode == 2
    assert "exceeds the model's context of 32" in proc.stderr.strip().splitlines()[-1]


def test_mlm_cli_pretrains_fills_masks_and_hands_its_encoder_to_classify(tiny_data, tmp_path):
    common = [f"--train_file={tiny_data['train']}", "--max_seq_length=16", "--batch_size=8"]
    mlm = run_module(
        "tfhf.train",
        "--task=mlm",
        *common,
        "--vocab_size=100",
        "--n_layer=1",
        "--n_head=2",
        "--n_embd=32",
        "--whole_word_masking",
        "--epochs=2",
        f"--workdir={tmp_path / 'mlm'}",
        cwd=tmp_path,
    )
    assert mlm.returncode == 0, mlm.stderr[-3000:]
    assert "masking 15% of words" in mlm.stdout and "epoch 2/2 done" in mlm.stdout
    fill = run_module(
        "tfhf.predict",
        f"--model={tmp_path / 'mlm'}",
        "--text=the film was [MASK] !",
        "--text=a [MASK] and [MASK] story",
        "--num_fillers=3",
    )
    assert fill.returncode == 0, fill.stderr[-3000:]
    lines = fill.stdout.splitlines()
    shown = [line for line in lines if line.startswith("  [MASK] ")]
    assert [line.split(":")[0] for line in shown] == ["  [MASK] 1", "  [MASK] 1", "  [MASK] 2"]
    probabilities = [float(v) for v in shown[0].split(":")[1].split()[1::2]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    no_mask = run_module("tfhf.predict", f"--model={tmp_path / 'mlm'}", "--text=no mask")
    assert no_mask.returncode == 2 and "nothing to fill in" in no_mask.stderr
    classify = run_module(
        "tfhf.train",
        "--task=classify",
        f"--model={tmp_path / 'mlm'}",
        *common,
        "--max_steps_per_epoch=2",
        f"--workdir={tmp_path / 'classify'}",
        f"--export_dir={tmp_path / 'export'}",
        cwd=tmp_path,
    )
    assert classify.returncode == 0, classify.stderr[-3000:]
    assert f"encoder weights carried over from {tmp_path / 'mlm' / 'model'}" in classify.stdout


def test_translate_cli_trains_then_generate_and_the_export_agree(tiny_model_dir, tmp_path):
    # English reviews to their Chinese verdict, on a tiny GPT-2 decoder with its own BPE.
    pairs = tmp_path / "pairs.jsonl"
    rows = make_texts(60, seed=4)
    verdicts = {"positive": "好评", "negative": "差评"}
    pairs.write_text(
        "".join(
            json.dumps({"en": t, "zh": verdicts[label]}, ensure_ascii=False) + "\n"
            for t, label in rows
        ),
        encoding="utf-8",
    )
    train = run_module(
        "tfhf.train",
        "--task=translate",
        f"--model={tiny_model_dir}",
        f"--train_file={pairs}",
        "--source_column=en",
        "--target_column=zh",
        "--max_source_length=16",
        "--max_target_length=5",
        "--decoder_layers=1",
        "--decoder_heads=2",
        "--decoder_width=16",
        "--target_vocab_size=300",
        "--batch_size=8",
        "--epochs=1",
        "--max_steps_per_epoch=3",
        "--curve_examples=2",
        "--num_beams=2",
        f"--workdir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "greedy BLEU" in train.stdout and "beam BLEU" in train.stdout
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(t for t, _ in rows[:5]) + "\n")
    generated = run_module("tfhf.generate", f"--model={tmp_path / 'run'}", f"--input_file={inputs}")
    # The export, by default under savedmodels/translate.
    predicted = run_module(
        "tfhf.predict",
        f"--model={tmp_path / 'savedmodels' / 'translate'}",
        f"--input_file={inputs}",
    )
    for proc in (generated, predicted):
        assert proc.returncode == 0, proc.stderr[-3000:]
    # The workdir's model and the export decode as the run was evaluated: 2 beams.
    assert generated.stdout == predicted.stdout
    assert len(generated.stdout.splitlines()) == 5
    refused = run_module(
        "tfhf.generate", f"--model={tmp_path / 'run'}", "--text=x", "--num_return_sequences=2"
    )
    assert refused.returncode == 2 and "one summary or translation per text" in refused.stderr
