# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint format clean bench soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taskvault needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/taskvault serve

test: install
	$(BIN)/pytest

# Unit tests and the contract suite on the in-memory store: no database, no server, seconds.
test-fast: install
	$(BIN)/pytest -m "not sqlite and not postgres" tests/unit tests/contract

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks, not part of `make test` (bench/README.md): DB=sqlite, BENCH_DURATION, BENCH_ROUNDS.
# bench/sync.py runs on PostgreSQL and SQLite unless DB names one.
bench: install
	@command -v wrk >/dev/null 2>&1 || (apt-get update && apt-get install -y wrk)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/sync.py

# Soak, not part of `make test` (README "Reliability"): a real taskvault on PostgreSQL
# (database taskvault_soak, recreated and dropped) at a fixed rate. SOAK_SECONDS, SOAK_RATE.
soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
