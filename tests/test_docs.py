"""The documentation matches the code: the generated reference is current, every setting
and flag is in it, and every `python -m tfhf.*` command in the docs parses against its
entry point. (The Python examples of the docs run in tests/test_cli.py, beside the tiny
trained models they use.)"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from conftest import REPO

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]
ENTRY = re.compile(r"python -m tfhf\.(train|predict|generate|serve)\b")
PLACEHOLDER = "PLACEHOLDER"
# A fenced block, its language, and its body.
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)


def test_the_reference_pages_are_what_the_code_generates():
    proc = subprocess.run(
        [sys.executable, str(DOCS / "generate_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_reference_lists_every_setting_of_every_task_and_every_flag():
    import dataclasses

    from tfhf.tasks import TASKS

    for task, cls in TASKS.items():
        page = (DOCS / "reference" / f"train-{task}.md").read_text()
        listed = set(re.findall(r"^\| `--(\w+)`", page, re.M))
        assert listed == {f.name for f in dataclasses.fields(cls.config_class)}, task
    for name in ("predict", "generate", "serve"):
        page = (DOCS / "reference" / f"{name}.md").read_text()
        page = page.split("## Old names")[0]
        listed = set(re.findall(r"^\| `--(?:\[no\])?(\w+)`", page, re.M))
        own = set(_flags_of(name))
        assert listed == own, name


def _flags_of(name: str) -> list[str]:
    """The flags `tfhf.<name>` defines, read in a process of its own."""
    script = (
        "import importlib, json, sys\nimport tfhf.cli as cli\n"
        f"m = importlib.import_module('tfhf.{name}')\nprint(json.dumps(cli.own_flags(m.__name__)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def commands_in(text: str) -> list[list[str]]:
    """Every `python -m tfhf.<entry> ...` command of a page, as its argument list (entry
    point first), from shell blocks (line continuations joined) and inline code spans.

    """
    found = []
    shell = ("bash", "sh", "shell", "console", "")
    spans = [body.replace("\\\n", " ") for lang, body in FENCE.findall(text) if lang in shell]
    prose = FENCE.sub("", text)
    spans += re.findall(r"`([^`\n]+)`", prose)
    lines = [line for span in spans for line in span.splitlines()]
    for line in sorted(set(lines), key=lines.index):
        # A placeholder (`--task=<task>`, `--model=<mlm workdir>`) stands for some value.
        line = re.sub(r"<[^<>\n]+>", PLACEHOLDER, line)
        for match in ENTRY.finditer(line):
            lexer = shlex.shlex(line[match.end() :], posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            args = []
            for token in lexer:
                if token and set(token) <= set("|&;<>()"):
                    break
                args.append(token)
            found.append([match.group(1), *args])
    return found


_PARSE = """
import json, sys
import tfhf
from absl import flags
from tfhf.errors import TfhfError
name, commands = sys.argv[1], json.loads(sys.stdin.read())
if name == "train":
    from tfhf.train import entry_point
else:
    import importlib
    point = importlib.import_module("tfhf." + name).ENTRY_POINT
failures = []
for command in commands:
    values = flags.FlagValues() if name == "train" else flags.FLAGS
    parser = entry_point(values) if name == "train" else point
    try:
        parser.parse(["tfhf." + name, *command], values)
    except SystemExit as e:  # --helpshort: prints help, exits 0
        if e.code:
            failures.append([command, f"exit {e.code}"])
    except TfhfError as e:
        if "PLACEHOLDER" not in str(e):  # a placeholder's value is no value to check
            failures.append([command, str(e)])
print(json.dumps(failures))
"""


def test_every_command_in_the_docs_parses_against_its_entry_point(capfd):
    commands: dict[str, list] = {}
    for page in PAGES:
        for name, *args in commands_in(page.read_text(encoding="utf-8")):
            commands.setdefault(name, []).append(args)
    assert set(commands) == {"train", "predict", "generate", "serve"}
    assert sum(len(c) for c in commands.values()) > 40
    failures = []
    for name, found in commands.items():
        proc = subprocess.run(
            [sys.executable, "-c", _PARSE, name],
            input=json.dumps(found),
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        failures += [(name, *f) for f in json.loads(proc.stdout.strip().splitlines()[-1])]
        # Commands in the docs use today's names: no deprecation warning.
        assert "is deprecated" not in proc.stderr, (name, proc.stderr[-2000:])
    assert failures == []


def test_commands_are_read_from_fenced_blocks_and_code_spans():
    page = (
        "Run `python -m tfhf.train --task=lm --helpshort` first, "
        "`python -m tfhf.train --task=<task>` later.\n\n"
        "```text\npython -m tfhf.train is not parsed here\n```\n"
        "```bash\nTF_CONFIG=x python -m tfhf.predict \\\n  --model=a --text='b c' | head  # x\n"
        "python -m tfhf.serve --port=1 && echo done\n```\n"
    )
    assert commands_in(page) == [
        ["predict", "--model=a", "--text=b c"],
        ["serve", "--port=1"],
        ["train", "--task=lm", "--helpshort"],
        ["train", "--task=PLACEHOLDER"],
    ]


# A config file a page writes with a here-document: `cat > NAME <<'CONFIG' ... CONFIG`.
HEREDOC = re.compile(r"cat > (\S+) <<'CONFIG'\n(.*?)^CONFIG$", re.S | re.M)


def test_the_config_files_in_the_docs_parse_as_tf_serving_reads_them():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from tfhf.serving.model_server import parse_model_config, parse_monitoring_config

    written = [found for page in PAGES for found in HEREDOC.findall(page.read_text())]
    model_configs = [body for name, body in written if "model_config_list" in body]
    assert len(model_configs) >= 3
    for body in model_configs:
        # TF Serving's own message, then tfhf.serve's reading of it.
        parsed = text_format.Parse(body, model_server_config_pb2.ModelServerConfig())
        names = [config.name for config in parsed.model_config_list.config]
        assert [spec.name for spec in parse_model_config(body)] == names
    batching = [body for name, body in written if name == "batching.config"]
    assert batching and all(
        re.fullmatch(r"(\w+ \{ value: \d+ \}\n)+", body) for body in batching
    )  # BatchingParameters' wrapper fields (its proto is not in tensorflow-serving-api)
    echoed = [
        line.split("'")[1]
        for page in PAGES
        for line in page.read_text().splitlines()
        if line.startswith("echo 'prometheus_config")
    ]
    assert echoed and all(parse_monitoring_config(text).enabled for text in echoed)
