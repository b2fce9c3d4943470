"""telemetrygen, OpenTelemetry's load generator, as a real OTLP client process for tests."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from processes import clean_env

RUN_TIMEOUT_S = 300
# How long one Export may take, retries included (telemetrygen's default is 10 s): a first
# insert into a cold embedded store can take longer on a slow machine.
EXPORT_TIMEOUT = "60s"

# Each worker logs its total when it is done: ... logs generated {"worker": 0, "logs": 500}
_GENERATED = re.compile(r'logs generated\s+\{"worker": \d+, "logs": (\d+)\}')


@dataclass
class TelemetrygenRun:
    """What one ``telemetrygen`` run did."""

    returncode: int
    output: str

    @property
    def logs_generated(self) -> int:
        """Records the workers generated and exported, as they report them."""
        return sum(int(n) for n in _GENERATED.findall(self.output))


def _string_attribute(key: str, value: str) -> str:
    """``key="value"``: telemetrygen reads a value as a string only in double quotes."""
    return f'{key}="{value}"'


def send_logs(
    binary: Path,
    grpc_target: str,
    log_path: Path,
    *,
    workers: int,
    logs_per_worker: int,
    attributes: dict[str, str],
    extra: tuple[str, ...] = (),
) -> TelemetrygenRun:
    """Runs ``telemetrygen logs`` against an OTLP/gRPC receiver at ``grpc_target`` (plaintext)
    until every worker has sent its records; ``attributes`` go on every log record."""
    args = [
        str(binary),
        "logs",
        "--otlp-endpoint",
        grpc_target,
        "--otlp-insecure",
        "--workers",
        str(workers),
        "--logs",
        str(logs_per_worker),
        # Logs default to 1 record a second a worker; 0 sends as fast as the receiver answers.
        "--rate",
        "0",
        "--timeout",
        EXPORT_TIMEOUT,
    ]
    for key, value in attributes.items():
        args += ["--telemetry-attributes", _string_attribute(key, value)]
    with log_path.open("wb") as log:
        result = subprocess.run(
            [*args, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),  # no OTEL_* variable: the Go SDK exporter would read them
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    output = log_path.read_text(encoding="utf-8", errors="replace")
    return TelemetrygenRun(result.returncode, output)
