"""Binaries the tests build from Go modules (the collector, telemetrygen): built or skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Set to 1 (CI does) so that a binary that cannot be built fails the tests instead of
#: skipping them.
REQUIRE_COLLECTOR = "TOKENOTEL_REQUIRE_COLLECTOR"
# A first build downloads modules and compiles for a few minutes; later runs are no-ops.
BUILD_TIMEOUT_S = 1200


#: Go programs the tests use as real clients, built from the Go module proxy (pinned).
TELEMETRYGEN = (
    "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen",
    "v0.161.0",
)
GRPCURL = ("github.com/fullstorydev/grpcurl/cmd/grpcurl", "v1.9.4")
GO_INSTALL = REPO / "tests" / "go-install.sh"


def go_installed(module: tuple[str, str], make_target: str) -> Path:
    """The program of ``module`` (path, version), installed into .build/bin (see go_built)."""
    path, version = module
    binary = REPO / ".build" / "bin" / path.rsplit("/", 1)[-1]
    return go_built(["bash", str(GO_INSTALL), path, version], binary, make_target)


def go_built(command: list[str], binary: Path, make_target: str) -> Path:
    """``binary``, built by ``command`` (what ``make_target`` runs) when Go is installed: a
    no-op when the binary is up to date. Without Go and without a binary the calling test skips
    -- or fails when TOKENOTEL_REQUIRE_COLLECTOR=1, so that CI never passes without running it."""
    if shutil.which("go") is not None:
        result = subprocess.run(
            command,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0 or not binary.is_file():
            pytest.fail(
                f"`{make_target}` failed ({result.returncode}):\n{result.stdout}{result.stderr}",
                pytrace=False,
            )
    elif not binary.is_file():
        relative = binary.relative_to(REPO)
        reason = f"{relative} is not built and Go is not installed to build it (`{make_target}`)"
        if os.environ.get(REQUIRE_COLLECTOR) == "1":
            pytest.fail(f"{reason}; {REQUIRE_COLLECTOR}=1 requires it", pytrace=False)
        pytest.skip(reason)
    return binary
