"""Shared fixtures: ``tokenotel serve`` subprocesses, stopped with SIGTERM at the end of a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processes import ServeProcess, start_serve


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Starts serve processes (``data_dir`` defaults to a fresh one); stops them all at the end."""
    started: list[ServeProcess] = []

    def start(*args: str, data_dir: Path | None = None, **kwargs: Any) -> ServeProcess:
        directory = data_dir or tmp_path / f"data{len(started)}"
        serve = start_serve(directory, *args, **kwargs)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        serve.stop()


@pytest.fixture
def serve(serve_factory: Callable[..., ServeProcess]) -> ServeProcess:
    """One ``tokenotel serve`` with an embedded store in a fresh data directory."""
    return serve_factory()
