# dcerpc: two commands matter.
#   make test  - set up (.venv, dev extras, Debian peers when root) and run ruff, mypy --strict, pytest
#   make run   - set up and start the endpoint mapper with the demo services (arrives with issue 4)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: all setup peers lint typecheck pytest test bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

peers:
	@bash scripts/install-peers.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks fuzz

typecheck: setup
	$(BIN)/mypy

pytest: setup peers
	$(BIN)/pytest

test: setup peers lint typecheck pytest

bench: setup peers
	$(BIN)/python benchmarks/ndr.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
