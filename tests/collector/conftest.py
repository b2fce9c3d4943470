"""Fixtures for collector tests: otelcol-tokenotel run with a collector-config/ file on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from otelcol import (
    BUILD_SCRIPT,
    COLLECTOR_BINARY,
    CONFIG_DIR,
    CollectorProcess,
    collector_env,
    start_collector,
    with_metrics,
)

from go_build import go_built


@pytest.fixture(scope="session")
def collector_binary() -> Path:
    """The collector, built by `make collector`'s script when Go is installed (a no-op when the
    binary is up to date)."""
    return go_built(["bash", str(BUILD_SCRIPT)], COLLECTOR_BINARY, "make collector")


@pytest.fixture
def collector_factory(
    tmp_path: Path, collector_binary: Path
) -> Iterator[Callable[..., CollectorProcess]]:
    """Starts collectors: ``start("gateway.yaml", TOKENOTEL_ENDPOINT=serve.grpc_target)``.
    Each gets its own storage directory unless ``storage_dir`` is given (to restart one
    collector on its persistent queue); ``metrics=True`` serves the collector's own metrics on
    a free port (``CollectorProcess.metric``); ``overlays`` are collector-config/ files merged
    over ``config``. All are stopped at the end of the test."""
    started: list[CollectorProcess] = []

    def start(
        config: str,
        *,
        overlays: tuple[str, ...] = (),
        storage_dir: Path | None = None,
        metrics: bool = False,
        **settings: str,
    ) -> CollectorProcess:
        storage = storage_dir or tmp_path / f"collector{len(started)}" / "storage"
        storage.parent.mkdir(parents=True, exist_ok=True)
        if metrics:
            settings = with_metrics(settings)
        env = collector_env(storage, **settings)
        log_path = storage.parent / f"collector{len(started)}.log"
        extra = tuple(CONFIG_DIR / overlay for overlay in overlays)
        collector = start_collector(CONFIG_DIR / config, env, log_path, extra)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()


@pytest.fixture
def collector_validate(
    tmp_path: Path, collector_binary: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``otelcol-tokenotel validate`` on a collector-config/ file with loopback settings:
    ``validate("agent-files.yaml", TOKEN_EVENT_FILES=...)``, or several files merged in order
    (``validate("gateway.yaml", "gateway-auth.yaml")``); never raises."""

    def validate(*configs: str, **settings: str) -> subprocess.CompletedProcess[str]:
        env = collector_env(tmp_path / "validate" / "storage", **settings)
        files = [arg for config in configs for arg in ("--config", str(CONFIG_DIR / config))]
        return subprocess.run(
            [str(collector_binary), "validate", *files],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    return validate
