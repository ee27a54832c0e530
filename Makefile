# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv if it is missing and installs the package into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vi-vae train --dataset mnist-5k --epochs 30 --eval-samples 1000 --run-dir $(DEMO_DIR) --overwrite

test: $(STAMP)
	$(BIN)/python -m ruff check vi_vae tests examples benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m ruff check vi_vae tests examples benchmarks
	$(BIN)/python -m ruff format --check vi_vae tests examples benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
