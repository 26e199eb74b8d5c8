"""The command lines a user types: train, then predict from the workdir and from the export."""

from __future__ import annotations

import json
import math
import re

import pytest
import tensorflow as tf
from conftest import REPO, make_texts, run_module


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


def test_predict_streams_files_into_json_lines_in_input_order(cli_run, tmp_path):
    import gzip

    tmp, _ = cli_run
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    texts = [
        f"review {i}: " + ("great and lovely" if i % 3 else "boring , dull") for i in range(150)
    ]
    texts[7] = ""  # an empty text is classified too, not refused
    for part in range(3):  # three gzipped files, read through one glob
        rows = "".join(json.dumps({"review": t}) + "\n" for t in texts[part * 50 : part * 50 + 50])
        (inputs / f"part-{part}.jsonl.gz").write_bytes(gzip.compress(rows.encode()))
    out = tmp_path / "labels.jsonl"
    args = [f"--model={tmp / 'export'}", "--text_column=review", "--batch_size=16"]
    proc = run_module(
        "tfhf.predict", *args, f"--input_file={inputs}/part-*.jsonl.gz", f"--output_file={out}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""
    assert "150 texts in" in proc.stderr and "texts/s" in proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert not (tmp_path / "labels.jsonl.partial").exists()
    printed = run_module("tfhf.predict", *args, f"--input_file={inputs}")  # the folder
    assert printed.returncode == 0, printed.stderr[-3000:]
    lines = [line.split("\t") for line in printed.stdout.strip().splitlines()]
    assert [(r["label"], r["text"]) for r in rows] == [(label, t) for label, _, t in lines]
    for row, (_, probability, _) in zip(rows, lines, strict=True):
        assert abs(row["probability"] - float(probability)) < 1e-4
    # A bad record after 100 good ones: one line naming it, and nothing half-written.
    (inputs / "part-3.jsonl.gz").write_bytes(gzip.compress(b'{"review": "fine"}\n{"rev'))
    broken = tmp_path / "broken.jsonl"
    failed = run_module("tfhf.predict", *args, f"--input_file={inputs}", f"--output_file={broken}")
    assert failed.returncode == 2
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .endswith("part-3.jsonl.gz:2: invalid JSON: Unterminated string starting at")
    )
    assert not broken.exists() and not (tmp_path / "broken.jsonl.partial").exists()


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
        "JULIET.\nO Romeo, Romeo, wherefore art thou Romeo?\n\n" * 300
    )
    proc = run_module(
        "tfhf.train",
        "--task=lm",
        f"--train_file={corpus}",
        "--vocab_size=300",
        "--block_size=128",  # the docs' requests (64 new tokens) fit, as on the default lm
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
    assert "exceeds the model's context of 128" in proc.stderr.strip().splitlines()[-1]


_MLM_COMMON = ("--max_seq_length=16", "--batch_size=8")


@pytest.fixture(scope="module")
def mlm_cli_run(tiny_data, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("mlm_cli")
    mlm = run_module(
        "tfhf.train",
        "--task=mlm",
        f"--train_file={tiny_data['train']}",
        *_MLM_COMMON,
        "--vocab_size=100",
        "--n_layer=1",
        "--n_head=2",
        "--n_embd=32",
        "--whole_word_masking",
        "--epochs=2",
        f"--workdir={tmp_path / 'mlm'}",
        cwd=tmp_path,
    )
    return tmp_path, mlm


def test_mlm_cli_pretrains_fills_masks_and_hands_its_encoder_to_classify(mlm_cli_run, tiny_data):
    tmp_path, mlm = mlm_cli_run
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
        f"--train_file={tiny_data['train']}",
        *_MLM_COMMON,
        "--max_steps_per_epoch=2",
        f"--workdir={tmp_path / 'classify'}",
        f"--export_dir={tmp_path / 'export'}",
        cwd=tmp_path,
    )
    assert classify.returncode == 0, classify.stderr[-3000:]
    assert f"encoder weights carried over from {tmp_path / 'mlm' / 'model'}" in classify.stdout


@pytest.fixture(scope="module")
def translate_cli_run(tiny_model_dir, tmp_path_factory):
    # English reviews to their Chinese verdict, on a tiny GPT-2 decoder with its own BPE.
    tmp_path = tmp_path_factory.mktemp("translate_cli")
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
        "--max_target_length=64",  # the docs ask for up to 64 new tokens, as the default allows
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
    return tmp_path, train, rows


def test_translate_cli_trains_then_generate_and_the_export_agree(translate_cli_run):
    tmp_path, train, rows = translate_cli_run
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


def test_the_lm_run_holds_what_the_reference_documents(lm_cli_run):
    from conftest import assert_run_is_documented, assert_signatures_are_documented

    from tfhf.tasks.lm import LanguageModelTask

    tmp, proc = lm_cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert_run_is_documented(tmp / "run", metrics)
    assert_signatures_are_documented(tmp / metrics["export"], LanguageModelTask.export_signatures)


def test_an_old_flag_name_still_works_with_a_one_line_warning(cli_run):
    tmp, _ = cli_run
    proc = run_module("tfhf.predict", f"--model_dir={tmp / 'export'}", "--text=superb fun")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == ["warning: --model_dir is deprecated: use --model"]
    assert proc.stdout.startswith("positive\t")


# The docs' Python examples, run as a reader would: in a folder holding the tiny trained
# models at the paths the examples name, with tfhf.serve answering on localhost.
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
EXAMPLE_PAGES = sorted(
    page.relative_to(REPO).as_posix()
    for page in [*(REPO / "docs").rglob("*.md"), REPO / "README.md"]
    if any(lang == "python" for lang, _ in FENCE.findall(page.read_text(encoding="utf-8")))
)


def _wait_until_served(port: int, models: list[str], proc, timeout: float = 240) -> None:
    import time
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    waiting = list(models)
    while waiting and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v1/models/{waiting[0]}", timeout=5
            ) as response:
                status = json.loads(response.read())["model_version_status"]
            if any(v["state"] == "AVAILABLE" for v in status):
                waiting.pop(0)
                continue
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.5)
    assert not waiting, f"not served in time: {waiting}"


