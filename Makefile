# nanoedit — the two commands: `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Two pytest workers (pytest-xdist), a test file each at a time (module fixtures stay in one process): the suite
# starts real Redis, Celery and gunicorn processes and takes ~10 min serially, ~5.5 min so on two cores.
# `make test PYTEST_PARALLEL=` runs it serially.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

.PHONY: up test lint typecheck pytest bench venv clean

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nanoedit needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	@bash deploy/up.sh

test: $(STAMP)
	@bash deploy/ensure-redis.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q $(PYTEST_PARALLEL)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q $(PYTEST_PARALLEL)

# The benchmark suite (bench/suite.py): every scenario against its baseline, table + bench/results/latest.{json,png}.
# `make bench QUICK=1`: the short smoke run; `make bench ONLY=http,preprocess`: some scenarios only.
bench: $(STAMP)
	@bash deploy/ensure-redis.sh
	$(VENV)/bin/python -m bench $(if $(filter 1 yes true,$(QUICK)),--quick) $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info
