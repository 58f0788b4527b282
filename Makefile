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
	$(BIN)/python -m serve_app.run

# Every tier runs even when an earlier one fails, so one run shows every failure; the exit
# status is non-zero if any tier failed.
test: install
	@status=0; \
	$(BIN)/python -m pytest -q -m "not cluster" tests || status=1; \
	$(BIN)/python -m pytest -q -m cluster tests || status=1; \
	exit $$status

test-all: install
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) .tessera .pytest_cache
