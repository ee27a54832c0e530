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
# docs: the Python files only (ruff would also reformat the code blocks of the pages)
LINTED := vi_vae tests examples benchmarks docs/conf.py docs/_ext docs/gallery

.PHONY: demo test lint install docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml vi_vae/__init__.py
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vi-vae compare --dataset mnist-5k --estimators $(DEMO_ESTIMATORS) --epochs 60 \
		--eval-num-particles 1000 --out-dir $(DEMO_DIR) --overwrite

# pytest includes tests/test_docs.py: it builds the documentation site once (warnings
# are errors), checks its links, and opens pages in headless Chromium where there is one.
test: $(STAMP)
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m ruff format --check --quiet $(LINTED)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m ruff format --check $(LINTED)

# The documentation site, HTML in docs/_build/html; any warning fails the build.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs build *.egg-info docs/_build docs/api/generated
