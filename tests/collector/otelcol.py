"""otelcol-tokenotel as a real subprocess for tests: a collector-config/ file on loopback ports."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from processes import ServeProcess, SupervisedProcess, free_port, http_get, start_serve

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_BINARY = REPO / ".build" / "otelcol-tokenotel" / "otelcol-tokenotel"
CONFIG_DIR = REPO / "collector-config"
BUILD_SCRIPT = CONFIG_DIR / "build.sh"
STARTUP_TIMEOUT_S = 60
# loadbalancing.yaml may need up to ~50 s to stop while a replica is down
# (per-replica retries are bounded to 30 s plus one 20 s attempt).
STOP_TIMEOUT_S = 90


@dataclass
class CollectorProcess(SupervisedProcess):
    """A running collector."""

    what = "collector"
    stop_timeout_s = STOP_TIMEOUT_S

    config: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    returncode: int | None = field(default=None)

    @property
    def grpc_target(self) -> str:
        """host:port of the OTLP/gRPC receiver (gateway, loadbalancing and snippet configs)."""
        return self.env["GATEWAY_GRPC_ENDPOINT"]

    @property
    def logs_url(self) -> str:
        """OTLP/HTTP logs URL of the receiver (gateway, loadbalancing and snippet configs)."""
        return f"http://{self.env['GATEWAY_HTTP_ENDPOINT']}/v1/logs"

    @property
    def health_url(self) -> str:
        return f"http://{self.env['HEALTH_CHECK_ENDPOINT']}/"

    @property
    def metrics_url(self) -> str:
        """The collector's own Prometheus metrics (started with ``metrics=True``)."""
        return f"http://127.0.0.1:{self.env['COLLECTOR_METRICS_PORT']}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        """Sum of every series of metric ``name`` whose labels include ``labels`` (0 if none)."""
        status, _, body = http_get(self.metrics_url, timeout=5)
        assert status == 200, body
        total = 0.0
        for line in body.decode().splitlines():
            match = _SAMPLE.fullmatch(line.strip())
            if match is None or match["name"] != name:
                continue
            series = dict(_LABEL.findall(match["labels"] or ""))
            if all(series.get(k) == v for k, v in labels.items()):
                total += float(match["value"])
        return total


# One sample of the Prometheus text format: name{label="value",...} value
_SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def printing_config(signal: str) -> str:
    """A collector config that takes OTLP/gRPC and prints each record of ``signal`` (logs,
    metrics) it receives, in full, to its log."""
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${{env:GATEWAY_GRPC_ENDPOINT}}
exporters:
  debug:
    verbosity: detailed
extensions:
  health_check:
    endpoint: ${{env:HEALTH_CHECK_ENDPOINT}}
service:
  extensions: [health_check]
  pipelines:
    {signal}:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"""


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def collector_env(storage_dir: Path, **settings: str) -> dict[str, str]:
    """Environment for any collector-config/ file: every listener on a free loopback port,
    storage in ``storage_dir``, no metrics endpoint; ``settings`` add or override variables
    (TOKENOTEL_ENDPOINT, TOKENOTEL_REPLICAS, TOKEN_EVENT_FILES, GATEWAY_ACCESS_LOGS, ...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENOTEL_", "OTEL_"))}
    env |= {
        "GATEWAY_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "GATEWAY_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{free_port()}",
        "COLLECTOR_STORAGE_DIR": str(storage_dir),
        "COLLECTOR_METRICS_LEVEL": "none",
        # Unreachable unless a test says where tokenotel is: never a real host.
        "TOKENOTEL_ENDPOINT": f"127.0.0.1:{free_port()}",
        "TOKENOTEL_REPLICAS": f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}",
        "TOKEN_EVENT_FILES": str(storage_dir.parent / "token-events" / "*.jsonl"),
        "GATEWAY_ACCESS_LOGS": str(storage_dir.parent / "gateway" / "access*.log"),
    }
    return env | settings


def start_collector(
    config: Path, env: dict[str, str], log_path: Path, overlays: tuple[Path, ...] = ()
) -> CollectorProcess:
    """Starts the collector on ``config`` (with ``overlays`` merged over it, in order) and
    returns once its health check answers 200."""
    configs = [arg for path in (config, *overlays) for arg in ("--config", str(path))]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(COLLECTOR_BINARY), *configs],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    collector = CollectorProcess(config, env, log_path, proc)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not collector.alive():
            raise AssertionError(f"collector exited with {proc.returncode}:\n{collector.output()}")
        try:
            if http_get(collector.health_url, timeout=1)[0] == 200:
                return collector
        except OSError:
            pass
        time.sleep(0.05)
    collector.stop()
    raise AssertionError(f"collector did not become healthy:\n{collector.output()}")


def with_metrics(settings: dict[str, str]) -> dict[str, str]:
    """``settings`` and the collector's own metrics on a free port (read: ``metric``)."""
    return {
        "COLLECTOR_METRICS_LEVEL": "basic",
        "COLLECTOR_METRICS_PORT": str(free_port()),
    } | settings


@contextmanager
def serve_behind_collector(
    root: Path, config: str, **settings: str
) -> Iterator[tuple[ServeProcess, CollectorProcess]]:
    """``tokenotel serve`` on ``root/data`` behind a collector running ``config`` with its own
    metrics on; stops the collector, then serve, and checks that both exit cleanly."""
    serve = start_serve(root / "data")
    try:
        env = collector_env(
            root / "storage", **with_metrics({"TOKENOTEL_ENDPOINT": serve.grpc_target, **settings})
        )
        collector = start_collector(CONFIG_DIR / config, env, root / "collector.log")
        try:
            yield serve, collector
        finally:
            collector_exit = collector.stop()
    finally:
        serve_exit = serve.stop()
    assert collector_exit == 0, collector.output()
    assert serve_exit == 0, serve.output()
