# dcerpc: two commands matter.
#   make test  - set up (.venv, dev extras, Debian peers when root) and run ruff, mypy --strict, pytest
#   make run   - set up and start the endpoint mapper (TCP 135) with the demo services
#                (RUN_ARGS="--epm-port 1135" to run without root)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

RUN_ARGS ?=

.PHONY: all setup peers lint typecheck pytest test run bench clean

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

# Kerberos for pyspnego (python-gssapi, krb5) compiles against MIT's headers, which `peers` installs;
# without them the Kerberos tests skip (and fail under CI=true).
$(VENV)/.kerberos: pyproject.toml | $(VENV)/.installed peers
	$(BIN)/python -m pip install -q -e '.[kerberos]' || echo "Kerberos support not installed: MIT headers or a compiler missing" >&2
	touch $@

lint: setup
	$(BIN)/ruff check src tests benchmarks fuzz

typecheck: setup
	$(BIN)/mypy

pytest: setup peers $(VENV)/.kerberos
	$(BIN)/pytest

test: setup peers lint typecheck pytest

run: setup
	$(BIN)/dcerpc run $(RUN_ARGS)

bench: setup peers
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/ndr.py
	$(BIN)/python benchmarks/calls.py
	$(BIN)/python benchmarks/epm.py
	$(BIN)/python benchmarks/auth.py --uvloop
	$(BIN)/python benchmarks/inproc.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