@pytest.fixture(scope="module")
def docs_world(cli_run, lm_cli_run, mlm_cli_run, translate_cli_run, tmp_path_factory):
    import subprocess
    import sys

    from conftest import free_ports, write_csv

    folder = tmp_path_factory.mktemp("docs_world")
    links = {
        "runs/classify": cli_run[0] / "run",
        "savedmodels/classify": cli_run[0] / "export",
        "runs/lm": lm_cli_run[0] / "run",
        "savedmodels/lm": lm_cli_run[0] / "savedmodels" / "lm",
        "runs/mlm": mlm_cli_run[0] / "mlm",
        "runs/translate": translate_cli_run[0] / "run",
        "savedmodels/translate": translate_cli_run[0] / "savedmodels" / "translate",
    }
    for name, target in links.items():
        assert target.is_dir(), target
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).symlink_to(target)
    write_csv(folder / "reviews.csv", make_texts(40, seed=7))
    (folder / "texts.txt").write_text("a good film\nthe plot was dull\n")
    served = ("classify", "lm", "translate")
    (folder / "models.config").write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{m}" base_path: "{folder / "savedmodels" / m}" '
            'model_platform: "tensorflow" }\n'
            for m in served
        )
        + "}\n"
    )
    rest, grpc = free_ports(2)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfhf.serve",
            f"--model_config_file={folder / 'models.config'}",
            f"--rest_api_port={rest}",
            f"--port={grpc}",
            "--allow_reload_config_rpc",  # the serving guide reloads the config over gRPC
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_served(rest, list(served), server)
        yield folder, rest, grpc
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.assets) if p == "README.md" else p for p in EXAMPLE_PAGES],
)
def test_the_python_examples_in_the_docs_run(page, docs_world):
    import subprocess
    import sys

    folder, rest, grpc = docs_world
    blocks = [body for lang, body in FENCE.findall((REPO / page).read_text()) if lang == "python"]
    script = "\n\n".join(blocks)
    script = script.replace("localhost:8501", f"localhost:{rest}")
    script = script.replace("localhost:8500", f"localhost:{grpc}")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{page}:\n{proc.stderr[-4000:]}"


