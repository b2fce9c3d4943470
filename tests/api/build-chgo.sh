#!/usr/bin/env bash
# Builds the tests' Go client of the ClickHouse HTTP interface (tests/api/chgo: clickhouse-go,
# the driver Grafana's ClickHouse data source uses) into .build/bin/tokenotel-chgo.
#
# Run from the repository root. Go's build cache makes a second run a no-op; modules come from
# the Go module proxy at the versions tests/api/chgo/go.sum pins.
set -euo pipefail

if [[ ! -f "tests/api/build-chgo.sh" ]]; then
    echo "build-chgo.sh: run this script from the repository root." >&2
    exit 1
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build-chgo.sh: 'go' is not on PATH; install Go 1.26 or newer first." >&2
    exit 1
fi
mkdir -p .build/bin
go build -C tests/api/chgo -o "$PWD/.build/bin/tokenotel-chgo" .
echo "chgo: $PWD/.build/bin/tokenotel-chgo"
