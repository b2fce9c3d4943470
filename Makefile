# tokenotel — every set-up step lives here, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format proto collector telemetrygen grpcurl chgo fuzz fuzz-merge bench-ingest bench-query bench-report bench-overload bench-import bench-api bench-detect clean

# The modules setup.py compiles (mypyc): installing again rebuilds them when one changes.
COMPILED := $(shell sed -n 's/^ *"\(src\/.*\.py\)",$$/\1/p' setup.py)

$(STAMP): pyproject.toml setup.py $(COMPILED)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tokenotel demo

test: lint
	@if command -v go >/dev/null 2>&1; then $(MAKE) --no-print-directory collector telemetrygen grpcurl chgo; \
	else echo "go not found: the tests of the collector and the Go clients will be skipped"; fi
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

# The query API's Python code from its definition (tests/api/test_proto.py holds them equal).
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=src --grpc_python_out=src \
		--pyi_out=src proto/tokenotel/v1/audit.proto

# A million request bodies through decompression, decoding and mapping (17-25 min on 2 cores).
# A finding is written to tests/fuzz/crashes/, where tests/fuzz/test_fuzz.py replays it from
# then on; inputs that reached new code collect in .build/fuzz-corpus (see fuzz-merge).
fuzz: $(STAMP)
	mkdir -p .build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_ingest.py -runs=1000000 -timeout=1 -rss_limit_mb=2048 \
		-artifact_prefix=tests/fuzz/crashes/ -print_final_stats=1 .build/fuzz-corpus tests/fuzz/corpus

# Keeps the inputs of .build/fuzz-corpus that add coverage to tests/fuzz/corpus. libFuzzer merges
# in a child process started from the harness's own path: its #! line finds the venv's python.
fuzz-merge: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" tests/fuzz/fuzz_ingest.py -merge=1 tests/fuzz/corpus .build/fuzz-corpus

collector:
	bash collector-config/build.sh

# Go programs the tests use as real clients (versions: tests/go_build.py).
telemetrygen:
	bash tests/go-install.sh github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen v0.161.0

grpcurl:
	bash tests/go-install.sh github.com/fullstorydev/grpcurl/cmd/grpcurl v1.9.4

# The tests' client of the ClickHouse HTTP interface: clickhouse-go, Grafana's driver.
chgo:
	bash tests/api/build-chgo.sh

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-detect: $(STAMP)
	$(BIN)/python bench/detect.py

bench-query: $(STAMP)
	$(BIN)/python bench/query.py

# The compliance report of a quarter over 10 million generated events: each section and format
# (bench/report.py --help: --keep DIR reuses the events, --with-ledger N times the verification).
bench-report: $(STAMP)
	$(BIN)/python bench/report.py

# tokenotel import of gzip JSON-lines files (Vault, CloudTrail) into a fresh data directory.
bench-import: $(STAMP)
	$(BIN)/python bench/import.py

bench-overload: $(STAMP) collector
	$(BIN)/python bench/overload.py

bench-api: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .build build tokenotel-data tokenotel-demo
	find src -name '*.so' -delete
