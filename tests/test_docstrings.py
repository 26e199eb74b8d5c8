"""Every example in the package's docstrings runs and shows what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tfhf

# Modules with examples. The entry points that declare their flags on import are left out:
# their docstrings hold shell commands, not Python examples.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(tfhf.__path__, "tfhf.")
    if ">>>" in (importlib.util.find_spec(info.name).loader.get_source(info.name) or "")
)


def test_examples_are_found_and_none_is_skipped():
    assert "tfhf.config" in MODULES and "tfhf.tokenizers.bert_preprocessor" in MODULES
    for name in MODULES:
        source = importlib.util.find_spec(name).loader.get_source(name)
        assert "+SKIP" not in source, f"{name} has an example that never runs"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
