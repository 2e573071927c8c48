# Two commands matter: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run test lint bench bench-real bench-scale bench-embeddings bench-pgvector clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

# torch==2.13.0 first: that spec takes the CPU build on this machine's disk, so the
# `embeddings` extra (sentence-transformers would pull a multi-GB CUDA torch) finds it installed.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install 'torch==2.13.0'
	$(PIP) install -e '.[test,dev,embeddings]'
	touch $@ $(VENV)/.installed

## Start the service on 127.0.0.1:8000 (embedded PostgreSQL under ./.ciphervec/pg unless DATABASE_URL is set).
run: $(VENV)/.installed
	$(BIN)/ciphervec serve

## The whole suite: lint, types, then tests against a throwaway PostgreSQL cluster.
test: $(VENV)/.installed-test lint
	$(BIN)/pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app tests migrations
	$(BIN)/mypy

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[test,bench]'
	touch $@

bench/.venv-ref/bin/python:
	$(PYTHON) -m venv bench/.venv-ref
	bench/.venv-ref/bin/pip --disable-pip-version-check -q install 'cyborgdb-service==0.18.0'

## Side by side with cyborgdb-service 0.18 (50,000 x 128); results in bench/results/.
bench: $(VENV)/.installed-bench bench/.venv-ref/bin/python
	$(BIN)/python bench/run.py

## Real sentences (MiniLM embeddings, cached in bench/.data), both services on defaults.
bench-real: $(VENV)/.installed-test $(VENV)/.installed-bench bench/.venv-ref/bin/python
	$(BIN)/python -m bench.real_text

## Both services at 1,000,000 x 128 (987,000 loaded, then 13,000 more), with the live phase.
bench-scale: $(VENV)/.installed-bench bench/.venv-ref/bin/python
	$(BIN)/python bench/run.py --scale

## Embedding throughput (batches of 256 texts), model alone and through the client.
bench-embeddings: $(VENV)/.installed-test
	$(BIN)/python bench/run.py --embeddings

## `ciphervec import --pgvector-url` at 100,000 x 128: items/s, every item checked afterwards.
bench-pgvector: $(VENV)/.installed-bench
	$(BIN)/python -m bench.pgvector_import

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
