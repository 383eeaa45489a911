# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package at the version tested, for the build of syncd too: CI installs the same.
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(BIN)/pip install --quiet -c $(CONSTRAINTS) --build-constraint $(CONSTRAINTS)

.PHONY: demo test lint typecheck unit bench chaos constraints clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	# The venv's own pip may predate --build-constraint: first the pinned pip.
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(PIP_INSTALL) -e '.[dev,sandbox,postgres]'
	# Bytecode for our own modules too, as `pip install .` would make: where
	# PYTHONDONTWRITEBYTECODE is set, every start would compile them again.
	$(BIN)/python -m compileall -q syncd
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/syncd demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy syncd bench

unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m compileall -q syncd
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/pytest -q -m slow

# The newest versions that pyproject.toml allows, in a throw-away venv; then
# `make test` and commit constraints.txt.
constraints:
	rm -rf $(VENV)-constraints
	$(PYTHON) -m venv $(VENV)-constraints
	$(VENV)-constraints/bin/pip install --quiet --upgrade pip
	$(VENV)-constraints/bin/pip install --quiet '.[dev,sandbox,postgres]'
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  $(VENV)-constraints/bin/pip freeze --all --exclude syncd; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(VENV)-constraints

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
