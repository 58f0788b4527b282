# Two commands on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tessera-installed

.PHONY: install serve test test-all serve-config clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Local Ray on 127.0.0.1, HTTP on 127.0.0.1:8000, CPU, outputs under ./.tessera.
serve: install
	$(BIN)/serve run serve_app.builder:build_app

test: install
	$(BIN)/python -m pytest -q -m "not cluster" tests
	$(BIN)/python -m pytest -q -m cluster tests

test-all: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) .tessera .pytest_cache