def _curl_requests(page: str) -> list[tuple[str, str | None]]:
    """(URL, body or None) of each `curl` command in a page's shell blocks."""
    import shlex

    requests = []
    for lang, body in FENCE.findall((REPO / page).read_text()):
        if lang != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            if not line.startswith("curl "):
                continue
            words = shlex.split(line, comments=True)
            url = next(w for w in words if w.startswith("http"))
            data = words[words.index("-d") + 1] if "-d" in words else None
            requests.append((url, data))
    return requests


def test_the_rest_requests_in_the_docs_are_answered(docs_world):
    """What the docs tell a TF Serving client to send, sent to tfhf.serve serving the tiny
    models under the same names."""
    import urllib.error
    import urllib.request

    folder, rest, _ = docs_world
    asked = 0
    for page in [
        "README.md",
        *(p.relative_to(REPO).as_posix() for p in (REPO / "docs").rglob("*.md")),
    ]:
        for url, data in _curl_requests(page):
            model = re.search(r"/v1/models/(\w+)", url)
            # Labels, and models other than the three served, need a config of their own.
            if model is None or model.group(1) not in ("classify", "lm", "translate"):
                continue
            if "/labels/" in url:
                continue
            url = url.replace("localhost:8501", f"127.0.0.1:{rest}")
            request = urllib.request.Request(url, data=data.encode() if data is not None else None)
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    answer = response.read().decode()
            except urllib.error.HTTPError as e:
                raise AssertionError(f"{page}: {url} {data}: {e.code} {e.read()[:500]}") from None
            if url.endswith(":predict_stream"):
                assert "event: end" in answer, (page, url, answer[-500:])
            elif data is not None:
                assert set(json.loads(answer)) & {"predictions", "outputs"}, (page, url)
            asked += 1
    assert asked >= 10


def test_the_python_api_writes_what_the_command_line_writes(lm_cli_run, translate_cli_run):
    import tfhf

    tmp, _ = lm_cli_run
    prompts = ["ROMEO.", "O Romeo, Romeo"]
    cli = run_module(
        "tfhf.generate",
        f"--model={tmp / 'run'}",
        *[f"--text={p}" for p in prompts],
        "--max_new_tokens=10",
    )
    assert cli.returncode == 0, cli.stderr[-3000:]
    expected = cli.stdout
    for path, jit in (
        (tmp / "run", True),
        (tmp / "savedmodels" / "lm", True),
        (tmp / "savedmodels" / "lm", False),
    ):
        model = tfhf.load(path, jit_compile=jit, batch_size=1)  # one prompt per call
        assert isinstance(model, tfhf.LanguageModel)
        continuations = model.generate(prompts, max_new_tokens=10)
        assert "".join(f"{p}{c}\n\n" for p, c in zip(prompts, continuations, strict=True)) == (
            expected
        ), (path, jit)
    tmp, _, rows = translate_cli_run
    texts = [text for text, _ in rows[:3]]
    workdir, export = tfhf.load(tmp / "run"), tfhf.load(tmp / "savedmodels" / "translate")
    assert isinstance(workdir, tfhf.Translator) and isinstance(export, tfhf.Translator)
    assert workdir.translate(texts) == export.translate(texts)  # the run's 2 beams, both
    assert workdir.translate(texts, num_beams=1) == export.translate(texts, num_beams=1)
    with pytest.raises(tfhf.TfhfError, match="fixed in an export"):
        export.translate(texts, no_repeat_ngram_size=2)
