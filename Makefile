# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv if it is missing and installs the package into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo
# The demo compares four estimators on real MNIST digits; K = 1000 importance
# samples per test point keeps it within a few minutes on two cores.
DEMO_ESTIMATORS ?= elbo,iwae:5,dreg:5,stl:1

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vi-vae compare --dataset mnist-5k --estimators $(DEMO_ESTIMATORS) --epochs 60 \
		--eval-num-particles 1000 --out-dir $(DEMO_DIR) --overwrite

test: $(STAMP)
	$(BIN)/python -m ruff check vi_vae tests examples benchmarks
	$(BIN)/python -m ruff format --check --quiet vi_vae tests examples benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m ruff check vi_vae tests examples benchmarks
	$(BIN)/python -m ruff format --check vi_vae tests examples benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
