# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,sandbox]'
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
	$(BIN)/mypy syncd

unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m compileall -q syncd
	$(BIN)/python -m bench

chaos: $(STAMP)
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
