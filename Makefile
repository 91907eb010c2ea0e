# One command each for a fresh machine with only Python 3.11+ and pip:
#   make serve   set up .venv with the service's dependencies and start it on the shipped model
#   make test    set up .venv with everything the tests need and run them
#   make lint    ruff (lint and format) and mypy over every package, tests included
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# The full MNIST files, where this machine has them (CI does); tests that need them skip otherwise.
MNIST_LOCAL := $(wildcard ../shared/datasets/mnist)
ifneq ($(MNIST_LOCAL),)
export MNIST_DATA_DIR ?= $(abspath $(MNIST_LOCAL))
endif

.PHONY: serve test lint bench clean

$(VENV)/.serve: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e ".[train,dev]"
	touch $@

serve: $(VENV)/.serve
	$(PY) -m service

test: $(VENV)/.dev
	$(PY) -m pytest

# Everything Python in the repository; mypy is strict on service/ and harness/ (pyproject.toml).
TYPED := service training benchmarks tests harness

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy $(TYPED)

bench: $(VENV)/.dev
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
