#!/usr/bin/env bash
# Builds telemetrygen, OpenTelemetry's load generator, into .build/bin/telemetrygen: the tests
# use it as a real OTLP client written by someone else (Go SDK exporter, its own batching).
#
# Run from the repository root (`make telemetrygen` does). A binary built from the pinned
# version is kept as it is, so a second run is a no-op; one of another version is replaced.
# GOPATH and GOCACHE are left at their defaults, so Go's module and build caches are shared
# with every other build on the machine (the collector's among them).
set -euo pipefail

MODULE="github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen"
# The collector's release: keep equal to the component versions in collector-config/builder.yaml.
VERSION="v0.161.0"
BIN_DIR="$PWD/.build/bin"
BINARY="$BIN_DIR/telemetrygen"

if [[ ! -f "tests/build-telemetrygen.sh" ]]; then
    echo "build-telemetrygen.sh: run this script from the repository root." >&2
    exit 1
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build-telemetrygen.sh: 'go' is not on PATH; install Go 1.26 or newer first." >&2
    exit 1
fi

started=$SECONDS

built_version=""
if [[ -x "$BINARY" ]]; then
    # A Go binary records the module it was built from: "<tab>mod<tab>MODULE<tab>VERSION<tab>SUM".
    built_version=$(go version -m "$BINARY" | awk -v module="$MODULE" '$1 == "mod" && $2 == module {print $3}')
fi
if [[ "$built_version" == "$VERSION" ]]; then
    echo "telemetrygen: $BINARY is $VERSION, nothing to build"
else
    echo "telemetrygen: installing $MODULE@$VERSION into $BIN_DIR"
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" go install "$MODULE@$VERSION"
fi
echo "telemetrygen: $BINARY ($(stat -c %s "$BINARY") bytes), $((SECONDS - started)) s"
