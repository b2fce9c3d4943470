#!/usr/bin/env bash
# Builds the otelcol-tokenotel collector distribution from collector-config/builder.yaml.
#
# Run from the repository root (`make collector` does). Installs the OpenTelemetry
# Collector Builder into .build/bin when it is missing or at another version, then
# generates and compiles the distribution into .build/otelcol-tokenotel/.
# A binary newer than builder.yaml is kept as it is, so a second run is a no-op;
# delete .build/otelcol-tokenotel (or touch builder.yaml) to force a rebuild.
# GOPATH and GOCACHE are left at their defaults, so Go's module and build caches
# are shared with every other build on the machine.
set -euo pipefail

BUILDER_VERSION="v0.161.0" # keep equal to the component versions in builder.yaml
MANIFEST="collector-config/builder.yaml"
BIN_DIR="$PWD/.build/bin"
BUILDER="$BIN_DIR/builder"
DIST_DIR=".build/otelcol-tokenotel"
BINARY="$DIST_DIR/otelcol-tokenotel"

if [[ ! -f "$MANIFEST" ]]; then
    echo "build.sh: $MANIFEST not found; run this script from the repository root." >&2
    exit 1
fi
if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: 'go' is not on PATH; install Go 1.26 or newer first." >&2
    exit 1
fi

started=$SECONDS

report() {
    local size
    size=$(du -h "$BINARY" | cut -f1)
    echo "collector: $BINARY ($size, $(stat -c %s "$BINARY") bytes), $((SECONDS - started)) s"
}

if [[ -x "$BINARY" && "$BINARY" -nt "$MANIFEST" ]]; then
    echo "collector: $BINARY is newer than $MANIFEST, nothing to build"
    report
    exit 0
fi

installed_version=""
if [[ -x "$BUILDER" ]]; then
    # ocb prints "ocb version vX.Y.Z" on stderr.
    installed_version=$("$BUILDER" version 2>&1 | awk '{print $NF}')
fi
if [[ "$installed_version" == "$BUILDER_VERSION" ]]; then
    echo "collector: builder $BUILDER_VERSION already in $BIN_DIR"
else
    echo "collector: installing builder $BUILDER_VERSION into $BIN_DIR"
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi

echo "collector: building $BINARY from $MANIFEST (the first build takes minutes)"
"$BUILDER" --config "$MANIFEST"
echo "collector: done"
report
