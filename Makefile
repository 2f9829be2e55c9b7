# Two commands do all set-up on a fresh Debian / Python 3.11 machine:
#   make demo   create .venv, install omnitrack, run the embedded synthetic benchmark
#   make test   create .venv if needed, run the test suite
# make lint: ruff (lint and format) and snakefmt in check mode, settings in pyproject.toml (CI runs it first).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: env demo lint test test-fast clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[test,lint]"
	touch $@

env: $(BIN)/snakemake

demo: env
	$(BIN)/snakemake --cores $(CORES)
	@echo "results: results/summary.csv"; cat results/summary.csv

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .

test: env
	$(BIN)/python -m pytest -q

test-fast: env
	$(BIN)/python -m pytest -q -m "not workflow and not slurm"

clean:
	rm -rf results/* logs benchmarks .snakemake
	touch results/.gitkeep
