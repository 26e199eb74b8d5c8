"""One convention across train, predict, generate and serve: a usage error is one line and
exit status 2 (with a "did you mean" for a near miss), a missing model folder reads the same
everywhere, and help lists the flags by group and exits 0."""

from __future__ import annotations

import re

import pytest
from conftest import run_module

# Each entry point under the one convention: (arguments, the error line) for an unknown flag,
# a near miss and a model folder that is not there.
_RUNS_NOTHING = "error: --model runs/nothing: no such folder"


def _unknown(entry: str) -> str:
    return f"error: unknown flag --bogus_flag (python -m tfhf.{entry} --helpshort lists the flags)"


CONVENTION = {
    "train": [
        (
            ["--bogus_flag=1"],
            "error: --bogus_flag is not a setting of --task=classify "
            "(python -m tfhf.train --helpshort lists the flags)",
        ),
        (
            ["--epoch=2"],
            "error: --epoch is not a setting of --task=classify (did you mean --epochs?)",
        ),
        (["--model=runs/nothing"], _RUNS_NOTHING),
    ],
    "predict": [
        (["--bogus_flag=1"], _unknown("predict")),
        (["--model-dir=runs/x"], "error: unknown flag --model-dir (did you mean --model?)"),
        (["--model=runs/nothing", "--text=a"], _RUNS_NOTHING),
    ],
    "generate": [
        (["--bogus_flag=1"], _unknown("generate")),
        (["--temprature=0.5"], "error: unknown flag --temprature (did you mean --temperature?)"),
        (["--model=runs/nothing", "--text=a"], _RUNS_NOTHING),
    ],
    "serve": [
        (["--bogus_flag=1"], _unknown("serve")),
        (["--model=runs/x"], "error: unknown flag --model (did you mean --model_base_path?)"),
        (
            ["--model_base_path=runs/nothing"],
            "error: --model_base_path runs/nothing: no such folder",
        ),
    ],
}


@pytest.mark.parametrize(
    "entry, args, line",
    [(entry, args, line) for entry, cases in CONVENTION.items() for args, line in cases],
)
def test_every_entry_point_fails_a_usage_error_in_one_line_with_status_2(
    entry, args, line, tmp_path
):
    (tmp_path / "runs").mkdir()  # runs/nothing is then plainly a path, not a hub id
    proc = run_module(f"tfhf.{entry}", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]
    assert proc.stdout == ""
    assert not (tmp_path / "runs" / "classify").exists()  # nothing written


@pytest.mark.parametrize("entry", list(CONVENTION))
def test_help_lists_the_flags_by_group_and_exits_0(entry):
    proc = run_module(f"tfhf.{entry}", "--helpshort")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: python -m tfhf.{entry} [--flag=value ...]")
    groups = re.findall(r"^(\w+):\n  --", proc.stdout, re.M)
    expected = {
        "train": ["run", "data", "model", "optimisation", "scale", "evaluation", "export"],
        "predict": ["model", "input", "output"],
        "generate": ["model", "input", "decoding"],
        "serve": ["models", "network", "batching", "limits", "monitoring"],
    }[entry]
    assert groups == expected
    assert proc.stderr == ""


def test_every_help_flag_prints_the_same_help():
    shown = [run_module("tfhf.predict", flag) for flag in ("--help", "-h", "--helpfull")]
    assert [proc.returncode for proc in shown] == [0, 0, 0]
    assert shown[0].stdout == shown[1].stdout == shown[2].stdout
    assert "--num_fillers" in shown[0].stdout
