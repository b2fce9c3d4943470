#!/usr/bin/env bash
# Installs a Go program the tests use as a real client (telemetrygen, grpcurl ...) from the Go
# module proxy into .build/bin: `bash tests/go-install.sh MODULE/cmd/NAME VERSION`.
#
# Run from the repository root. A binary built from that module at that version is kept as it
# is, so a second run is a no-op; one of another version is replaced. GOPATH and GOCACHE are
# left at their defaults, so Go's module and build caches are shared with every other build on
# the machine (the collector's among them).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: go-install.sh MODULE_PATH VERSION" >&2
    exit 2
fi
MODULE="$1"
VERSION="$2"
BIN_DIR="$PWD/.build/bin"
BINARY="$BIN_DIR/$(basename "$MODULE")"

if ! command -v go >/dev/null 2>&1; then
    echo "go-install.sh: 'go' is not on PATH; install Go 1.26 or newer first." >&2
    exit 1
fi

started=$SECONDS
built_version=""
if [[ -x "$BINARY" ]]; then
    # A Go binary records what it was built from: "<tab>path<tab>PACKAGE" and
    # "<tab>mod<tab>MODULE<tab>VERSION<tab>SUM".
    built_version=$(go version -m "$BINARY" | awk '$1 == "mod" {print $3; exit}')
    built_path=$(go version -m "$BINARY" | awk '$1 == "path" {print $2; exit}')
    [[ "$built_path" == "$MODULE" ]] || built_version=""
fi
if [[ "$built_version" == "$VERSION" ]]; then
    echo "$(basename "$MODULE"): $BINARY is $VERSION, nothing to build"
else
    echo "$(basename "$MODULE"): installing $MODULE@$VERSION into $BIN_DIR"
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" go install "$MODULE@$VERSION"
fi
echo "$(basename "$MODULE"): $BINARY ($(stat -c %s "$BINARY") bytes), $((SECONDS - started)) s"
