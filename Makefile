# tokenotel — every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format collector telemetrygen bench-ingest bench-query bench-overload clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenotel demo

test: lint
	@if command -v go >/dev/null 2>&1; then $(MAKE) --no-print-directory collector telemetrygen; \
	else echo "go not found: collector and telemetrygen tests will be skipped"; fi
	$(BIN)/pytest

# The tests that start no process (no serve, collector, CLI or worker): seconds, not minutes.
test-fast: lint
	$(BIN)/pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

collector:
	bash collector-config/build.sh

telemetrygen:
	bash tests/build-telemetrygen.sh

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-query: $(STAMP)
	$(BIN)/python bench/query.py

bench-overload: $(STAMP) collector
	$(BIN)/python bench/overload.py

clean:
	rm -rf $(VENV) .build tokenotel-data tokenotel-demo
